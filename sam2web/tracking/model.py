"""Model registry, checkpoints and the shared SAM2 video predictor.

* :data:`MODELS` names the eight official SAM2/SAM2.1 checkpoints and where they live.
* :func:`resolve_checkpoint` finds a checkpoint: an explicit path, then the cache, then a
  download from the Hugging Face Hub (``HF_ENDPOINT`` is honoured at call time).
* :func:`build_predictor` builds sam2's own ``SAM2VideoPredictor`` through
  ``build_sam2_video_predictor`` (so every default Meta applies is kept) and loads the
  weights with strict key and shape checks that end in one clear sentence.
* :class:`ModelCache` holds one predictor per configuration, shared read-only by sessions.

Importing this module builds, downloads and creates nothing; torch and sam2 are imported
inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import socket
import threading
import urllib.parse
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..types import Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .accel import Quality

log = logging.getLogger(__name__)

"""``progress(done, total)``: bytes downloaded so far and the file size (None if unknown)."""


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    key: str  # "sam2.1-tiny"
    label: str  # "SAM 2.1 tiny (156 MB)"
    config: str  # hydra config inside the sam2 package
    hf_repo: str  # "facebook/sam2.1-hiera-tiny"
    filename: str  # "sam2.1_hiera_tiny.pt"
    size_mb: int  # approximate download size

    @property
    def name(self) -> str:
        """The label without the size: "SAM 2.1 tiny"."""
        return self.label.rsplit(" (", 1)[0]


def _spec(version: str, size: str, size_label: str, size_mb: int, config_suffix: str) -> ModelSpec:
    # Configs and file names as in sam2.build_sam.HF_MODEL_ID_TO_FILENAMES (a test checks it).
    stem = "sam2.1" if version == "2.1" else "sam2"
    return ModelSpec(
        key=f"{stem}-{size}",
        label=f"SAM {version} {size_label} ({size_mb} MB)",
        config=f"configs/{stem}/{stem}_hiera_{config_suffix}.yaml",
        hf_repo=f"facebook/{stem}-hiera-{size}",
        filename=f"{stem}_hiera_{size.replace('-', '_')}.pt",
        size_mb=size_mb,
    )


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        _spec("2.1", "tiny", "tiny", 156, "t"),
        _spec("2.1", "small", "small", 184, "s"),
        _spec("2.1", "base-plus", "base+", 323, "b+"),
        _spec("2.1", "large", "large", 898, "l"),
        _spec("2", "tiny", "tiny", 156, "t"),
        _spec("2", "small", "small", 184, "s"),
        _spec("2", "base-plus", "base+", 324, "b+"),
        _spec("2", "large", "large", 898, "l"),
    )
}
DEFAULT_MODEL = "sam2.1-tiny"

# Image-encoder trunk of each size: (embed_dim, number of Hiera blocks). Used only to name
# the model a mismatching checkpoint seems to belong to.
_TRUNKS = {"tiny": (96, 12), "small": (96, 16), "base-plus": (112, 24), "large": (144, 48)}
# Weights that SAM 2.1 added over SAM 2.
_SAM21_ONLY_KEY = "no_obj_embed_spatial"


def get_spec(key: str) -> ModelSpec:
    """The model registered under ``key`` (case-insensitive)."""
    spec = MODELS.get(key.strip().lower())
    if spec is None:
        raise CheckpointError(
            f"Unknown model {key!r}; set SAM2WEB_MODEL to one of {', '.join(MODELS)}."
        )
    return spec


# ---------------------------------------------------------------------------- checkpoints


def resolve_checkpoint(
    spec: ModelSpec,
    *,
    checkpoint: Path | None,
    cache_dir: Path,
    offline: bool,
    progress: Progress | None = None,
) -> Path:
    """Path of a checkpoint file for ``spec``.

    Order: the explicit ``checkpoint`` path (must exist); ``cache_dir/<filename>``; a file
    downloaded earlier into the Hugging Face cache layout under ``cache_dir``; a download
    (unless ``offline``). ``progress(done_bytes, total_bytes)`` follows the download.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"The checkpoint file {path.name} set in SAM2WEB_CHECKPOINT does not exist; set "
                f"SAM2WEB_CHECKPOINT to the path of a downloaded {spec.filename}, or leave it "
                "empty to download it."
            )
        return path

    cache_dir = Path(cache_dir).expanduser()
    cached = _find_cached(spec, cache_dir)
    if cached is not None:
        return cached
    if offline:
        raise CheckpointError(
            f"The {spec.name} checkpoint is not in the cache folder (SAM2WEB_CACHE_DIR) and "
            f"downloads are off (SAM2WEB_OFFLINE=1); download {spec.filename} yourself and set "
            "SAM2WEB_CHECKPOINT to its path."
        )
    return _download(spec, cache_dir, progress)


def _find_cached(spec: ModelSpec, cache_dir: Path) -> Path | None:
    plain = cache_dir / spec.filename
    if plain.is_file():
        return plain
    if not cache_dir.is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.hf_repo, spec.filename, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _download(spec: ModelSpec, cache_dir: Path, progress: Progress | None) -> Path:
    from huggingface_hub import hf_hub_download

    # huggingface_hub reads HF_ENDPOINT once, at import; read it again now so a mirror set
    # later (or per test) is used.
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    kwargs: dict[str, Any] = {"cache_dir": cache_dir, "endpoint": endpoint}
    if progress is not None:
        kwargs["tqdm_class"] = _progress_bar_class(progress)
    where = endpoint or "the Hugging Face Hub"
    log.info("Downloading %s/%s from %s into %s", spec.hf_repo, spec.filename, where, cache_dir)
    try:
        # Without a network huggingface_hub fails only after its own retries (about 20 s);
        # a server that cannot be reached at all is told in seconds.
        _check_reachable(endpoint or "https://huggingface.co")
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = Path(hf_hub_download(spec.hf_repo, spec.filename, **kwargs))
    except Exception as err:  # network, HTTP, timeout, disk: each ends in one sentence
        log.warning(
            "Downloading %s/%s from %s failed", spec.hf_repo, spec.filename, where, exc_info=True
        )
        raise CheckpointError(_download_failure(spec, err)) from None
    log.info("Checkpoint ready: %s", path)
    return path


def _check_reachable(url: str, timeout: float = 5.0) -> None:
    """Raise OSError when nothing answers at ``url``'s host and port. Skipped where a proxy
    is configured: the download then goes through the proxy, not straight to the host."""
    proxies = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(name) for name in proxies):
        return
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname, port), timeout=timeout):
        pass


def _download_failure(spec: ModelSpec, err: Exception) -> str:
    yourself = f"download {spec.filename} yourself and set SAM2WEB_CHECKPOINT to its path."
    response = getattr(err, "response", None)
    if getattr(response, "status_code", None) == 404:
        return (
            f"Could not download the {spec.name} checkpoint: the Hub has no "
            f"{spec.hf_repo}/{spec.filename}; {yourself}"
        )
    storage = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EPERM, errno.EDQUOT}
    if isinstance(err, OSError) and err.errno in storage:
        return (
            f"Could not save the {spec.name} checkpoint in the cache folder (disk full or "
            f"not writable); set SAM2WEB_CACHE_DIR to another folder, or {yourself}"
        )
    return f"Could not download the {spec.name} checkpoint (no internet connection?); {yourself}"


def _progress_bar_class(progress: Progress) -> type:
    """A tqdm stand-in that reports bytes to ``progress`` and draws nothing.

    huggingface_hub creates it with tqdm's keyword arguments and calls ``update(n)`` per
    chunk; ``update_transfer`` makes its Xet downloader report through the same bar.
    """

    class _Bar:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any):
            self.total = total
            self.n = initial
            progress(self.n, self.total)

        def update(self, n: int | float | None = 1) -> None:
            if n:
                self.n += int(n)
                progress(self.n, self.total)

        def update_transfer(self, n: int | float | None = 1) -> None:
            pass  # network bytes; progress follows bytes written

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        set_transfer_postfix_str = set_description = set_postfix_str

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return _Bar


def checkpoint_identity(path: Path | str) -> str:
    """A short, fast fingerprint of a checkpoint file: sha256 of its size, first and last MiB.

    Tells checkpoints apart without reading hundreds of megabytes; stored in project files
    to recognise the checkpoint a result came from.
    """
    chunk = 1 << 20
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            digest.update(f.read(chunk))
    return digest.hexdigest()[:16]


def load_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a SAM2 checkpoint (``{"model": state_dict}``), on the CPU.

    Loads with ``weights_only=True``: a checkpoint can hold tensors, not code.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"The checkpoint {path.name} is not a file; set SAM2WEB_CHECKPOINT to a .pt "
            "checkpoint file."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        log.warning("Cannot read checkpoint %s", path, exc_info=True)
        raise CheckpointError(
            f"The checkpoint {path.name} cannot be read; check that the file is accessible."
        ) from None
    except Exception:  # torch raises several types for damaged or foreign files
        log.warning("Checkpoint %s is not a loadable PyTorch file", path, exc_info=True)
        raise CheckpointError(
            f"The file {path.name} is not a usable PyTorch checkpoint (damaged or incomplete "
            "download?); download it again or choose another file."
        ) from None
    state = data.get("model") if isinstance(data, Mapping) else None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        log.warning(
            "Checkpoint %s has no 'model' state dict (top level: %s)",
            path,
            list(data)[:10] if isinstance(data, Mapping) else type(data).__name__,
        )
        raise CheckpointError(
            f"The file {path.name} is a PyTorch file but not a SAM2 checkpoint (it has no "
            "model weights); choose an official SAM2 checkpoint."
        )
    return dict(state)


def _guess_model(state: Mapping[str, Any]) -> ModelSpec | None:
    """The registered model whose architecture matches ``state``, if any (by trunk shape)."""
    embed = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if embed is None or not hasattr(embed, "shape"):
        return None
    block = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")
    blocks = {m.group(1) for k in state if (m := block.match(k))}
    trunk = (int(embed.shape[0]), len(blocks))
    stem = "sam2.1" if _SAM21_ONLY_KEY in state else "sam2"
    for size, shape in _TRUNKS.items():
        if shape == trunk:
            return MODELS[f"{stem}-{size}"]
    return None


def _weights(n: int, one: str, many: str) -> str:
    return f"1 weight {one}" if n == 1 else f"{n} weights {many}"


def _check_matches(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], spec: ModelSpec
) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    log.warning(
        "Checkpoint does not match %s: missing %s, unexpected %s, wrong shape %s",
        spec.key,
        missing[:20],
        unexpected[:20],
        reshaped[:20],
    )

    problems = []
    if missing:
        problems.append(_weights(len(missing), "is missing", "are missing"))
    if unexpected:
        problems.append(_weights(len(unexpected), "is not part of it", "are not part of it"))
    if reshaped:
        problems.append(_weights(len(reshaped), "has the wrong shape", "have the wrong shape"))
    guess = _guess_model(state)
    looks = f" (it looks like a {guess.name} checkpoint)" if guess and guess != spec else ""
    raise CheckpointError(
        f"This checkpoint does not match {spec.name}{looks}: {', '.join(problems)}; "
        "choose the matching model or checkpoint."
    )


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
    elif device.type != "cpu":
        raise CheckpointError(
            f"Unsupported device {requested!r}; set SAM2WEB_DEVICE to auto, cuda, mps or cpu."
        )
    return device


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU's flags show native bfloat16 (AVX512-BF16 or AMX; off Linux, oneDNN's
    own check). Flags alone do not make bf16 fast: :func:`sam2web.tracking.accel.bf16_is_fast` also
    times it."""
    from .accel import cpu_bf16_flags, cpu_bf16_native

    return cpu_bf16_native(cpu_bf16_flags())


def autocast_context(
    device: torch.device | str,
    bf16_setting: str = "auto",
    *,
    quality: Quality | str | None = None,
):
    """A context manager for model calls.

    Without ``quality``, SAM2WEB_BF16 (``bf16_setting``) decides: bfloat16 autocast on CUDA
    for ``auto``/``1`` (where the GPU supports bf16), on CPU only for ``1`` on a
    bf16-capable CPU; otherwise a no-op context.

    A ``quality`` (a :class:`~sam2web.tracking.accel.Quality` or its key) decides instead: ``full``
    runs float32 (no-op context), ``full-bf16`` runs ``torch.autocast(device.type,
    dtype=torch.bfloat16)`` on CPU or CUDA, ``fast`` follows ``bf16_setting`` as above.
    """
    import torch

    from .accel import QUALITY_KEYS, Quality, setting_wants_bf16

    device = torch.device(device)
    if quality is not None:
        if isinstance(quality, Quality):
            bf16 = quality.bf16
        elif quality in QUALITY_KEYS:
            bf16 = {"full": False, "full-bf16": True}.get(quality)
        else:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_KEYS)}, got {quality!r}")
        if bf16 is not None:
            if not bf16:
                return contextlib.nullcontext()
            if device.type in ("cpu", "cuda"):
                return torch.autocast(device.type, dtype=torch.bfloat16)
            log.warning("bfloat16 autocast is not available on %s; running float32", device)
            return contextlib.nullcontext()
    if setting_wants_bf16(device, bf16_setting):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if device.type == "cpu" and (bf16_setting or "").strip() == "1":
        log.info("SAM2WEB_BF16=1 ignored: this CPU has no native bfloat16 support")
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- predictor

# sam2's hole filling needs the optional compiled extension sam2._C; without it sam2 warns
# on every frame and skips that step (fill_holes_in_mask_scores). The warning is issued with
# stacklevel=2, so it is attributed to the video predictor module.
MISSING_EXTENSION_MESSAGE = r"cannot import name '_C' from 'sam2'"
_MISSING_EXTENSION_MODULE = r"sam2\.sam2_video_predictor"

# hydra's global config state is not safe to compose from two threads at once.
_BUILD_LOCK = threading.Lock()


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

    ``compile`` is SAM2WEB_COMPILE (off or on; see :func:`sam2web.tracking.accel.compile_plan`). With
    ``on`` the compile is paid here, once per predictor, and ``predictor.sam2web_compile``
    records what was compiled and the seconds it took; ``off`` leaves the predictor exactly
    as sam2 built it.
    """
    from sam2.build_sam import build_sam2_video_predictor

    overrides = hydra_overrides(image_size, corrections)
    vos = compile == "vos" and torch_device_type(device) == "cuda"
    if compile == "vos" and not vos:
        log.info("SAM2WEB_COMPILE=vos ignored: SAM 2.1's fast path is for CUDA devices")
    # Read the weights first: a bad file fails fast, before the model is built.
    state = load_state_dict(ckpt_path) if ckpt_path is not None else None
    silence_missing_extension_warning()
    with _BUILD_LOCK:
        predictor = build_sam2_video_predictor(
            spec.config,
            ckpt_path=None,
            device=device,
            hydra_overrides_extra=overrides,
            vos_optimized=vos,
        )
    if state is None:
        log.warning("Built %s with random weights (no checkpoint)", spec.key)
        return _compiled(predictor, compile)
    _check_matches(predictor, state, spec)
    predictor.load_state_dict(state, strict=True)
    log.info("Loaded %s from %s on %s at %d px", spec.key, ckpt_path, device, image_size)
    return _compiled(predictor, compile)


def torch_device_type(device) -> str:
    import torch

    return torch.device(device).type


def _compiled(predictor, setting: str):
    from .accel import compile_plan, compile_predictor

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
        with _BUILD_LOCK:
            model = build_sam2_video_predictor(spec.config, ckpt_path=None, device="cpu")
    tmp = path.with_name(path.name + ".part")
    torch.save({"model": model.state_dict()}, tmp)
    tmp.replace(path)
    return path
