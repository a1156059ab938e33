"""The process-wide engine: settings, the shared model cache and per-session workspaces.

One :class:`Engine` serves every user of a server (or one notebook). Each user gets a
:class:`Workspace` — a folder named by the server (a random hex id, never anything the
user typed) holding the decoded frames, the mask store and exports — and a
:class:`~sam2web.tracking.tracker.TrackingSession` on a model shared read-only with everyone using
the same configuration. The model work of every session on one device runs through that
device's :class:`~sam2web.tracking.scheduler.Scheduler` (``engine.schedulers``: made on first use,
closed by :meth:`Engine.close`), in small units, so no session holds the model for long.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from ..compute.zerogpu import TrackingJob, zerogpu_enabled
from ..errors import CheckpointError, StorageFullError
from ..media.folder import FrameFolder
from ..media.ingest import ingest
from ..media.limits import MediaLimits
from ..settings import Settings
from ..tracking import accel
from ..tracking.accel import Quality
from ..tracking.checkpoints import checkpoint_identity, get_spec, resolve_checkpoint
from ..tracking.model import (
    ModelCache,
    autocast_context,
    autocast_dtype,
    choose_device,
    torch_device_type,
)
from ..tracking.scheduler import Scheduler, SchedulerClosed, Snapshot, UnitKind
from ..tracking.tracker import TrackingSession
from ..types import Progress, VideoInfo
from .project import ProjectModel
from .quality import QUALITIES

log = logging.getLogger(__name__)


_WORKSPACE_ID_CHARS = set("0123456789abcdef")


@dataclass
class Workspace:
    """A server-made folder for one user session."""

    id: str
    root: Path
    created: float = field(default_factory=time.time)
    removed: bool = False

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    @property
    def exports_dir(self) -> Path:
        if self.removed:  # never re-create a removed session's folder
            raise FileNotFoundError(f"workspace {self.id} was removed")
        path = self.root / "exports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove(self) -> None:
        self.removed = True
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class CheckpointStatus:
    ready: bool
    model_label: str
    message: str  # one sentence for the page
    path: Path | None = None


def check_concurrency(device: str, concurrency: int) -> None:
    """Refuse SAM2WEB_CONCURRENCY above 1 for an Apple GPU in one sentence: MPS runs model
    work from one thread only (its command queue is not made for concurrent callers)."""
    if device.startswith("mps") and concurrency > 1:
        raise CheckpointError(
            f"SAM2WEB_CONCURRENCY is {concurrency}, but on an Apple GPU (MPS) model work runs "
            "one unit at a time; set SAM2WEB_CONCURRENCY=1."
        )


def model_thread_key(device) -> str:
    """The scheduler key of ``device``, as a predictor on it names its own device
    (``mps`` -> ``mps:0``, ``cuda`` -> ``cuda:0``)."""
    import torch

    dev = torch.device(device)
    return str(dev) if dev.index is not None or dev.type == "cpu" else f"{dev.type}:0"


class DeviceSchedulers:
    """One :class:`~sam2web.tracking.scheduler.Scheduler` per device, shared by every session of an
    engine: made on first use with SAM2WEB_CONCURRENCY workers and the SAM2WEB_SCHEDULER
    policy, all closed by :meth:`close`. Thread-safe."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._by_device: dict[str, Scheduler] = {}
        self._closed = False

    def get(self, device: str) -> Scheduler:
        """The scheduler of ``device`` (e.g. ``cpu``, ``cuda:0``); raises SchedulerClosed
        after :meth:`close`."""
        with self._lock:
            if self._closed:
                raise SchedulerClosed()
            scheduler = self._by_device.get(device)
            if scheduler is None:
                check_concurrency(device, self.settings.concurrency)
                scheduler = self._by_device[device] = Scheduler(
                    self.settings.concurrency, self.settings.scheduler, name=f"model-{device}"
                )
            return scheduler

    def standing(self, owner: Hashable, device: str) -> Snapshot | None:
        """Where ``owner`` stands with the model of ``device`` (None before any model work
        ran there)."""
        with self._lock:
            scheduler = self._by_device.get(device)
        return None if scheduler is None else scheduler.snapshot(owner)

    def cancel_owner(self, owner: Hashable) -> None:
        """Drop every queued unit of ``owner`` and close its iterations, on every device."""
        with self._lock:
            schedulers = list(self._by_device.values())
        for scheduler in schedulers:
            scheduler.cancel_owner(owner)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop every scheduler (queued work is dropped; running units finish) and refuse
        model work from now on; True when every model thread stopped within ``timeout``."""
        with self._lock:
            self._closed = True
            schedulers, self._by_device = list(self._by_device.values()), {}
        deadline = time.monotonic() + timeout
        stopped = [s.close(max(0.0, deadline - time.monotonic())) for s in schedulers]
        return all(stopped)


class Engine:
    def __init__(self, settings: Settings | None = None, gpu_jobs: bool | None = None):
        self.settings = settings or Settings.from_env()
        self.models = ModelCache()
        # On ZeroGPU, propagation runs as a job on a lent GPU (see sam2web.compute.zerogpu) and
        # clicks run in this process on the CPU.
        self.gpu_jobs = zerogpu_enabled() if gpu_jobs is None else gpu_jobs
        self._ckpt_lock = threading.Lock()
        self._ckpt_paths: dict[str, Path] = {}
        self.schedulers = DeviceSchedulers(self.settings)

    def __deepcopy__(self, memo):
        return self  # process-wide: models and locks are shared, never copied

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the model schedulers (see :meth:`DeviceSchedulers.close`)."""
        return self.schedulers.close(timeout)

    # ------------------------------------------------------------------ workspaces
    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def create_workspace(self) -> Workspace:
        root_dir = self.data_dir
        root_dir.mkdir(parents=True, exist_ok=True)
        ws_id = uuid.uuid4().hex
        root = root_dir / ws_id
        root.mkdir(mode=0o700)
        return Workspace(ws_id, root)

    def workspace_path(self, ws_id: str) -> Path:
        """The folder of a server-issued workspace id; anything else is refused."""
        if len(ws_id) != 32 or not set(ws_id) <= _WORKSPACE_ID_CHARS:
            raise ValueError("not a workspace id")
        return self.data_dir / ws_id

    @property
    def limits(self) -> MediaLimits:
        return MediaLimits.from_settings(self.settings)

    def open_video(
        self,
        ws: Workspace,
        upload: Path,
        source_name: str | None = None,
        fps: float | None = None,
        progress: Progress | None = None,
        channel: int | str | None = None,
        axis: str | None = None,
        frame_step: int = 1,
    ) -> VideoInfo:
        """Decode an upload into the workspace's frame folder (replacing any earlier one);
        ``channel``, ``axis`` and ``frame_step`` as for :func:`sam2web.media.ingest.ingest`.

        Refused with StorageFullError when the session folders and the upload together
        would go beyond SAM2WEB_MAX_DISK_MB, or when the decoded frames do."""
        shutil.rmtree(ws.frames_dir, ignore_errors=True)
        shutil.rmtree(ws.masks_dir, ignore_errors=True)
        budget = self.disk_budget(Path(upload))
        return ingest(
            upload,
            ws.frames_dir,
            limits=self.limits,
            frame_format=self.settings.frame_format,
            source_name=source_name,
            fps=fps,
            progress=progress,
            max_output_bytes=budget,
            channel=channel,
            axis=axis,
            frame_step=frame_step,
        )

    def disk_budget(self, upload: Path) -> int | None:
        """Bytes the decoded frames of ``upload`` may take (None: no limit); raises
        StorageFullError when the session folders plus the upload file are already over
        SAM2WEB_MAX_DISK_MB.

        Uploads decoding at the same moment each see the space left when they started, so
        together they may go beyond the limit by up to one upload's frames.
        """
        if self.settings.max_disk_mb <= 0:
            return None
        limit = self.settings.max_disk_mb * 1024 * 1024
        try:
            upload_bytes = upload.stat().st_size
        except OSError:
            upload_bytes = 0  # unreadable: ingest says so in one sentence
        used = self.sessions_disk_bytes()
        if used + upload_bytes > limit:
            log.warning("refusing an upload: session folders use %d of %d bytes", used, limit)
            raise StorageFullError()
        return limit - used

    def sessions_disk_bytes(self) -> int:
        """Bytes of every file under the sessions folder (SAM2WEB_DATA_DIR)."""
        total = 0
        for dirpath, _, filenames in os.walk(self.data_dir):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue  # removed while walking
        return total

    # ------------------------------------------------------------------ model
    def explicit_checkpoint(self, model_key: str) -> Path | None:
        """SAM2WEB_CHECKPOINT applies to SAM2WEB_MODEL only; other sizes use the cache or
        a download."""
        if get_spec(model_key).key == get_spec(self.settings.model).key:
            return self.settings.checkpoint
        return None

    def checkpoint_status(self, model_key: str | None = None) -> CheckpointStatus:
        """Whether a checkpoint is at hand without downloading anything."""
        spec = get_spec(model_key or self.settings.model)
        explicit = self.explicit_checkpoint(spec.key)
        try:
            path = resolve_checkpoint(
                spec, checkpoint=explicit, cache_dir=self.settings.cache_dir, offline=True
            )
        except CheckpointError as err:
            if self.settings.offline or explicit:
                return CheckpointStatus(False, spec.label, err.message)
            return CheckpointStatus(
                False,
                spec.label,
                f"{spec.label} will be downloaded ({spec.size_mb} MB) when tracking starts.",
            )
        return CheckpointStatus(True, spec.label, f"{spec.label} is ready.", path)

    @property
    def device(self):
        """Where this process runs the model (the CPU for clicks on ZeroGPU)."""
        return "cpu" if self.gpu_jobs else choose_device(self.settings.device)

    @property
    def tracking_device(self):
        """Where tracking runs, which decides the qualities: the lent GPU on ZeroGPU (whose
        capability is known without initialising CUDA here), else :attr:`device`."""
        return "cuda" if self.gpu_jobs else self.device

    def _capability(self) -> tuple[int, int] | None:
        return accel.ZEROGPU_CAPABILITY if self.gpu_jobs else None

    def quality(self, key: str = "full") -> Quality:
        """What a quality key means here (see :mod:`sam2web.tracking.accel`), offered or not."""
        if key not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}, got {key!r}")
        return accel.quality(key, self.tracking_device, self.settings, self._capability())

    def qualities(self) -> list[Quality]:
        """The qualities this server offers, best first, decided from the tracking device.
        The first call may run the short bfloat16 probe (once per process)."""
        return accel.qualities(self.tracking_device, self.settings, self._capability())

    def default_quality(self) -> str:
        return accel.default_quality(self.tracking_device, self.settings, self._capability())

    def resolution(self, quality: str = "full") -> int:
        """Processing resolution of a quality: ``full`` and ``full-bf16`` are
        SAM2WEB_RESOLUTION (SAM2's native 1024 px by default), ``fast`` is
        SAM2WEB_FAST_RESOLUTION."""
        return self.quality(quality).resolution

    def predictor(
        self,
        model_key: str | None = None,
        progress: Progress | None = None,
        resolution: int | None = None,
    ):
        spec = get_spec(model_key or self.settings.model)
        with self._ckpt_lock:
            path = self._ckpt_paths.get(spec.key)
            if path is None or not path.exists():
                path = resolve_checkpoint(
                    spec,
                    checkpoint=self.explicit_checkpoint(spec.key),
                    cache_dir=self.settings.cache_dir,
                    offline=self.settings.offline,
                    progress=progress,
                )
                self._ckpt_paths[spec.key] = path
        device = self.device
        size = resolution or self.settings.resolution
        return self.models.get(
            spec,
            path,
            device,
            size,
            corrections=self.settings.corrections,
            # Compiling takes minutes; only the full-resolution model is worth it.
            compile=self.settings.compile if size == self.settings.resolution else "off",
        )

    def checkpoint_path(self, model_key: str | None = None) -> Path | None:
        """The checkpoint file :meth:`predictor` resolved for this model, or None when the
        model has not been loaded yet. Reads only; never resolves or downloads."""
        spec = get_spec(model_key or self.settings.model)
        with self._ckpt_lock:
            return self._ckpt_paths.get(spec.key)

    def start_session(
        self,
        ws: Workspace,
        model_key: str | None = None,
        progress: Progress | None = None,
        resolution: int | None = None,
        masks_dir: Path | None = None,
        quality: str | None = None,
    ) -> TrackingSession:
        """A tracking session on the workspace's frames at ``quality`` (its resolution and
        precision; ``resolution`` alone keeps SAM2WEB_BF16's precision); its masks go to
        ``masks_dir`` (default: the workspace's, emptied first)."""
        if quality is not None:
            resolution = self.resolution(quality)
        device = self.device
        if torch_device_type(device) == "mps":
            # On MPS every device operation, the build and the session's first tensors
            # included, runs on the one model thread.
            scheduler = self.schedulers.get(model_thread_key(device))
            return scheduler.run(
                lambda: _start(self, ws, model_key, progress, resolution, masks_dir, quality),
                ("start", ws.id),
                UnitKind.INTERACTIVE,
            )
        return _start(self, ws, model_key, progress, resolution, masks_dir, quality)

    def tracking_job(
        self,
        ws: Workspace,
        tracking: TrackingSession,
        model_key: str | None,
        direction: str,
        start_frame: int | None,
        end_frame: int | None,
        quality: str | None = None,
    ) -> TrackingJob:
        """A self-contained propagation job for ``tracking``, which runs the model
        ``model_key`` at the session's ``quality`` (see :mod:`sam2web.compute.zerogpu`)."""
        predictor = tracking.predictor
        spec = get_spec(model_key or self.settings.model)
        ckpt = self.checkpoint_path(spec.key)
        device = "cuda" if zerogpu_enabled() else str(choose_device(self.settings.device))
        if start_frame is None:  # as TrackingSession.propagate: the earliest prompted frame
            start_frame = min(tracking.prompted_frames(), default=0)
        return TrackingJob(
            frames_dir=str(ws.frames_dir),
            masks_dir=str(tracking.store.root),
            control_dir=str(ws.root),
            info=tracking.info,
            model_key=spec.key,
            checkpoint=None if ckpt is None else str(ckpt),
            resolution=int(predictor.image_size),
            corrections=self.settings.corrections,
            device=device,
            bf16=self.settings.bf16,
            full_memory_frames=self.settings.full_memory_frames,
            objects=tuple((o.obj_id, o.name, tuple(o.color)) for o in tracking.objects.values()),
            history=tuple(tracking.history),
            direction=direction,
            start_frame=start_frame,
            end_frame=end_frame,
            quality=quality,
        )

    @property
    def approximate(self) -> bool:
        """True when the processing resolution is not SAM2's native 1024 px."""
        return self.settings.resolution != 1024

    # ------------------------------------------------------------------ housekeeping
    def sweep(self, max_age_s: float | None = None, keep: set[str] | None = None) -> int:
        """Remove workspace folders older than ``max_age_s`` (default: the session TTL)
        that are not in ``keep``. Returns how many were removed."""
        max_age = self.settings.session_ttl_s if max_age_s is None else max_age_s
        keep = keep or set()
        if not self.data_dir.is_dir():
            return 0
        removed = 0
        now = time.time()
        for child in self.data_dir.iterdir():
            if child.name in keep or not child.is_dir():
                continue
            if len(child.name) != 32 or not set(child.name) <= _WORKSPACE_ID_CHARS:
                continue  # not ours
            try:
                age = now - child.stat().st_mtime
            except OSError:
                continue
            if age > max_age:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        return removed


class Housekeeping:
    """A background thread that removes stale session folders while a server runs.

    Every ``interval_s`` seconds it calls :meth:`Engine.sweep`, keeping the workspaces that
    ``live_ids()`` names (the open sessions'), so folders orphaned by an earlier run or a
    lost session go away without a restart.
    """

    def __init__(self, engine: Engine, interval_s: float, live_ids: Callable[[], set[str]]):
        self.engine = engine
        self.interval_s = float(interval_s)
        self.live_ids = live_ids
        self.passes = 0  # completed sweeps (for tests and logs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sam2web-housekeeping", daemon=True)

    def start(self) -> Housekeeping:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> int:
        """One sweep; returns how many folders were removed."""
        removed = self.engine.sweep(keep=self.live_ids())
        self.passes += 1
        if removed:
            log.info("housekeeping removed %d stale session folder(s)", removed)
        return removed

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # keep sweeping later; one bad pass must not end the thread
                log.exception("housekeeping pass failed")


def _start(
    self: Engine, ws, model_key, progress, resolution, masks_dir, quality
) -> TrackingSession:
    """The body of :meth:`Engine.start_session`."""
    predictor = self.predictor(model_key, progress, resolution)
    folder = FrameFolder(ws.frames_dir)
    if masks_dir is None:
        masks_dir = ws.masks_dir
        shutil.rmtree(masks_dir, ignore_errors=True)
    device, precision = predictor.device, click_precision(self, quality)
    return TrackingSession(
        predictor,
        folder.frame_paths(),
        folder.info,
        masks_dir,
        full_memory_frames=self.settings.full_memory_frames,
        autocast=lambda: autocast_context(device, self.settings.bf16, quality=precision),
    )


def click_precision(engine: Engine, quality: str | None) -> str | None:
    """The quality whose precision clicks run at in this process: ``quality`` where this
    process's device offers it; on ZeroGPU, where clicks run on the CPU and tracking on the
    GPU, float32 (``full``) for a reduced precision the CPU does not offer."""
    if not engine.gpu_jobs or quality in (None, "full", "fast"):
        return quality
    offered = accel.available_qualities(engine.device, engine.settings)
    return quality if quality in offered else "full"


def model_record(
    engine: Engine, model_key: str | None, quality: str, device: str | None = None
) -> ProjectModel:
    """How a session's model is configured and runs at ``quality``, as a project
    records it. ``device``: where its predictor runs (None: where a new one would)."""
    resolution = engine.resolution(quality)
    import torch

    spec = get_spec(model_key or engine.settings.model)
    path = engine.checkpoint_path(spec.key) or engine.checkpoint_status(spec.key).path
    identity = checkpoint_identity(path) if path is not None and path.is_file() else None
    bf16 = None
    try:
        dev = torch.device(device) if device is not None else choose_device(engine.settings.device)
        device = dev.type
        bf16 = autocast_dtype(dev, engine.settings.bf16, quality=quality) == "bfloat16"
    except CheckpointError:  # the configured device is not available here
        device = None
    return ProjectModel(
        spec.key, spec.label, identity, resolution, engine.settings.corrections, bf16, device
    )
