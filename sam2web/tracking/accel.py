"""What this machine computes fast: a bfloat16 probe, the qualities a device offers, and the
optional ``torch.compile`` of SAM2's image encoder.

* :func:`bf16_probe` / :func:`bf16_is_fast`: whether bfloat16 autocast pays off on a device.
  On CUDA the GPU answers (native bf16, no emulation). On a CPU the flags must show native
  bf16 (``avx512_bf16`` or ``amx_bf16``; off Linux, oneDNN's own check) and then a short timed
  workload shaped like SAM2's (linear layers and attention with SAM2's widths) must run at
  least :data:`MIN_BF16_SPEEDUP` times faster under ``torch.autocast("cpu", torch.bfloat16)``
  than in float32. Some CPUs report ``avx512_bf16`` yet run autocast many times slower, which
  the flags alone cannot tell. The answer is measured once per process and device.
* :func:`available_qualities` / :func:`quality`: the page's quality choices for a device.

Tests fake the probe by passing ``override="yes"``/``"no"`` (``SAM2WEB_BF16_PROBE``), or by
monkeypatching :func:`cpu_bf16_flags` and :func:`time_probe_workload` and calling
:func:`reset_bf16_probe`.

Importing this module measures, compiles and imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..settings import Settings

log = logging.getLogger(__name__)

MIN_BF16_SPEEDUP = 1.3
"""bf16 autocast must be at least this many times faster than float32 on the probe."""

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags that mean native bfloat16 arithmetic (either one is enough)."""

_SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")

PROBE_OVERRIDES = ("auto", "yes", "no")

PROBE_ATTEMPTS = 3
"""Timed attempts at most before the probe says bf16 is not fast."""


# ---------------------------------------------------------------------------- bf16 probe


@dataclass(frozen=True)
class Bf16Probe:
    """What was found about bfloat16 on one device."""

    device: str  # "cpu", "cuda:0", ...
    processor: str  # CPU model name or GPU name
    flags: tuple[str, ...]  # CPU flags of interest present (see _SHOWN_FLAGS); () on GPUs
    native: bool  # the flags / the GPU say bf16 is native
    fp32_s: float | None  # seconds of one probe workload in float32 (best of a few); CPU only
    bf16_s: float | None  # the same under bf16 autocast
    fast: bool  # bf16 autocast is offered on this device
    reason: str  # one sentence saying why

    @property
    def speedup(self) -> float | None:
        """fp32 seconds / bf16 seconds on the probe workload, where measured."""
        if self.fp32_s is None or not self.bf16_s:
            return None
        return self.fp32_s / self.bf16_s

    def describe(self) -> str:
        """One line for a page or a benchmark table."""
        flags = " ".join(self.flags) or "no AVX-512/AMX flags"
        measured = ""
        if self.speedup is not None:
            measured = (
                f"; probe {self.fp32_s * 1000:.0f} ms fp32, {self.bf16_s * 1000:.0f} ms bf16 "
                f"({self.speedup:.2f}x)"
            )
        return f"{self.processor} ({flags}){measured}: {self.reason}"


def bf16_decision(native: bool, fp32_s: float | None, bf16_s: float | None) -> bool:
    """The probe's rule: native bf16 and bf16 at least :data:`MIN_BF16_SPEEDUP` times faster
    (both in seconds for the same workload)."""
    if not native or fp32_s is None or bf16_s is None or bf16_s <= 0:
        return False
    return fp32_s / bf16_s >= MIN_BF16_SPEEDUP


def cpu_model() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Platinum 8480+"), or what Python knows."""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_flags() -> tuple[str, ...] | None:
    """The CPU flags of interest present in /proc/cpuinfo (e.g. ``("avx2", "avx512f",
    "avx512_bf16", "amx_bf16", "amx_tile")``), or None where /proc/cpuinfo is unreadable
    (not Linux); then :func:`cpu_bf16_native` asks oneDNN."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    have = set(match.group(1).split()) if match else set()
    return tuple(f for f in _SHOWN_FLAGS if f in have)


def cpu_bf16_native(flags: tuple[str, ...] | None) -> bool:
    """True when ``flags`` (from :func:`cpu_bf16_flags`) show native bf16; where there are
    no flags to read, oneDNN's own check answers."""
    if flags is not None:
        return any(f in flags for f in BF16_CPU_FLAGS)
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def time_probe_workload(budget_s: float = 0.4, max_pairs: int = 12) -> tuple[float, float]:
    """(float32 seconds, bf16-autocast seconds): the best of several runs each of a workload
    shaped like SAM2's on the CPU, after one warm-up of each.

    The workload is one memory-attention-like block: a 256-wide projection and a 256 → 2048
    → 256 MLP over 1,024 tokens, and single-head attention of 1,024 queries over 2,048 keys
    of width 256 (4.4 GFLOP; about 30 ms in float32 on two Sapphire Rapids cores). fp32 and
    bf16 runs alternate, at least 3 and at most ``max_pairs`` pairs, until ``budget_s``
    seconds have passed; the best of each counts, so that load from other processes, which
    only ever adds time, disturbs the comparison as little as it can.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    x = randn(1024, 256)
    w_proj, w_up, w_down = randn(256, 256), randn(2048, 256) * 0.05, randn(256, 2048) * 0.05
    q, k, v = randn(1, 1, 1024, 256), randn(1, 1, 2048, 256), randn(1, 1, 2048, 256)
    params = [torch.nn.Parameter(w) for w in (w_proj, w_up, w_down)]

    def step() -> None:
        h = F.linear(x, params[0])
        F.linear(F.gelu(F.linear(h, params[1])), params[2])
        F.scaled_dot_product_attention(q, k, v)

    def timed(bf16: bool) -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        start = time.perf_counter()
        with ctx:
            step()
        return time.perf_counter() - start

    fp32, bf16 = [], []
    with torch.inference_mode():
        timed(False), timed(True)
        start = time.perf_counter()
        while len(fp32) < max_pairs and (len(fp32) < 3 or time.perf_counter() - start < budget_s):
            fp32.append(timed(False))
            bf16.append(timed(True))
    return min(fp32), min(bf16)


_probe_lock = threading.Lock()
_probes: dict[str, Bf16Probe] = {}


def reset_bf16_probe() -> None:
    """Forget measured probes (tests)."""
    with _probe_lock:
        _probes.clear()


def _device(device: torch.device | str) -> torch.device:
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def bf16_probe(device: torch.device | str, override: str = "auto") -> Bf16Probe:
    """Whether bf16 autocast is native and fast on ``device``; measured once per process
    and device (thread-safe: concurrent callers wait for one measurement).

    ``override`` is SAM2WEB_BF16_PROBE: ``auto`` measures, ``yes``/``no`` answer without
    measuring (not cached). A CPU measurement takes about 0.5 s (up to
    :data:`PROBE_ATTEMPTS` times that where bf16 does not win at once) with torch's current
    thread count; a CUDA answer takes no measurement.
    """
    choice = (override or "auto").strip().lower()
    if choice not in PROBE_OVERRIDES:
        raise ValueError(f"SAM2WEB_BF16_PROBE must be auto, yes or no, got {override!r}")
    dev = _device(device)
    if choice != "auto":
        return Bf16Probe(
            str(dev),
            cpu_model() if dev.type == "cpu" else dev.type,
            (),
            choice == "yes",
            None,
            None,
            choice == "yes",
            f"set by SAM2WEB_BF16_PROBE={choice}",
        )
    key = str(dev)
    with _probe_lock:
        found = _probes.get(key)
        if found is None:
            found = _probes[key] = _measure(dev)
            log.info("bf16 probe on %s", found.describe())
        return found


def bf16_is_fast(device: torch.device | str, override: str = "auto") -> bool:
    """True when bf16 autocast is native and clearly faster than float32 on ``device``
    (see :func:`bf16_probe`)."""
    return bf16_probe(device, override).fast


def _measure(dev: torch.device) -> Bf16Probe:
    import torch

    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        native = cuda_bf16_native(dev)
        reason = "the GPU computes bf16 natively" if native else "the GPU has no native bf16"
        return Bf16Probe(str(dev), name, (), native, None, None, native, reason)
    if dev.type != "cpu":
        return Bf16Probe(
            str(dev), dev.type, (), False, None, None, False, f"no bf16 probe for {dev.type}"
        )
    flags = cpu_bf16_flags()
    native = cpu_bf16_native(flags)
    shown = flags if flags is not None else (("onednn_bf16",) if native else ())
    if not native:
        return Bf16Probe(
            "cpu",
            cpu_model(),
            shown,
            False,
            None,
            None,
            False,
            "the CPU has no native bf16 (no avx512_bf16 or amx_bf16)",
        )
    # Load from other processes pulls the ratio towards 1 (two threads of small bf16 kernels
    # on a busy 2-core machine measured 0.8x where one quiet run gives 3-4x), never a CPU
    # without fast bf16 above the threshold, so a failed attempt is repeated, twice at most.
    fp32_s, bf16_s = time_probe_workload()
    for _ in range(PROBE_ATTEMPTS - 1):
        if bf16_decision(native, fp32_s, bf16_s):
            break
        again = time_probe_workload()
        if again[0] / again[1] > fp32_s / bf16_s:
            fp32_s, bf16_s = again
    fast = bf16_decision(native, fp32_s, bf16_s)
    speedup = fp32_s / bf16_s if bf16_s > 0 else float("inf")
    if fast:
        reason = f"bf16 is {speedup:.1f}x faster than float32"
    else:
        reason = (
            f"bf16 is only {speedup:.2f}x as fast as float32 (needs {MIN_BF16_SPEEDUP}x) "
            "despite the flags"
        )
    return Bf16Probe("cpu", cpu_model(), shown, native, fp32_s, bf16_s, fast, reason)


# ---------------------------------------------------------------------------- qualities

QUALITY_KEYS = ("full", "full-bf16", "full-fp16", "fast")

BF16_CAPABILITY = (8, 0)
"""CUDA compute capability from which a GPU computes bfloat16 natively (Ampere: A100, A10,
RTX 30xx; then Ada, Hopper: H100, H200)."""

FP16_CAPABILITY = (7, 0)
"""CUDA compute capability from which a GPU without native bf16 has float16 tensor cores
(Volta V100, Turing T4 and RTX 20xx); older GPUs run float32 only."""

ZEROGPU_CAPABILITY = (9, 0)
"""The compute capability of the GPUs ZeroGPU lends (NVIDIA H200 slices, per Hugging Face's
ZeroGPU documentation). The web process of a ZeroGPU Space must not initialise CUDA, so the
qualities of its tracking jobs are decided from this instead of asking the GPU."""


@dataclass(frozen=True)
class Quality:
    """One processing quality: what the page offers and what it implies for the model."""

    key: str  # "full", "full-bf16", "full-fp16" or "fast"
    label: str  # for the page: "Full resolution, faster (bfloat16)"
    resolution: int  # processing size in pixels (square)
    bf16: bool  # the model runs under bfloat16 autocast
    exact: bool  # SAM2's own float32 arithmetic at SAM2WEB_RESOLUTION
    fp16: bool = False  # the model runs under float16 autocast (GPUs without native bf16)

    @property
    def precision(self) -> str:
        """``bfloat16``, ``float16`` or ``float32``: what the model's autocast runs."""
        return "bfloat16" if self.bf16 else "float16" if self.fp16 else "float32"


def cuda_capability(device: torch.device | str | None = None) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA GPU (initialises CUDA)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def half_precision(capability: tuple[int, int]) -> str | None:
    """The reduced precision a CUDA GPU of ``capability`` computes natively: ``bf16`` from
    :data:`BF16_CAPABILITY`, ``fp16`` from :data:`FP16_CAPABILITY`, else None."""
    if tuple(capability) >= BF16_CAPABILITY:
        return "bf16"
    return "fp16" if tuple(capability) >= FP16_CAPABILITY else None


def cuda_bf16_native(
    device: torch.device | str | None = None, capability: tuple[int, int] | None = None
) -> bool:
    """True when the CUDA GPU computes bfloat16 natively (not emulated): compute capability
    8.0 or higher (``capability`` where known, else asked of the GPU); on ROCm, torch's own
    check."""
    import torch

    if capability is None and getattr(torch.version, "hip", None):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # older torch: no emulation to exclude
            return bool(torch.cuda.is_bf16_supported())
    return half_precision(capability or cuda_capability(device)) == "bf16"


def _cuda_half(device, capability: tuple[int, int] | None) -> str | None:
    return half_precision(capability if capability is not None else cuda_capability(device))


def setting_wants_bf16(
    device: torch.device | str,
    bf16_setting: str = "auto",
    capability: tuple[int, int] | None = None,
) -> bool:
    """Whether SAM2WEB_BF16 alone turns bfloat16 autocast on for ``device``: on CUDA for
    ``auto`` (where the GPU has native bf16) and ``1``; on a CPU only for ``1`` where its
    flags show native bf16; never elsewhere (MPS: float32) or for ``0``."""
    import torch

    dev = torch.device(device)
    setting = (bf16_setting or "auto").strip().lower()
    if dev.type == "cuda" and setting in ("auto", "1"):
        return setting == "1" or _cuda_half(dev, capability) == "bf16"
    if dev.type == "cpu" and setting == "1":
        return cpu_bf16_native(cpu_bf16_flags())
    return False


def setting_wants_fp16(
    device: torch.device | str,
    bf16_setting: str = "auto",
    capability: tuple[int, int] | None = None,
) -> bool:
    """Whether SAM2WEB_BF16=auto runs float16 autocast instead: on a CUDA GPU with float16
    tensor cores and no native bf16 (T4, V100)."""
    import torch

    dev = torch.device(device)
    setting = (bf16_setting or "auto").strip().lower()
    return dev.type == "cuda" and setting == "auto" and _cuda_half(dev, capability) == "fp16"


def quality(
    key: str,
    device: torch.device | str,
    settings: Settings,
    capability: tuple[int, int] | None = None,
) -> Quality:
    """What quality ``key`` means on ``device`` under ``settings`` (offered or not).

    ``full``: float32 at SAM2WEB_RESOLUTION, exact. ``full-bf16``: the same resolution under
    bfloat16 autocast (on CUDA with TF32 for what stays float32). ``full-fp16``: the same
    under float16 autocast, for CUDA GPUs without native bf16. ``fast``:
    SAM2WEB_FAST_RESOLUTION (at most SAM2WEB_RESOLUTION) with the precision SAM2WEB_BF16
    chooses for the device. ``capability``: the CUDA GPU's, where known without asking it.
    """
    if key == "full":
        px = settings.resolution
        return Quality(key, f"Full resolution ({px} px)", px, False, True)
    if key == "full-bf16":
        return Quality(key, "Full resolution, faster (bfloat16)", settings.resolution, True, False)
    if key == "full-fp16":
        label = "Full resolution, faster (float16)"
        return Quality(key, label, settings.resolution, False, False, fp16=True)
    if key == "fast":
        px = min(settings.fast_resolution, settings.resolution)
        bf16 = setting_wants_bf16(device, settings.bf16, capability)
        fp16 = not bf16 and setting_wants_fp16(device, settings.bf16, capability)
        return Quality(key, f"Fast preview ({px} px, approximate)", px, bf16, False, fp16)
    raise ValueError(f"quality must be one of {', '.join(QUALITY_KEYS)}, got {key!r}")


def available_qualities(
    device: torch.device | str, settings: Settings, capability: tuple[int, int] | None = None
) -> list[str]:
    """The quality keys ``device`` (the device that tracks) offers, best first: ``full``;
    ``full-bf16`` where :func:`bf16_is_fast` says yes (on CUDA: compute capability 8.0 or
    more); ``full-fp16`` on CUDA GPUs with float16 tensor cores and no native bf16; neither
    with SAM2WEB_BF16=0 nor on MPS; ``fast`` where SAM2WEB_FAST_RESOLUTION is below
    SAM2WEB_RESOLUTION. May run the CPU's bf16 probe (once per process, a fraction of a
    second)."""
    import torch

    dev = torch.device(device)
    keys = ["full"]
    if settings.bf16 != "0" and dev.type == "cuda" and capability is not None:
        probe = (settings.bf16_probe or "auto").strip().lower()
        bf16 = probe == "yes" or (probe == "auto" and half_precision(capability) == "bf16")
        if bf16:
            keys.append("full-bf16")
    elif settings.bf16 != "0" and bf16_is_fast(dev, settings.bf16_probe):
        keys.append("full-bf16")
    if (
        settings.bf16 != "0"
        and dev.type == "cuda"
        and "full-bf16" not in keys
        and _cuda_half(dev, capability) == "fp16"
    ):
        keys.append("full-fp16")
    if settings.fast_resolution < settings.resolution:
        keys.append("fast")
    return keys


def qualities(
    device: torch.device | str, settings: Settings, capability: tuple[int, int] | None = None
) -> list[Quality]:
    """:func:`available_qualities` with what each means (label, resolution, precision)."""
    return [
        quality(key, device, settings, capability)
        for key in available_qualities(device, settings, capability)
    ]


def default_quality(
    device: torch.device | str, settings: Settings, capability: tuple[int, int] | None = None
) -> str:
    """The quality a new session starts with: ``full-bf16`` where SAM2WEB_BF16 asks for bf16
    on this device (``auto`` on a GPU with native bf16, ``1`` on a CPU where it is offered),
    else ``full`` (float16 on GPUs without bf16 is offered, not chosen: SAM 2 is trained and
    published in bfloat16, and float16's narrower range is the user's choice to try)."""
    import torch

    dev = torch.device(device)
    wants = settings.bf16 == "1" or (settings.bf16 == "auto" and dev.type == "cuda")
    if wants and "full-bf16" in available_qualities(dev, settings, capability):
        return "full-bf16"
    return "full"


# ---------------------------------------------------------------------------- compile

COMPILE_CHOICES = ("off", "on", "vos")


def compile_plan(setting: str) -> str:
    """What SAM2WEB_COMPILE asks for: ``"none"`` (``off``) or ``"all"`` (``on``: compile the
    image encoder for every call). :func:`compile_predictor` also knows ``"bf16"`` (only calls
    under bf16 autocast), which the benchmarks use.

    No compiled variant won on the CPUs measured (see benchmarks/README.md), hence no
    automatic choice: ``on`` is for trying it elsewhere, e.g. on a GPU.
    """
    choice = (setting or "off").strip().lower()
    if choice not in COMPILE_CHOICES:
        raise ValueError(f"SAM2WEB_COMPILE must be off, on or vos, got {setting!r}")
    # "vos" is SAM 2.1's own compiled predictor, built by sam2 (see build_predictor).
    return "all" if choice == "on" else "none"


C_COMPILERS = ("cc", "gcc", "clang")
"""Any one of these on PATH lets torch.compile's inductor build its kernels."""


def c_compiler() -> str | None:
    """The path of a C compiler inductor can use: ``$CXX``/``$CC`` where set and found, else
    the first of :data:`C_COMPILERS` on PATH; None where there is none."""
    import os
    import shutil

    for name in (os.environ.get("CXX", ""), os.environ.get("CC", ""), *C_COMPILERS):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def check_compile_possible(setting: str, device_type: str) -> None:
    """Refuse SAM2WEB_COMPILE=on (any device) or vos (CUDA, where it applies) in one sentence
    where no C compiler is present: inductor compiles its kernels with one, and would
    otherwise fail in the middle of the first model call."""
    from ..errors import CheckpointError

    choice = (setting or "off").strip().lower()
    applies = choice == "on" or (choice == "vos" and device_type == "cuda")
    if applies and c_compiler() is None:
        raise CheckpointError(
            f"SAM2WEB_COMPILE={choice} needs a C compiler (cc, gcc or clang) on PATH for "
            "torch.compile, and none was found; install one (such as gcc) or "
            "set SAM2WEB_COMPILE=off."
        )


def compile_predictor(
    predictor: torch.nn.Module, plan: str, *, warm_up_bf16: bool = True
) -> dict | None:
    """Compile ``predictor``'s image encoder in place with ``torch.compile`` (inductor) as
    ``plan`` (from :func:`compile_plan`) says, and pay the compile now with one call on a
    blank frame, so that no session waits for it.

    The compiled forward is installed on the encoder instance: weights, state dict and
    every other part stay as they were, and with ``plan="bf16"`` calls without bf16
    autocast keep the eager forward. Returns ``{"plan", "parts", "seconds", "warmed"}``
    (seconds: wall time of the warm-up calls, i.e. the compile), or None for ``"none"``.
    """
    if plan == "none":
        return None
    if plan not in ("bf16", "all"):
        raise ValueError(f"compile plan must be none, bf16 or all, got {plan!r}")
    import torch

    encoder = predictor.image_encoder
    device = next(encoder.parameters()).device
    eager = encoder.forward
    compiled = torch.compile(eager, backend="inductor", dynamic=False)

    def forward(sample: torch.Tensor):
        if plan == "bf16" and not (
            torch.is_autocast_enabled(device.type)
            and torch.get_autocast_dtype(device.type) == torch.bfloat16
        ):
            return eager(sample)
        return compiled(sample)

    encoder.forward = forward
    size = int(predictor.image_size)
    blank = torch.zeros(1, 3, size, size, device=device)
    warm = ["bf16"] if plan == "bf16" or warm_up_bf16 else []
    if plan == "all":
        warm.insert(0, "fp32")
    start = time.perf_counter()
    with torch.inference_mode():
        # One eager call first fills the encoder's position-encoding cache (a Python dict
        # the compiled code guards on); compiling before it would compile twice.
        eager(blank)
        for dtype in warm:
            if dtype == "bf16" and device.type in ("cpu", "cuda"):
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    encoder(blank)
            elif dtype == "fp32":
                encoder(blank)
    seconds = time.perf_counter() - start
    log.info("Compiled the image encoder (%s) at %d px in %.1f s", plan, size, seconds)
    return {"plan": plan, "parts": ["image_encoder"], "seconds": seconds, "warmed": warm}
