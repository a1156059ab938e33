"""What one user does in the app, without any web framework.

:class:`UserSession` owns a user's workspace (frames, masks, exports), their
:class:`~sam2web.session.TrackingSession`, the active object and display options. Every
method takes and returns plain values (ints, floats, numpy images, paths), so the Gradio
layer in ``ui.py`` only wires widgets to these methods, and tests drive them directly.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .analysis import (
    Calibration,
    confidence_events,
    plot_confidence,
    plot_trajectories,
    summarize,
    write_calibrated_csv,
    write_coco_rle,
    write_npz,
    write_summary_csv,
)
from .engine import QUALITIES, Engine, Workspace
from .errors import PromptError, SessionClosedError, TrackingError
from .exports import measurements, write_csv, write_masks_zip
from .media import FrameFolder
from .model import get_spec
from .project import PROJECT_FILENAME, apply_project, file_sha256, replay_step
from .project import load_project as read_project
from .project import save_project as write_project
from .render import (
    LiveOverlayVideo,
    OverlayStyle,
    draw_overlay,
    draw_prompts,
    gallery_indices,
    recent_centroids,
    render_overlay_video,
)
from .session import PropagationStep, TrackingSession
from .types import Box, Click, FrameResult, TrackedObject, VideoInfo
from .zerogpu import CANCEL_FILE, PROGRESS_FILE, read_progress, run_tracking_job

log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]

PROMPT_MODES = ("positive", "negative", "box")
OVERLAY_VIDEO = "sam2web_overlay.mp4"

# Analysis outputs of :meth:`UserSession.export_science`, by key; fixed names in the
# session's own exports folder.
SCIENCE_FILES = {
    "summary": "sam2web_summary.csv",
    "calibrated": "sam2web_tracks_calibrated.csv",
    "trajectories": "sam2web_trajectories.png",
    "confidence": "sam2web_confidence.png",
    "npz": "sam2web_masks.npz",
    "coco": "sam2web_masks_coco.json",
}


@dataclass
class Review:
    summaries: list  # analysis.ObjectSummary, one per object
    events: list[tuple[int, int, str, str]]  # (frame, object id, object name, lost|uncertain)


@dataclass
class Exports:
    video: Path | None = None
    csv: Path | None = None
    masks: Path | None = None

    def files(self) -> list[Path]:
        return [p for p in (self.video, self.csv, self.masks) if p is not None]


@dataclass
class QualityAgreement:
    """Full quality against the fast preview on the first frames of the user's clip."""

    first_frame: int
    last_frame: int
    full_resolution: int
    fast_resolution: int
    iou: dict[int, tuple[float, float]]  # object id -> (mean, min) IoU over the frames
    names: dict[int, str]
    full_s_per_frame: float
    fast_s_per_frame: float

    @property
    def speedup(self) -> float:
        return self.full_s_per_frame / self.fast_s_per_frame if self.fast_s_per_frame else 0.0

    @property
    def mean_iou(self) -> float:
        return float(np.mean([m for m, _ in self.iou.values()])) if self.iou else 1.0

    @property
    def min_iou(self) -> float:
        return float(min(m for _, m in self.iou.values())) if self.iou else 1.0

    def sentence(self) -> str:
        frames = self.last_frame - self.first_frame + 1
        return (
            f"On frames {self.first_frame}–{self.last_frame} ({frames}) the fast preview "
            f"({self.fast_resolution} px) agrees with full quality "
            f"({self.full_resolution} px) at a mask IoU of {self.mean_iou:.3f} on average "
            f"(lowest {self.min_iou:.3f}), and tracked {self.speedup:.1f}× faster "
            f"({self.fast_s_per_frame:.2f} s against {self.full_s_per_frame:.2f} s per "
            "frame)."
        )


def mask_iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Intersection over union of two boolean masks; two empty (or missing) masks agree."""
    a_any = a is not None and bool(a.any())
    b_any = b is not None and bool(b.any())
    if not a_any and not b_any:
        return 1.0
    if not a_any or not b_any:
        return 0.0
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def prompt_steps(history: list[dict]) -> list[dict]:
    """The steps of a tracking history that define objects and prompts (everything but
    the propagations), in order."""
    return [dict(step) for step in history if step["op"] != "propagate"]


def _per_frame(times: list[float]) -> float:
    """Seconds per frame: the median after the first (prompted, already encoded) frame."""
    rest = times[1:] or times
    return float(np.median(rest)) if rest else 0.0


@dataclass
class TrackingRun:
    """Summary of the last propagation."""

    frames: int = 0
    seconds: float = 0.0
    cancelled: bool = False


def _writes_files(method):
    """Mark a UserSession method that writes into the session's folder: it refuses to start
    once the session is closed, and a close() while it runs removes the folder only after it
    returned (so nothing is ever written into, or re-created in, a removed folder)."""

    @functools.wraps(method)
    def wrapper(self: UserSession, *args, **kwargs):
        with self._writing():
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class UserSession:
    engine: Engine
    workspace: Workspace | None = None
    folder: FrameFolder | None = None
    tracking: TrackingSession | None = None
    active_object: int | None = None
    style: OverlayStyle = field(default_factory=OverlayStyle)
    pending_corner: tuple[int, float, float] | None = None  # (frame, x, y) of a box's 1st click
    exports: Exports = field(default_factory=Exports)
    last_run: TrackingRun = field(default_factory=TrackingRun)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    calibration: Calibration = field(default_factory=Calibration)
    model_key: str | None = None  # None: the server's SAM2WEB_MODEL
    quality: str = "full"  # "full" (SAM2WEB_RESOLUTION) or "fast" (SAM2WEB_FAST_RESOLUTION)
    last_used: float = field(default_factory=time.time)
    closed: bool = False
    source_sha256: str | None = None  # SHA-256 of the uploaded file's bytes
    # The overlay video written beside the last propagation, and the length of the tracking
    # history when that run ended (any later action makes the video stale).
    live_video: LiveOverlayVideo | None = field(default=None, repr=False)
    live_video_history: int = -1
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _writers: int = 0  # methods writing into the folder right now (see _writes_files)
    _busy: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __deepcopy__(self, memo):
        # A user session is owned, never duplicated: Gradio deep-copies the value a state
        # factory returns, and a copy would share the workspace folder anyway.
        return self

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Hold this session for one long action: an upload, tracking with its exports, an
        export, loading a project. A second long action of the same user while one runs is
        refused with one sentence, so two runs never interleave their results. A session
        closed meanwhile loses its files when the action ends (see :meth:`close`)."""
        if not self._busy.acquire(blocking=False):
            raise TrackingError(
                "This video is busy with another action (tracking, exporting "
                "or loading); wait for it to finish or press Cancel first."
            )
        try:
            yield
        finally:
            try:
                with self._guard:
                    drop = self.closed and self._writers == 0
                if drop:
                    self._drop_workspace()
            finally:
                self._busy.release()

    # ------------------------------------------------------------------ media
    @property
    def info(self) -> VideoInfo:
        if self.folder is None:
            raise PromptError("Upload a video or image sequence first.")
        return self.folder.info

    @_writes_files
    def upload(
        self,
        path: Path,
        source_name: str | None = None,
        fps: float | None = None,
        progress: Progress | None = None,
    ) -> VideoInfo:
        """Decode an upload into a fresh workspace; the previous video, if any, is dropped
        only once the new one decoded."""
        self.touch()
        self._require_not_tracking()
        path = Path(path)
        sha256 = None
        with contextlib.suppress(OSError):  # unreadable: ingest says so in one sentence
            if path.is_file() and path.stat().st_size <= self.engine.limits.max_bytes:
                sha256 = file_sha256(path)
        ws = self.engine.create_workspace()
        try:
            self.engine.open_video(ws, path, source_name=source_name, fps=fps, progress=progress)
        except BaseException:
            ws.remove()
            raise
        self._drop_workspace()
        self.workspace = ws
        self.source_sha256 = sha256
        self.folder = FrameFolder(ws.frames_dir)
        return self.folder.info

    def frame_rgb(self, frame_idx: int) -> np.ndarray:
        self._check_frame(frame_idx)
        assert self.folder is not None
        return self.folder.read_rgb(int(frame_idx))

    # ------------------------------------------------------------------ model/session
    def ensure_tracking(self, progress: Progress | None = None) -> TrackingSession:
        if self.tracking is None:
            if self.workspace is None:
                raise PromptError("Upload a video or image sequence first.")
            self.tracking = self.engine.start_session(
                self.workspace, self.model_key, progress=progress, resolution=self.resolution
            )
        return self.tracking

    @property
    def resolution(self) -> int:
        """Processing resolution (pixels) of this session's quality."""
        return self.engine.resolution(self.quality)

    @_writes_files
    def set_quality(
        self, quality: str, progress: Progress | None = None, replay: bool = True
    ) -> bool:
        """Process at another quality (see :data:`~sam2web.engine.QUALITIES`). Objects and
        every click are kept: they are given again to the model at the new resolution
        (tracked frames are not; track again). With ``replay=False`` they are dropped
        instead. Returns True when clicks were replayed."""
        if quality not in QUALITIES:
            raise PromptError("Choose full quality or fast preview.")
        self._require_not_tracking()
        if quality == self.quality:
            return False
        old = self.tracking
        self.quality = quality
        if old is None or self.engine.resolution(quality) == old.predictor.image_size:
            return False
        steps = prompt_steps(old.history) if replay else []
        colors = {o.obj_id: o.color for o in old.objects.values()}
        self._discard_live_video()
        self.tracking = None
        self.exports = Exports()
        self.pending_corner = None
        if not steps:
            self.active_object = None
            return False
        tracking = self.ensure_tracking()
        try:
            for done, step in enumerate(steps, start=1):
                replay_step(tracking, step)
                if progress is not None:
                    progress(done, len(steps))
        except BaseException:
            tracking.reset()
            self.active_object = None
            raise
        for obj in tracking.objects.values():
            obj.color = colors.get(obj.obj_id, obj.color)
        if self.active_object not in tracking.objects:
            self.active_object = next(reversed(tracking.objects), None)
        return bool(steps)

    @property
    def model(self) -> str:
        return self.model_key or self.engine.settings.model

    def set_model(self, model_key: str) -> bool:
        """Use another model size for this session. Objects and clicks belong to a model's
        tracking state, so they are cleared; returns True when something was cleared."""
        spec = get_spec(model_key)
        self._require_not_tracking()
        if spec.key == self.model:
            return False
        cleared = bool(self.tracking is not None and self.tracking.objects)
        self._discard_live_video()
        if self.tracking is not None:
            self.tracking.store.clear()
            self.tracking = None
        self.model_key = spec.key
        self.active_object = None
        self.pending_corner = None
        self.exports = Exports()
        return cleared

    # ------------------------------------------------------------------ objects
    @property
    def objects(self) -> list[TrackedObject]:
        return [] if self.tracking is None else list(self.tracking.objects.values())

    def add_object(self, name: str | None = None) -> TrackedObject:
        self.touch()
        tracking = self.ensure_tracking()
        obj = tracking.add_object(_clean_name(name))
        self.active_object = obj.obj_id
        return obj

    def select_object(self, obj_id: int) -> TrackedObject:
        obj = self._object(obj_id)
        self.active_object = obj.obj_id
        self.pending_corner = None
        return obj

    def rename_object(self, obj_id: int, name: str) -> TrackedObject:
        self._object(obj_id)
        assert self.tracking is not None
        return self.tracking.rename_object(int(obj_id), _clean_name(name))

    def remove_object(self, obj_id: int) -> None:
        self._object(obj_id)
        assert self.tracking is not None
        self.tracking.remove_object(int(obj_id))
        if self.active_object == obj_id:
            remaining = self.objects
            self.active_object = remaining[-1].obj_id if remaining else None
        self.exports = Exports()

    # ------------------------------------------------------------------ prompts
    def click(
        self, frame_idx: int, x: float, y: float, mode: str = "positive", obj_id: int | None = None
    ) -> str:
        """A click on the frame image. Returns a short status sentence.

        In box mode the first click marks a corner and the second completes the box.
        """
        self.touch()
        frame_idx = self._check_frame(frame_idx)
        x, y = _position("click", x, y)
        if mode not in PROMPT_MODES:
            raise PromptError("Choose positive, negative or box as the click mode.")
        if obj_id is None:
            if self.active_object is None:
                self.add_object()
            obj_id = self.active_object
        obj = self._object(obj_id)
        if obj.obj_id != self.active_object:
            self.active_object = obj.obj_id  # the object clicked on becomes the active one
            self.pending_corner = None
        tracking = self.ensure_tracking()
        if mode == "box":
            if self.pending_corner is None or self.pending_corner[0] != frame_idx:
                tracking._check_point(x, y)
                self.pending_corner = (int(frame_idx), float(x), float(y))
                return f"First corner of the box for {obj.name} set; click the opposite corner."
            _, x0, y0 = self.pending_corner
            self.pending_corner = None
            tracking.set_box(int(frame_idx), obj.obj_id, Box(x0, y0, float(x), float(y)))
            return f"Box set for {obj.name} on frame {frame_idx}."
        self.pending_corner = None
        tracking.add_click(
            int(frame_idx), obj.obj_id, Click(float(x), float(y), mode == "positive")
        )
        kind = "Positive" if mode == "positive" else "Negative"
        return f"{kind} click added to {obj.name} at x={x:.0f}, y={y:.0f}."

    def add_box(
        self, frame_idx: int, x0: float, y0: float, x1: float, y1: float, obj_id: int | None = None
    ) -> None:
        self.touch()
        frame_idx = self._check_frame(frame_idx)
        x0, y0, x1, y1 = _position("box", x0, y0, x1, y1)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.ensure_tracking().set_box(frame_idx, obj.obj_id, Box(x0, y0, x1, y1))

    def undo(self, frame_idx: int, obj_id: int | None = None) -> None:
        frame_idx = self._check_frame(frame_idx)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.pending_corner = None
        assert self.tracking is not None
        self.tracking.undo(frame_idx, obj.obj_id)

    def clear_frame(self, frame_idx: int, obj_id: int | None = None) -> None:
        frame_idx = self._check_frame(frame_idx)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.pending_corner = None
        assert self.tracking is not None
        self.tracking.clear_frame(frame_idx, obj.obj_id)

    @_writes_files
    def reset(self) -> None:
        self.touch()
        self._discard_live_video()
        if self.tracking is not None:
            self.tracking.reset()
        self.active_object = None
        self.pending_corner = None
        self.exports = Exports()
        if self.workspace is not None:
            for p in self.workspace.exports_dir.iterdir():
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ display
    @property
    def display_scale(self) -> float:
        """Factor from original-frame pixels to the pixels of the image shown in the page:
        small videos are enlarged (so they can be clicked precisely), large ones reduced
        (so each update stays small). See :func:`display_scale`."""
        info = self.info
        return display_scale(info.width, info.height)

    def to_original(self, x_display: float, y_display: float) -> tuple[float, float]:
        """A position in the displayed image -> (x, y) pixels of the original frame."""
        k = self.display_scale
        info = self.info
        return (
            min(max(x_display / k, 0.0), float(info.width)),
            min(max(y_display / k, 0.0), float(info.height)),
        )

    def render_frame(
        self, frame_idx: int, show_prompts: bool = True, scale: float = 1.0
    ) -> np.ndarray:
        """The frame with stored masks blended in and this frame's prompts drawn, resized by
        ``scale`` (masks are drawn at the original size, markers at the shown size)."""
        frame = self.frame_rgb(frame_idx)
        objects = self.tracking.objects if self.tracking is not None else {}
        if self.tracking is not None:
            result = self.tracking.store.read(int(frame_idx))
            if result is not None:
                masks = {k: v for k, v in result.masks.items() if k in objects}
                trails = None
                if self.style.trails > 0:
                    trails = recent_centroids(
                        self.tracking.store, int(frame_idx), self.style.trails, list(objects)
                    )
                frame = draw_overlay(frame, masks, objects, self.style, trails)
        if scale != 1.0:
            h, w = frame.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
            frame = cv2.resize(frame, size, interpolation=interp)
        if show_prompts and self.tracking is not None:
            for (f, oid), prompts in self.tracking.prompts.items():
                if f != frame_idx or oid not in objects:
                    continue
                box = None
                if prompts.box is not None:
                    b = prompts.box
                    box = (b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale)
                frame = draw_prompts(
                    frame,
                    [(c.x * scale, c.y * scale, c.positive) for c in prompts.clicks],
                    box,
                    objects[oid].color,
                )
            if self.pending_corner is not None and self.pending_corner[0] == frame_idx:
                _, x, y = self.pending_corner
                color = (
                    objects[self.active_object].color
                    if self.active_object in objects
                    else (255, 255, 255)
                )
                frame = draw_prompts(
                    frame, [], (x * scale - 2, y * scale - 2, x * scale + 2, y * scale + 2), color
                )
        return frame

    def view_frame(self, frame_idx: int) -> np.ndarray:
        """The frame as the page shows it (display-scaled, prompts drawn)."""
        self.touch()  # looking at frames is using the session
        return self.render_frame(frame_idx, show_prompts=True, scale=self.display_scale)

    def gallery(self, max_items: int = 24) -> list[tuple[np.ndarray, str]]:
        """Every N-th frame with its overlay, for a quick check of a whole run."""
        info = self.info
        k = min(1.0, 240 / max(info.width, info.height))
        return [
            (self.render_frame(i, show_prompts=False, scale=k), f"frame {i}")
            for i in gallery_indices(info.num_frames, max_items)
        ]

    # ------------------------------------------------------------------ tracking
    def propagate(
        self,
        direction: str = "forward",
        start_frame: int | None = None,
        end_frame: int | None = None,
    ) -> Iterator[PropagationStep]:
        """Track all objects; yields each frame's step. Cancel with :meth:`cancel`."""
        self.touch()
        tracking = self.ensure_tracking()
        self._require_not_tracking()  # before replacing the running one's cancel flag
        planned = tracking.planned_frames(direction, start_frame, end_frame)
        self.cancel_event = threading.Event()
        self.exports = Exports()
        self._discard_live_video()
        # The overlay video is rendered and encoded beside tracking (see LiveOverlayVideo).
        assert self.workspace is not None and self.folder is not None
        live = LiveOverlayVideo(
            self.folder.read_rgb,
            self.info.num_frames,
            tracking.store,
            tracking.objects,
            self.style,
            self.workspace.exports_dir / OVERLAY_VIDEO,
            self.info.fps,
            pending=planned,
        )
        self.live_video = live
        started = time.perf_counter()
        run = TrackingRun()
        self.last_run = run
        if self.engine.gpu_jobs:
            steps = self._propagate_in_job(tracking, direction, start_frame, end_frame)
        else:
            steps = tracking.propagate(direction, start_frame, end_frame, self.cancel_event)
        total = None
        try:
            for step in steps:
                live.frame_done(step.result.frame_idx)
                run.frames, total = step.done, step.total
                run.seconds = time.perf_counter() - started
                self.touch()
                yield step
        except BaseException:
            self._discard_live_video()
            raise
        finally:
            run.cancelled = self.cancel_event.is_set()
            log.info(
                "tracking %s after %d of %s frames in %.1f s",
                "cancelled" if run.cancelled else "ended",
                run.frames,
                "?" if total is None else total,
                time.perf_counter() - started,
            )
        self.live_video_history = len(tracking.history)

    def _propagate_in_job(
        self,
        tracking: TrackingSession,
        direction: str,
        start_frame: int | None,
        end_frame: int | None,
    ) -> Iterator[PropagationStep]:
        """Propagate as a :class:`~sam2web.zerogpu.TrackingJob` (ZeroGPU): the job runs in
        a worker thread here (and in a GPU process there), writing masks to this session's
        store; its progress file turns into steps, and Cancel into its cancel file.

        The job replays the session's history to rebuild SAM2's state, so tracked masks are
        those of an in-process run. This process's own SAM2 state does not see the job's
        frames: a later click on a tracked frame is previewed without that frame's earlier
        mask, while the next propagation (a job again) replays everything exactly."""
        assert self.workspace is not None
        control = self.workspace.root
        for name in (PROGRESS_FILE, CANCEL_FILE):
            (control / name).unlink(missing_ok=True)
        job = self.engine.tracking_job(
            self.workspace, tracking, self.model_key, direction, start_frame, end_frame
        )
        box: dict = {}

        def work() -> None:
            try:
                box["outcome"] = run_tracking_job(job)
            except BaseException as err:  # raised below, in the caller's thread
                box["error"] = err

        worker = threading.Thread(target=work, name="tracking-job", daemon=True)
        tracking.propagating = True
        worker.start()
        shown = 0
        try:
            while True:
                running = worker.is_alive()
                progress = read_progress(control)
                if progress is not None and progress[0] > shown:
                    shown, total, frame = progress
                    tracking.store.refresh()
                    result = tracking.store.read(frame) or FrameResult(frame, {}, {})
                    yield PropagationStep(result, shown, total)
                if not running:
                    break
                if self.cancel_event.is_set():
                    (control / CANCEL_FILE).touch()
                time.sleep(0.2)
        finally:
            if worker.is_alive():  # the caller stopped listening: stop the job too
                with contextlib.suppress(OSError):
                    (control / CANCEL_FILE).touch()
                worker.join()
            tracking.propagating = False
            tracking.store.refresh()
        if "error" in box:
            raise box["error"]
        tracking.history.append(box["outcome"].record)

    @_writes_files
    def compare_qualities(
        self, frames: int = 5, progress: Progress | None = None
    ) -> QualityAgreement:
        """Track the first ``frames`` frames (from the earliest clicked frame) at full
        quality and as a fast preview, with this session's objects and clicks, and measure
        how far the masks agree (IoU per object and frame) and how much faster the preview
        ran. Neither run touches the session's own results."""
        self.touch()
        tracking = self.ensure_tracking()
        self._require_not_tracking()
        if self.engine.resolution("fast") == self.engine.resolution("full"):
            raise PromptError(
                "Fast preview and full quality use the same resolution on this "
                "server, so there is nothing to compare."
            )
        if not 1 <= int(frames) <= 100:
            raise PromptError("Compare on 1 to 100 frames.")
        planned = tracking.planned_frames("forward")  # checks every object has clicks
        start = planned[0]
        end = min(start + int(frames) - 1, self.info.num_frames - 1)
        steps = prompt_steps(tracking.history)
        assert self.workspace is not None
        count = end - start + 1
        total = 2 * (len(steps) + count)
        done = 0
        masks: dict[str, dict[int, dict[int, np.ndarray]]] = {}
        seconds: dict[str, list[float]] = {}
        for quality in ("fast", "full"):
            folder = self.workspace.root / f"compare-{quality}"
            try:
                check = self.engine.start_session(
                    self.workspace,
                    self.model_key,
                    resolution=self.engine.resolution(quality),
                    masks_dir=folder,
                )
                for step in steps:
                    replay_step(check, step)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                masks[quality], seconds[quality] = {}, []
                last = time.perf_counter()
                for step in check.propagate("forward", start, end, self.cancel_event):
                    now = time.perf_counter()
                    seconds[quality].append(now - last)
                    last = now
                    masks[quality][step.result.frame_idx] = dict(step.result.masks)
                    done += 1
                    if progress is not None:
                        progress(done, total)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        if len(masks["full"]) < count or len(masks["fast"]) < count:
            raise TrackingError("The comparison was cancelled.")
        names = {o.obj_id: o.name for o in tracking.objects.values()}
        per_object = {}
        for obj_id in names:
            ious = [
                mask_iou(masks["full"][f].get(obj_id), masks["fast"][f].get(obj_id))
                for f in range(start, end + 1)
            ]
            per_object[obj_id] = (float(np.mean(ious)), float(np.min(ious)))
        return QualityAgreement(
            start,
            end,
            self.engine.resolution("full"),
            self.engine.resolution("fast"),
            per_object,
            names,
            _per_frame(seconds["full"]),
            _per_frame(seconds["fast"]),
        )

    def cancel(self) -> bool:
        """Ask a running propagation to stop after the current frame."""
        running = self.tracking is not None and self.tracking.propagating
        self.cancel_event.set()
        return running

    # ------------------------------------------------------------------ exports
    @_writes_files
    def export(self, video: bool = True, progress: Progress | None = None) -> Exports:
        """Write the overlay MP4, the per-frame CSV and the masks zip for what is tracked."""
        self.touch()
        tracking = self._tracked()
        self._require_not_tracking()
        assert self.workspace is not None and self.folder is not None
        out = self.workspace.exports_dir
        info = self.info
        objects = list(tracking.objects.values())
        exports = Exports()
        rows = measurements(tracking.store, objects, info)
        exports.csv = write_csv(rows, out / "sam2web_tracks.csv")
        exports.masks = write_masks_zip(tracking.store, objects, info, out / "sam2web_masks.zip")
        live, self.live_video = self.live_video, None
        if (
            video
            and live is not None
            and live.style == self.style
            and self.live_video_history == len(tracking.history)
        ):
            exports.video = live.finish(progress)  # rendered beside the last propagation
        elif video:
            if live is not None:
                live.abort()
            folder = self.folder
            frames = ((i, folder.read_rgb(i)) for i in range(info.num_frames))
            exports.video = render_overlay_video(
                frames,
                tracking.store,
                tracking.objects,
                self.style,
                out / OVERLAY_VIDEO,
                info.fps,
                progress=progress,
                total=info.num_frames,
            )
        elif live is not None:
            live.abort()
        self.exports = exports
        return exports

    def _discard_live_video(self) -> None:
        live, self.live_video = self.live_video, None
        if live is not None:
            live.abort()

    @_writes_files
    def export_science(self, calibration: Calibration | None = None) -> dict[str, Path]:
        """Write the analysis files (:data:`SCIENCE_FILES`): per-object summary CSV,
        calibrated per-frame CSV, trajectory and confidence plots (PNG), masks as NPZ and as
        COCO RLE JSON. Returns {key: path}."""
        self.touch()
        tracking = self._tracked()
        self._require_not_tracking()
        assert self.workspace is not None and self.folder is not None
        cal = calibration or Calibration()
        out = self.workspace.exports_dir
        files = {key: out / name for key, name in SCIENCE_FILES.items()}
        info = self.info
        objects = list(tracking.objects.values())
        rows = measurements(tracking.store, objects, info)
        write_summary_csv(summarize(rows, objects, cal), files["summary"])
        write_calibrated_csv(rows, cal, files["calibrated"])
        plot_trajectories(self.folder.read_rgb(0), rows, objects, files["trajectories"])
        plot_confidence(rows, objects, files["confidence"])
        write_npz(tracking.store, objects, info, files["npz"])
        write_coco_rle(tracking.store, objects, info, files["coco"])
        return files

    def review(self, uncertain_margin: float = 1.0) -> Review:
        """What the page shows after tracking: the per-object summary (calibrated) and the
        frames where an object is lost (score < 0) or uncertain (0 <= score < margin)."""
        tracking = self._tracked()
        objects = list(tracking.objects.values())
        rows = measurements(tracking.store, objects, self.info)
        names = {o.obj_id: o.name for o in objects}
        events = [
            (frame, obj_id, names.get(obj_id, str(obj_id)), kind)
            for frame, obj_id, kind in confidence_events(rows, 0.0, uncertain_margin)
        ]
        return Review(summarize(rows, objects, self.calibration), events)

    # ------------------------------------------------------------------ projects
    @_writes_files
    def save_project(self, calibration: Calibration | None = None) -> Path:
        """Write this session's project (video identity, model, calibration, objects and
        every action) to the exports folder as ``sam2web_project.json``."""
        self.touch()
        self._require_not_tracking()
        if self.workspace is None:
            raise PromptError("Upload a video or image sequence first.")
        return write_project(self, self.workspace.exports_dir / PROJECT_FILENAME, calibration)

    def load_project(self, path: Path, progress: Progress | None = None) -> list[str]:
        """Replay a saved project on the loaded video (which must be the file the project
        was made on). Returns notes for the user, e.g. a different model."""
        self.touch()
        project = read_project(path)
        return apply_project(self, project, progress=progress, strict_source=True)

    # ------------------------------------------------------------------ lifecycle
    def touch(self) -> None:
        self.last_used = time.time()

    def close(self) -> None:
        """Stop tracking and remove every file of this session.

        Safe to call from another thread while the session works (the page's unload comes
        whenever the tab closes): tracking is asked to stop, a frame being tracked finishes
        first and no further one starts; while a long action holds the session
        (:meth:`busy`) or a method writes files, the folder is removed when that ends, so
        nothing recreates it afterwards. Calling it again is harmless.
        """
        with self._guard:
            if self.closed:
                return
            self.closed = True
            writing = self._writers > 0
        self.cancel_event.set()
        tracking = self.tracking
        if tracking is not None:
            tracking.close()
        if not writing and self._busy.acquire(blocking=False):
            try:
                self._drop_workspace()
            finally:
                self._busy.release()

    @contextlib.contextmanager
    def _writing(self):
        with self._guard:
            if self.closed:
                raise SessionClosedError()
            self._writers += 1
        try:
            yield
        finally:
            with self._guard:
                self._writers -= 1
                last = self.closed and self._writers == 0
            if last:
                self._drop_workspace()

    def _drop_workspace(self) -> None:
        self._discard_live_video()
        self.tracking = None
        self.source_sha256 = None
        self.folder = None
        self.active_object = None
        self.pending_corner = None
        self.exports = Exports()
        if self.workspace is not None:
            self.workspace.remove()
            self.workspace = None

    # ------------------------------------------------------------------ helpers
    def _object(self, obj_id) -> TrackedObject:
        if self.tracking is None:
            raise PromptError("Upload a video and add an object first.")
        try:
            return self.tracking.objects[int(obj_id)]
        except (KeyError, TypeError, ValueError):
            raise PromptError(
                "That object does not exist (it may have been removed); pick or add an object."
            ) from None

    def _check_frame(self, frame_idx) -> int:
        """A frame number from a request, checked against the video; returns it as int."""
        if self.folder is None:
            raise PromptError("Upload a video or image sequence first.")
        if isinstance(frame_idx, float) and frame_idx.is_integer():
            frame_idx = int(frame_idx)
        n = self.folder.info.num_frames
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise PromptError(
                f"The frame number is missing or not a whole number; pick a "
                f"frame from 0 to {n - 1}."
            )
        if not 0 <= frame_idx < n:
            raise PromptError(
                f"Frame {int(frame_idx)} does not exist; this video has frames 0 to {n - 1}."
            )
        return int(frame_idx)

    def _tracked(self) -> TrackingSession:
        """The tracking session, which must have results to export or measure."""
        tracking = self.tracking
        if tracking is None or not tracking.store.frames():
            raise TrackingError("Nothing is tracked yet; click on an object and press Track first.")
        return tracking

    def _require_not_tracking(self) -> None:
        if self.tracking is not None and self.tracking.propagating:
            raise TrackingError("Tracking is running; wait for it to finish or press Cancel first.")


DISPLAY_LONG_SIDE = 960  # pixels of the longer side of the frame shown in the page


def display_scale(width: int, height: int) -> float:
    """Scale of the page's frame view: the longer side becomes DISPLAY_LONG_SIDE pixels,
    enlarging at most 6x."""
    return min(DISPLAY_LONG_SIDE / max(width, height), 6.0)


def _position(what: str, *values) -> tuple[float, ...]:
    """Coordinates from a request as floats; missing, text, NaN or infinite values are
    refused with one sentence (the range is checked where the frame size is known)."""
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = (math.nan,)
    if not all(math.isfinite(v) for v in numbers):
        if what == "box":
            raise PromptError("The box needs two corners with x and y positions; draw it again.")
        raise PromptError("The click has no valid position; click on the image.")
    return numbers


def _clean_name(name: str | None) -> str | None:
    """Object names are free text shown in the page, CSV and video: keep them short and
    printable; the page escapes them again where it renders HTML."""
    if name is None:
        return None
    cleaned = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    return cleaned[:80] or None


def escape(text: str) -> str:
    return html.escape(str(text), quote=True)
