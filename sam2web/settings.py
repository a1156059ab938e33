"""Every setting sam2web reads, in one place.

Settings come from environment variables. Each is declared once in ``SETTINGS`` with its
default and a help text; the README lists them all (a test checks that). Reading settings
has no side effects: nothing is created, downloaded or built here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    fallback: str = ""  # another variable read when this one is unset or empty


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SAM2WEB_MODEL",
        "sam2.1-tiny",
        "Model size to load: sam2.1-tiny, sam2.1-small, sam2.1-base-plus, sam2.1-large, "
        "or the SAM2.0 equivalents sam2-tiny ... sam2-large.",
    ),
    Setting(
        "SAM2WEB_CHECKPOINT",
        "",
        "Path to a local checkpoint file (.pt) for SAM2WEB_MODEL. When set, nothing is downloaded.",
    ),
    Setting(
        "SAM2WEB_CACHE_DIR", "~/.cache/sam2web", "Folder where downloaded checkpoints are kept."
    ),
    Setting(
        "SAM2WEB_OFFLINE",
        "0",
        "1 = never download checkpoints; use SAM2WEB_CHECKPOINT or the cache only.",
    ),
    Setting(
        "SAM2WEB_DEVICE",
        "auto",
        "Where the model runs: auto (CUDA, then Apple MPS, then CPU), cuda, mps or cpu.",
    ),
    Setting(
        "SAM2WEB_RESOLUTION",
        "1024",
        "Processing resolution in pixels (square). 1024 is SAM2's native size; smaller "
        "values (e.g. 512) are faster and approximate.",
    ),
    Setting(
        "SAM2WEB_FAST_RESOLUTION",
        "448",
        "Processing resolution of the page's *Fast preview* quality (approximate; a multiple "
        "of 32; 448 is about 9x faster than 1024 on a CPU). The page can measure its "
        "agreement with full quality on the user's clip.",
    ),
    Setting(
        "SAM2WEB_BF16",
        "auto",
        "Reduced precision: auto (bfloat16 on CUDA GPUs with native bf16, float16 for the "
        "fast preview on GPUs without it such as T4 and V100, float32 elsewhere), 1 "
        "(bfloat16; also on CPUs that support it), 0 (float32 only; no faster full quality).",
    ),
    Setting(
        "SAM2WEB_BF16_PROBE",
        "auto",
        "Whether the page offers *Full resolution, faster (bfloat16)*: auto (where the GPU "
        "has native bf16, or the CPU has avx512_bf16/amx_bf16 and a short timed probe at "
        "start-up finds bf16 at least 1.3x faster than float32), yes (always offer it), "
        "no (never).",
    ),
    Setting(
        "SAM2WEB_COMPILE",
        "off",
        "on: torch.compile SAM2's image encoder when a model is loaded (takes minutes, once "
        "per model and resolution). On the CPUs measured it made frames slower, not faster "
        "(benchmarks/README.md); off keeps sam2's own model. vos: on CUDA only, SAM 2.1's "
        "own fast path (vos_optimized), compiled in the background when the model loads "
        "while clicks and tracking run uncompiled (the model line says “Compiling the "
        "model for speed…”); click and object counts the warm-up did not compile (more "
        "than 3 clicks on a frame, more than 2 objects) and the exact float32 quality run "
        "uncompiled instead of compiling again; ignored on other devices. on and vos need a C "
        "compiler (cc, gcc or clang) and are refused without one.",
    ),
    Setting(
        "SAM2WEB_DATA_DIR",
        "",
        "Folder that holds one sub-folder per user session (frames, masks, exports). "
        "Empty = a 'sam2web' folder in the system temp directory.",
    ),
    Setting(
        "SAM2WEB_FRAME_FORMAT",
        "jpeg",
        "How decoded frames are stored per session: jpeg (quality 95, 4:4:4, the format "
        "SAM2's own loader reads) or png (lossless, larger).",
    ),
    Setting("SAM2WEB_MAX_UPLOAD_MB", "1024", "Largest upload accepted, in megabytes."),
    Setting("SAM2WEB_MAX_FRAMES", "5000", "Most frames a video or image sequence may have."),
    Setting("SAM2WEB_MAX_DURATION_S", "1800", "Longest video accepted, in seconds."),
    Setting(
        "SAM2WEB_MAX_PIXELS",
        "8294400",
        "Most pixels per frame (default 3840x2160); larger frames are refused.",
    ),
    Setting(
        "SAM2WEB_MAX_ZIP_RATIO",
        "200",
        "Largest allowed ratio of unpacked to packed size for zip uploads (zip-bomb guard).",
    ),
    Setting(
        "SAM2WEB_MAX_LABELS",
        "100",
        "Most objects one label image may start (each label becomes an object prompted "
        "with its mask).",
    ),
    Setting(
        "SAM2WEB_CORRECTIONS",
        "keep",
        "keep: a click on an already-tracked frame becomes a prompted frame and survives "
        "the next propagation. upstream: sam2 1.1.0's default, where the next propagation "
        "overwrites such corrections.",
    ),
    Setting(
        "SAM2WEB_FULL_MEMORY_FRAMES",
        "300",
        "Videos up to this many frames keep every tracked frame's model memory (refining any "
        "frame is immediate); longer videos keep only what SAM2 reads and re-track a released "
        "frame before refining it.",
    ),
    Setting(
        "SAM2WEB_HOST",
        "0.0.0.0",
        "Address the web app listens on. When unset, Gradio's GRADIO_SERVER_NAME is used "
        "if that is set (hosting platforms set it).",
        fallback="GRADIO_SERVER_NAME",
    ),
    Setting(
        "SAM2WEB_PORT",
        "7860",
        "Port the web app listens on. When unset, Gradio's GRADIO_SERVER_PORT is used if "
        "that is set (hosting platforms set it).",
        fallback="GRADIO_SERVER_PORT",
    ),
    Setting(
        "SAM2WEB_CONCURRENCY",
        "1",
        "How many units of model work (one click, one tracked frame) run at once across all "
        "users. 1 suits a CPU, where one unit already uses every core; a CUDA GPU may take "
        "more; an Apple GPU (MPS) refuses more than 1.",
    ),
    Setting(
        "SAM2WEB_SCHEDULER",
        "fair",
        "How users share the model. fair: clicks first, then one tracked frame per tracking "
        "user in turn, so a click waits at most for the frame in progress. serial: model work "
        "runs in arrival order and a tracking run holds the model until its last frame (the "
        "behaviour of earlier versions, kept for comparison).",
    ),
    Setting(
        "SAM2WEB_SESSION_TTL_S",
        "7200",
        "A session idle for this many seconds is removed with its files. Closing or "
        "reloading its tab does not remove it: the page attaches to it again.",
    ),
    Setting(
        "SAM2WEB_SESSION_RAM_MB",
        "4096",
        "Most RAM, in megabytes, that the SAM 2 state of all kept sessions may hold together; "
        "beyond it the longest idle sessions give theirs back (rebuilt exactly from their "
        "history when used again). A session without an open tab always gives it back. "
        "0 = no cap.",
    ),
    Setting(
        "SAM2WEB_SWEEP_INTERVAL_S",
        "600",
        "Seconds between housekeeping passes of the web app, which remove session "
        "folders older than SAM2WEB_SESSION_TTL_S that belong to no open session "
        "(e.g. left behind by an earlier run).",
    ),
    Setting(
        "SAM2WEB_MAX_DISK_MB",
        "20480",
        "Most disk space, in megabytes, that all session folders together may use. An "
        "upload that would go beyond it is refused (checked before and while decoding); "
        "0 = no limit.",
    ),
    Setting(
        "SAM2WEB_RAY_ADDRESS",
        "",
        "Address (host:port of the head) of a Ray cluster that runs the web app's tracking "
        "runs; clicks stay in this process. Empty: track in this process. Needs "
        "requirements-ray.txt and sam2web's dependencies on the cluster's nodes.",
    ),
    Setting(
        "SAM2WEB_RAY_FALLBACK",
        "local",
        "What tracking does when SAM2WEB_RAY_ADDRESS is set but the cluster cannot be "
        "reached (or Ray is not installed). local: track in this process and say so; "
        "refuse: refuse the run in one sentence.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _raw(name: str, env: dict[str, str] | None = None) -> str:
    """A setting's text: its variable, else its fallback variable, else its default."""
    env = os.environ if env is None else env
    setting = _BY_NAME[name]
    for variable in (name, setting.fallback):
        value = env.get(variable, "").strip() if variable else ""
        if value:
            return value
    return setting.default


@dataclass(frozen=True)
class Settings:
    model: str
    checkpoint: Path | None
    cache_dir: Path
    offline: bool
    device: str
    resolution: int
    fast_resolution: int
    bf16: str
    bf16_probe: str
    compile: str
    data_dir: Path
    frame_format: str
    max_upload_mb: int
    max_frames: int
    max_duration_s: float
    max_pixels: int
    max_zip_ratio: float
    max_labels: int
    corrections: str
    full_memory_frames: int
    host: str
    port: int
    concurrency: int
    scheduler: str  # fair | serial
    session_ttl_s: float
    session_ram_mb: int  # 0: no cap
    sweep_interval_s: float
    max_disk_mb: int  # 0: no limit
    ray_address: str  # empty: track in this process
    ray_fallback: str  # local | refuse

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        def get(name: str) -> str:
            return _raw(name, env)

        def as_int(name: str, low: int = 0) -> int:
            value = get(name)
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {value!r}") from None
            if number < low:
                raise ValueError(f"{name} must be at least {low}, got {number}")
            return number

        def as_float(name: str) -> float:
            value = get(name)
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {value!r}") from None
            if number <= 0:
                raise ValueError(f"{name} must be positive, got {number}")
            return number

        def choice(name: str, options: tuple[str, ...]) -> str:
            value = get(name).lower()
            if value not in options:
                raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
            return value

        checkpoint = get("SAM2WEB_CHECKPOINT")
        data_dir = get("SAM2WEB_DATA_DIR") or str(Path(tempfile.gettempdir()) / "sam2web")

        def as_resolution(name: str) -> int:
            number = as_int(name, 64)
            if number % 32:
                raise ValueError(f"{name} must be a multiple of 32, got {number}")
            return number

        return cls(
            model=get("SAM2WEB_MODEL"),
            checkpoint=Path(checkpoint).expanduser() if checkpoint else None,
            cache_dir=Path(get("SAM2WEB_CACHE_DIR")).expanduser(),
            offline=get("SAM2WEB_OFFLINE") in ("1", "true", "yes"),
            device=choice("SAM2WEB_DEVICE", ("auto", "cpu", "cuda", "mps")),
            resolution=as_resolution("SAM2WEB_RESOLUTION"),
            fast_resolution=as_resolution("SAM2WEB_FAST_RESOLUTION"),
            bf16=choice("SAM2WEB_BF16", ("auto", "0", "1")),
            bf16_probe=choice("SAM2WEB_BF16_PROBE", ("auto", "yes", "no")),
            compile=choice("SAM2WEB_COMPILE", ("off", "on", "vos")),
            data_dir=Path(data_dir).expanduser(),
            frame_format=choice("SAM2WEB_FRAME_FORMAT", ("jpeg", "png")),
            max_upload_mb=as_int("SAM2WEB_MAX_UPLOAD_MB", 1),
            max_frames=as_int("SAM2WEB_MAX_FRAMES", 1),
            max_duration_s=as_float("SAM2WEB_MAX_DURATION_S"),
            max_pixels=as_int("SAM2WEB_MAX_PIXELS", 1),
            max_zip_ratio=as_float("SAM2WEB_MAX_ZIP_RATIO"),
            max_labels=as_int("SAM2WEB_MAX_LABELS", 1),
            corrections=choice("SAM2WEB_CORRECTIONS", ("keep", "upstream")),
            full_memory_frames=as_int("SAM2WEB_FULL_MEMORY_FRAMES", 0),
            host=get("SAM2WEB_HOST"),
            port=as_int("SAM2WEB_PORT", 1),
            concurrency=as_int("SAM2WEB_CONCURRENCY", 1),
            scheduler=choice("SAM2WEB_SCHEDULER", ("fair", "serial")),
            session_ttl_s=as_float("SAM2WEB_SESSION_TTL_S"),
            session_ram_mb=as_int("SAM2WEB_SESSION_RAM_MB", 0),
            sweep_interval_s=as_float("SAM2WEB_SWEEP_INTERVAL_S"),
            max_disk_mb=as_int("SAM2WEB_MAX_DISK_MB", 0),
            ray_address=get("SAM2WEB_RAY_ADDRESS"),
            ray_fallback=choice("SAM2WEB_RAY_FALLBACK", ("local", "refuse")),
        )


def setting_names() -> list[str]:
    return [s.name for s in SETTINGS]


assert len(fields(Settings)) == len(SETTINGS), "every Setting needs a Settings field"
