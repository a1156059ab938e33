"""The checkpoint registry and the checkpoint files.

* :data:`MODELS` names the eight official SAM2/SAM2.1 checkpoints and where they live.
* :func:`resolve_checkpoint` finds a checkpoint: an explicit path, then the cache, then a
  download from the Hugging Face Hub (``HF_ENDPOINT`` is honoured at call time).
* :func:`load_state_dict` reads a checkpoint's weights and :func:`check_matches` compares
  them, key by key and shape by shape, with a built model; a mismatch ends in one clear
  sentence.
* :func:`checkpoint_identity` fingerprints a checkpoint file.

Importing this module downloads and creates nothing; torch and huggingface_hub are imported
inside the functions that need them.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..types import Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch

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


def check_matches(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], spec: ModelSpec
) -> None:
    """Raise a :class:`CheckpointError` naming what differs when ``state`` does not fit
    ``model`` (built for ``spec``): missing, unexpected or reshaped weights."""
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
