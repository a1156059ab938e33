"""Devices, precision and the shared SAM2 video predictor.

* :func:`choose_device` picks the device and :func:`autocast_context` the precision of
  model calls.
* :func:`build_predictor` builds sam2's own ``SAM2VideoPredictor`` through
  ``build_sam2_video_predictor`` (so every default Meta applies is kept) and loads the
  weights with strict key and shape checks that end in one clear sentence.
* :class:`ModelCache` holds one predictor per configuration, shared read-only by sessions.
* :func:`write_random_checkpoint` saves a real architecture with random weights, for tests.

The registry of models and the checkpoint files are in :mod:`sam2web.tracking.checkpoints`.
Importing this module builds, downloads and creates nothing; torch and sam2 are imported
inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .checkpoints import (
    DEFAULT_MODEL,
    ModelSpec,
    check_matches,
    checkpoint_identity,
    get_spec,
    load_state_dict,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .accel import Quality

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- devices


def choose_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. ``cuda``, ``cuda:N``, ``mps`` or ``cpu``
    must be available, else a :class:`CheckpointError` says what to set."""
    import torch

    req = (requested or "auto").strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if req == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_ok and not macos_has_mps_bf16():
            log.info(
                "Apple GPU skipped: SAM 2 keeps its memory in bfloat16, which MPS has from macOS 14"
            )
            return torch.device("cpu")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(req)
    except RuntimeError:
        raise CheckpointError(
            f"Unknown device {requested!r}; set SAM2WEB_DEVICE to auto, cuda, mps or cpu."
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise CheckpointError(
                f"SAM2WEB_DEVICE is {requested!r} but PyTorch sees no such CUDA GPU here; "
                "set SAM2WEB_DEVICE to auto or cpu."
            )
    elif device.type == "mps":
        if not mps_ok:
            raise CheckpointError(
                "SAM2WEB_DEVICE is 'mps' but no Apple GPU (MPS) is available to PyTorch; "
                "set SAM2WEB_DEVICE to auto or cpu."
            )
        if not macos_has_mps_bf16():
            raise CheckpointError(
                "SAM2WEB_DEVICE is 'mps' but SAM 2 keeps its tracking memory in bfloat16, "
                "which Apple GPUs run from macOS 14 only; update macOS or set "
                "SAM2WEB_DEVICE to cpu."
            )
    elif device.type != "cpu":
        raise CheckpointError(
            f"Unsupported device {requested!r}; set SAM2WEB_DEVICE to auto, cuda, mps or cpu."
        )
    return device


def macos_has_mps_bf16(mac_version: str | None = None) -> bool:
    """Whether MPS has bfloat16 here: macOS 14 or later (``mac_version``, e.g. ``"13.6"``;
    default: this machine's, via ``platform.mac_ver``). sam2 stores every tracked frame's
    memory features in bfloat16, whatever the autocast. True off macOS (no MPS there)."""
    import platform

    version = platform.mac_ver()[0] if mac_version is None else mac_version
    if not version:
        return True
    try:
        return int(version.split(".")[0]) >= 14
    except ValueError:
        return True


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU's flags show native bfloat16 (AVX512-BF16 or AMX; off Linux, oneDNN's
    own check). Flags alone do not make bf16 fast: :func:`sam2web.tracking.accel.bf16_is_fast` also
    times it."""
    from .accel import cpu_bf16_flags, cpu_bf16_native

    return cpu_bf16_native(cpu_bf16_flags())


def autocast_dtype(
    device: torch.device | str,
    bf16_setting: str = "auto",
    *,
    quality: Quality | str | None = None,
) -> str | None:
    """``"bfloat16"``, ``"float16"`` or None (float32): the autocast of model calls on
    ``device``.

    Without ``quality``, SAM2WEB_BF16 (``bf16_setting``) decides: on CUDA ``auto`` runs
    bfloat16 where the GPU has it natively (compute capability 8.0 or more), float16 on GPUs
    with float16 tensor cores and no bf16 (T4, V100), float32 on older ones; ``1`` runs
    bfloat16 on CUDA, and on a CPU only where it has native bf16; ``0`` runs float32.

    A ``quality`` (a :class:`~sam2web.tracking.accel.Quality` or its key) decides instead:
    ``full`` float32, ``full-bf16`` bfloat16 and ``full-fp16`` float16 (CUDA only; elsewhere
    float32 with a warning), ``fast`` as SAM2WEB_BF16 above. MPS always runs float32.
    """
    import torch

    from .accel import QUALITY_KEYS, Quality, setting_wants_bf16, setting_wants_fp16

    device = torch.device(device)
    if quality is not None:
        if isinstance(quality, Quality):
            dtype = {"bfloat16": "bfloat16", "float16": "float16"}.get(quality.precision)
            fixed = True
        elif quality in QUALITY_KEYS:
            dtype = {"full-bf16": "bfloat16", "full-fp16": "float16"}.get(quality)
            fixed = quality != "fast"
        else:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_KEYS)}, got {quality!r}")
        if fixed:
            allowed = ("cpu", "cuda") if dtype == "bfloat16" else ("cuda",)
            if dtype is not None and device.type not in allowed:
                log.warning("%s autocast is not available on %s; running float32", dtype, device)
                return None
            return dtype
    if setting_wants_bf16(device, bf16_setting):
        return "bfloat16"
    if setting_wants_fp16(device, bf16_setting):
        return "float16"
    if device.type == "cpu" and (bf16_setting or "").strip() == "1":
        log.info("SAM2WEB_BF16=1 ignored: this CPU has no native bfloat16 support")
    return None


def autocast_context(
    device: torch.device | str,
    bf16_setting: str = "auto",
    *,
    quality: Quality | str | None = None,
):
    """A context manager for model calls: ``torch.autocast`` in the dtype
    :func:`autocast_dtype` chooses, a no-op context for float32. On CUDA, bfloat16 autocast
    also lets the matrix products and convolutions autocast leaves in float32 use TF32
    (:func:`tf32_allowed`), as sam2's own examples do on Ampere and later GPUs; float32 and
    float16 runs keep exact float32 products."""
    import torch

    device = torch.device(device)
    dtype = autocast_dtype(device, bf16_setting, quality=quality)
    if dtype is None:
        return contextlib.nullcontext()
    cast = torch.autocast(device.type, dtype=getattr(torch, dtype))
    if device.type == "cuda" and dtype == "bfloat16":
        return _tf32_and(cast)
    return cast


_tf32_lock = threading.Lock()
_tf32_users = 0
_tf32_saved: tuple[bool, bool] = (False, False)


@contextlib.contextmanager
def tf32_allowed() -> Iterator[None]:
    """TF32 for CUDA matrix products and cuDNN convolutions while inside; the previous
    settings come back when the last concurrent user leaves. These are process-wide
    switches: with SAM2WEB_CONCURRENCY above 1, a float32 unit running at the same moment
    as a bfloat16 one also computes in TF32."""
    import torch

    global _tf32_users, _tf32_saved
    with _tf32_lock:
        if _tf32_users == 0:
            _tf32_saved = (
                torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.allow_tf32,
            )
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        _tf32_users += 1
    try:
        yield
    finally:
        with _tf32_lock:
            _tf32_users -= 1
            if _tf32_users == 0:
                matmul, cudnn = _tf32_saved
                torch.backends.cuda.matmul.allow_tf32 = matmul
                torch.backends.cudnn.allow_tf32 = cudnn


@contextlib.contextmanager
def _tf32_and(cast) -> Iterator[None]:
    with tf32_allowed(), cast:
        yield


# ---------------------------------------------------------------------------- predictor

# sam2's hole filling needs the optional compiled extension sam2._C; without it sam2 warns
# on every frame and skips that step (fill_holes_in_mask_scores). The warning is issued with
# stacklevel=2, so it is attributed to the video predictor module.
MISSING_EXTENSION_MESSAGE = r"cannot import name '_C' from 'sam2'"
_MISSING_EXTENSION_MODULE = r"sam2\.sam2_video_predictor"

# hydra's global config state is not safe to compose from two threads at once.
_BUILD_LOCK = threading.Lock()


_hidden = threading.local()


@contextlib.contextmanager
def cuda_hidden_unless(device) -> Iterator[None]:
    """While a model for ``device`` is built, ``torch.cuda.is_available()`` answers False in
    the building thread unless ``device`` is a CUDA device; hold the build lock around it.

    sam2's constructors move cached position encodings to ``"cuda"`` whenever CUDA looks
    available (``PositionEmbeddingSine``, ``RoPEAttention``), whatever device the model is
    built for. On a ZeroGPU Space the ``spaces`` package makes ``is_available`` answer True in
    every thread of the web process and makes CUDA's initialisation raise there, so a CPU
    model built for clicks would fail; on a CUDA host a CPU model would create a CUDA context
    and copy those encodings back on every call. Only the building thread is told False:
    other threads asking meanwhile (another session choosing its device) get the truth.
    """
    import torch

    if torch_device_type(device) == "cuda":
        yield
        return
    original = torch.cuda.is_available

    def is_available() -> bool:
        return False if getattr(_hidden, "depth", 0) else original()

    _hidden.depth = getattr(_hidden, "depth", 0) + 1
    torch.cuda.is_available = is_available
    try:
        yield
    finally:
        _hidden.depth -= 1
        torch.cuda.is_available = original


def settle_caches(model, device) -> int:
    """Move the position encodings sam2's modules cache (``PositionEmbeddingSine.cache``,
    ``RoPEAttention.freqs_cis``) to ``device``, the model's own; returns how many moved.

    sam2 builds them on ``"cuda"`` (the current GPU) when CUDA is visible, and
    ``PositionEmbeddingSine`` copies a cached tensor to the input's device on every call
    without keeping the copy: for a model on another GPU (``cuda:1``) each image-encoder
    call would copy them across."""
    import torch

    device = torch.device(device)
    moved = 0
    for module in model.modules():
        cache = getattr(module, "cache", None)
        if isinstance(cache, dict):
            for key, value in list(cache.items()):
                if isinstance(value, torch.Tensor) and value.device != device:
                    cache[key] = value.to(device)
                    moved += 1
        freqs = getattr(module, "freqs_cis", None)
        if isinstance(freqs, torch.Tensor) and freqs.device != device:
            module.freqs_cis = freqs.to(device)
            moved += 1
    return moved


def silence_missing_extension_warning() -> None:
    """Hide sam2's per-frame warning about its missing optional CUDA extension.

    Only that message from sam2's video predictor is filtered; results are unchanged (sam2
    skips the same step either way). Calling it again adds no duplicate filter.
    """
    warnings.filterwarnings(
        "ignore",
        message=MISSING_EXTENSION_MESSAGE,
        category=UserWarning,
        module=_MISSING_EXTENSION_MODULE,
    )


def hydra_overrides(image_size: int = 1024, corrections: str = "keep") -> list[str]:
    """Config overrides sam2web adds on top of Meta's defaults.

    ``image_size`` other than 1024 sets the input size and the memory-attention RoPE grid
    (``image_size / 16`` per side). ``corrections="keep"`` turns on sam2's
    ``add_all_frames_to_correct_as_cond`` so a click on an already-tracked frame survives the
    next propagation; ``"upstream"`` keeps sam2's own default.
    """
    if image_size < 64 or image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 and at least 64, got {image_size}")
    if corrections not in ("keep", "upstream"):
        raise ValueError(f"corrections must be 'keep' or 'upstream', got {corrections!r}")
    overrides = []
    if image_size != 1024:
        grid = image_size // 16
        overrides += [
            f"++model.image_size={image_size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{grid},{grid}]",
            f"++model.memory_attention.layer.cross_attention.feat_sizes=[{grid},{grid}]",
        ]
    if corrections == "keep":
        overrides.append("++model.add_all_frames_to_correct_as_cond=true")
    return overrides


def build_predictor(
    spec: ModelSpec,
    ckpt_path: Path | str | None,
    *,
    device: torch.device | str,
    image_size: int = 1024,
    corrections: str = "keep",
    compile: str = "off",
):
    """sam2's ``SAM2VideoPredictor`` for ``spec`` with the weights in ``ckpt_path``, in eval mode.

    Built by sam2's own ``build_sam2_video_predictor`` (Meta's post-processing defaults
    included) and loaded strictly; ``ckpt_path=None`` leaves random weights (tests only).

    ``compile`` is SAM2WEB_COMPILE (see :func:`sam2web.tracking.accel.compile_plan`). With
    ``on`` the compile is paid here, once per predictor, and ``predictor.sam2web_compile``
    records what was compiled and the seconds it took; ``off`` leaves the predictor exactly
    as sam2 built it. ``vos`` on CUDA builds sam2's compiled ``SAM2VideoPredictorVOS`` and
    returns at once: ``predictor.sam2web_vos`` (a :class:`~sam2web.tracking.vos.CompileGate`)
    compiles it in a background thread while calls run its uncompiled forwards.
    """
    from sam2.build_sam import build_sam2_video_predictor

    from .accel import check_compile_possible

    check_compile_possible(compile, torch_device_type(device))
    overrides = hydra_overrides(image_size, corrections)
    vos = compile == "vos" and vos_applies(device)
    if compile == "vos" and not vos:
        log.info("SAM2WEB_COMPILE=vos ignored: SAM 2.1's fast path is for CUDA devices")
    # Read the weights first: a bad file fails fast, before the model is built.
    state = load_state_dict(ckpt_path) if ckpt_path is not None else None
    silence_missing_extension_warning()
    # CUDA stays hidden from the whole build of a model for another device: construction,
    # loading and compiling.
    with _BUILD_LOCK, cuda_hidden_unless(device):
        predictor = build_sam2_video_predictor(
            spec.config,
            ckpt_path=None,
            device=device,
            hydra_overrides_extra=overrides,
            vos_optimized=vos,
        )
        settle_caches(predictor, device)
        if state is None:
            log.warning("Built %s with random weights (no checkpoint)", spec.key)
            return _compiled(predictor, compile, vos)
        check_matches(predictor, state, spec)
        predictor.load_state_dict(state, strict=True)
        log.info("Loaded %s from %s on %s at %d px", spec.key, ckpt_path, device, image_size)
        return _compiled(predictor, compile, vos)


def torch_device_type(device) -> str:
    import torch

    return torch.device(device).type


def vos_applies(device) -> bool:
    """Whether SAM2WEB_COMPILE=vos builds SAM 2.1's compiled predictor on ``device``
    (CUDA only)."""
    return torch_device_type(device) == "cuda"


def _compiled(predictor, setting: str, vos: bool = False):
    from .accel import compile_plan, compile_predictor

    if vos:
        # sam2 wrapped the parts in torch.compile; compile them in the background so that
        # no click waits (see sam2web.tracking.vos).
        from .vos import CompileGate

        gate = predictor.sam2web_vos = CompileGate(predictor)
        device = predictor.device
        gate.start(lambda: autocast_context(device))
        return predictor
    record = compile_predictor(predictor, compile_plan(setting))
    if record is not None:
        predictor.sam2web_compile = record
    return predictor


@dataclass
class _Slot:
    lock: threading.Lock
    predictor: Any = None


class ModelCache:
    """One predictor per (model, checkpoint, device, image size, corrections, compile),
    built on first use (compiling, where asked, happens then: once per process). Thread-safe: concurrent requests for the same configuration build it once.

    At most ``max_models`` predictors are kept; the least recently used is dropped from the
    cache (sessions holding it keep working).
    """

    def __init__(self, max_models: int = 2):
        self.max_models = max(1, max_models)
        self.builds = 0  # how many predictors this cache has built
        self._lock = threading.Lock()
        self._slots: OrderedDict[tuple, _Slot] = OrderedDict()

    def get(
        self,
        spec: ModelSpec,
        ckpt_path: Path | str | None,
        device: torch.device | str,
        image_size: int = 1024,
        corrections: str = "keep",
        compile: str = "off",
    ):
        import torch

        device = torch.device(device)
        ident = checkpoint_identity(ckpt_path) if ckpt_path is not None else "random"
        key = (spec.key, ident, str(device), int(image_size), corrections, compile)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(threading.Lock())
            self._slots.move_to_end(key)
        with slot.lock:
            if slot.predictor is None:
                try:
                    predictor = build_predictor(
                        spec,
                        ckpt_path,
                        device=device,
                        image_size=image_size,
                        corrections=corrections,
                        compile=compile,
                    )
                except BaseException:
                    with self._lock:
                        if self._slots.get(key) is slot:
                            del self._slots[key]
                    raise
                slot.predictor = predictor
                with self._lock:
                    self.builds += 1
                    self._evict(keep=key)
            return slot.predictor

    def _evict(self, keep: tuple) -> None:
        built = [k for k, s in self._slots.items() if s.predictor is not None and k != keep]
        while len(built) + 1 > self.max_models:
            del self._slots[built.pop(0)]

    def compile_status(self) -> str | None:
        """A sentence while a cached model compiles in the background (SAM2WEB_COMPILE=vos),
        else None."""
        with self._lock:
            predictors = [s.predictor for s in self._slots.values() if s.predictor is not None]
        for predictor in predictors:
            gate = getattr(predictor, "sam2web_vos", None)
            if gate is not None and gate.status():
                return gate.status()
        return None

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(s.predictor is not None for s in self._slots.values())


def write_random_checkpoint(
    path: Path | str, model_key: str = DEFAULT_MODEL, seed: int = 0
) -> Path:
    """Save the real architecture of ``model_key`` with seeded random weights as a checkpoint
    (``{"model": state_dict}``), the way official checkpoints are stored. For tests and
    benchmarks: the weights are meaningless, the shapes and code paths are real."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    spec = get_spec(model_key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _BUILD_LOCK, cuda_hidden_unless("cpu"):
            model = build_sam2_video_predictor(spec.config, ckpt_path=None, device="cpu")
    tmp = path.with_name(path.name + ".part")
    torch.save({"model": model.state_dict()}, tmp)
    tmp.replace(path)
    return path
