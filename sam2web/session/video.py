"""The video a user loaded, the model and quality that run on it and how its frames are
shown: :class:`VideoSession`, the base of :class:`~sam2web.session.user.UserSession`; it
delegates to :mod:`sam2web.outputs.display` for frames as the page shows them and to
:mod:`sam2web.session.quality` for comparisons of qualities.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PromptError, TrackingError
from ..history import prompt_actions
from ..media.folder import FrameFolder
from ..outputs import display
from ..outputs.exports import SessionResults
from ..outputs.render import OverlayStyle
from ..tracking.checkpoints import get_spec
from ..tracking.scheduler import UnitKind
from ..tracking.tracker import TrackingSession
from ..types import Progress, VideoInfo
from . import quality
from .engine import model_record
from .lifecycle import TRACKING_RUNS, Exports, writes_files
from .memory import ModelMemory
from .project import Project, file_sha256

log = logging.getLogger(__name__)


@dataclass
class VideoSession(ModelMemory):
    """The video a user loaded, the model configuration that runs on it and how its
    frames are shown; the base of :class:`UserSession`."""

    folder: FrameFolder | None = None
    tracking: TrackingSession | None = None
    active_object: int | None = None
    style: OverlayStyle = field(default_factory=OverlayStyle)
    pending_corner: display.PendingCorner | None = None  # a box's first corner
    exports: Exports = field(default_factory=Exports)
    output: SessionResults = field(default_factory=SessionResults, repr=False)
    model_key: str | None = None  # None: the server's SAM2WEB_MODEL
    quality: str = ""  # a key of quality.QUALITIES; "" until set: the server's default
    source_sha256: str | None = None  # SHA-256 of the uploaded file's bytes
    # The frames in the Ray cluster's object store: (frames folder, connection, object).
    remote_frames: tuple | None = field(default=None, repr=False)
    # True after a run on the cluster: this process's SAM2 state lacks that run's frames.
    remote_state_stale: bool = False
    # Abandon the run on the cluster now (see remote.propagate_remote); empty otherwise.
    remote_stops: list = field(default_factory=list, repr=False)
    stack_choice: tuple = (None, None)  # (channel, axis) a microscopy TIFF was read with

    def __post_init__(self) -> None:
        if not self.quality:
            self.quality = self.engine.default_quality()

    # ------------------------------------------------------------------ media
    @property
    def info(self) -> VideoInfo:
        if self.folder is None:
            raise PromptError("Upload a video or image sequence first.")
        return self.folder.info

    @writes_files
    def upload(
        self,
        path: Path,
        source_name: str | None = None,
        fps: float | None = None,
        progress: Progress | None = None,
        channel: int | str | None = None,
        axis: str | None = None,
        frame_step: int = 1,
    ) -> VideoInfo:
        """Decode an upload into a fresh workspace; the previous video, if any, is dropped
        only once the new one decoded. ``frame_step`` N keeps every N-th frame (outputs keep
        the original's frame numbers and times). ``channel`` and ``axis`` choose what a
        multi-channel or volume TIFF shows (:func:`sam2web.media.ingest.ingest`); without
        them it raises :class:`~sam2web.media.tiff.StackChoiceError`, listing the choices."""
        self.touch()
        self._require_not_tracking()
        path = Path(path)
        sha256 = None
        with contextlib.suppress(OSError):  # unreadable: ingest says so in one sentence
            if path.is_file() and path.stat().st_size <= self.engine.limits.max_bytes:
                sha256 = file_sha256(path)
        ws = self.engine.create_workspace()
        try:
            self.engine.open_video(
                ws,
                path,
                source_name=source_name,
                fps=fps,
                progress=progress,
                channel=channel,
                axis=axis,
                frame_step=frame_step,
            )
        except BaseException:
            ws.remove()
            raise
        self.drop_workspace()
        self.workspace = ws
        self.source_sha256 = sha256
        self.stack_choice = (channel, axis)
        self.folder = FrameFolder(ws.frames_dir)
        return self.folder.info

    def frame_rgb(self, frame_idx: int) -> np.ndarray:
        return self.folder_checked().read_rgb(self.check_frame(frame_idx))

    def folder_checked(self) -> FrameFolder:
        if self.folder is None:
            raise PromptError("Upload a video or image sequence first.")
        return self.folder

    # ------------------------------------------------------------------ model
    def ensure_tracking(self, progress: Progress | None = None) -> TrackingSession:
        """The session's tracking, made on first use; a released SAM 2 state is rebuilt
        from the history first (see :meth:`release_model`)."""
        if self.tracking is not None:
            self.rebuild_if_released(self.tracking)
        if self.tracking is None:
            if self.workspace is None:
                raise PromptError("Upload a video or image sequence first.")
            self.tracking = self.engine.start_session(
                self.workspace, self.model_key, progress=progress, quality=self.quality
            )
            self.remote_state_stale = False  # a new session: nothing to replay
        return self.tracking

    @property
    def resolution(self) -> int:
        """Processing resolution (pixels) of this session's quality."""
        return self.engine.resolution(self.quality)

    @property
    def model(self) -> str:
        return self.model_key or self.engine.settings.model

    @writes_files
    def set_quality(
        self, quality_key: str, progress: Progress | None = None, replay_prompts: bool = True
    ) -> bool:
        """Process at another quality (see :data:`~sam2web.session.quality.QUALITIES`). Objects and
        every click are kept: they are given again to the model at the new resolution
        (tracked frames are not; track again). With ``replay_prompts=False`` they are
        dropped instead. Returns True when clicks were replayed."""
        offered = {q.key: q for q in self.engine.qualities()}
        if quality_key not in offered:
            names = ", ".join(q.label for q in offered.values())
            raise PromptError(f"This server offers these qualities: {names}; choose one of them.")
        self._require_not_tracking()
        if quality_key == self.quality:
            return False
        old, before = self.tracking, self.engine.quality(self.quality)
        self.quality = quality_key
        new = offered[quality_key]
        if old is None or (new.resolution, new.precision) == (before.resolution, before.precision):
            return False
        actions = prompt_actions(old.history) if replay_prompts else []
        colors = {o.obj_id: o.color for o in old.objects.values()}
        self.forget_results()
        self.tracking = None
        if not actions:
            self.active_object = None
            return False
        tracking = self.ensure_tracking()
        self._replay_all(tracking, actions, progress)
        for obj in tracking.objects.values():
            obj.color = colors.get(obj.obj_id, obj.color)
        if self.active_object not in tracking.objects:
            self.active_object = next(reversed(tracking.objects), None)
        return True

    def set_model(self, model_key: str) -> bool:
        """Use another model size for this session. Objects and clicks belong to a model's
        tracking state, so they are cleared; returns True when something was cleared."""
        spec = get_spec(model_key)
        self._require_not_tracking()
        if spec.key == self.model:
            return False
        cleared = bool(self.tracking is not None and self.tracking.objects)
        self.forget_results()
        if self.tracking is not None:
            self.tracking.store.clear()
            self.tracking = None
        self.model_key = spec.key
        self.active_object = None
        return cleared

    @writes_files
    def compare_qualities(
        self, frames: int = 5, progress: Progress | None = None, candidate: str = "fast"
    ) -> quality.QualityAgreement:
        """Track the first ``frames`` frames (from the earliest clicked frame) at full
        quality and at ``candidate`` (a faster quality this server offers), with this
        session's objects and clicks, and measure how far the masks agree and how much
        faster the candidate ran. Neither run touches the session's own results."""
        self.touch()
        tracking = self.ensure_tracking()
        self._require_not_tracking()
        offered = {q.key: q for q in self.engine.qualities()}
        if candidate not in offered:
            raise PromptError("That quality is not offered on this server; pick another one.")
        assert self.workspace is not None
        workspace, model_key = self.workspace, self.model_key

        def scratch(key: str, masks_dir: Path) -> TrackingSession:
            return self.engine.start_session(workspace, model_key, quality=key, masks_dir=masks_dir)

        return quality.compare_qualities(
            tracking,
            scratch,
            workspace.root,
            offered["full"],
            offered[candidate],
            frames,
            self.cancel_event,
            progress,
            drive=lambda steps: self.model_steps(tracking, steps, UnitKind.BACKGROUND),
        )

    def _replay_all(self, tracking: TrackingSession, actions, progress: Progress | None) -> None:
        try:
            for done, action in enumerate(actions, start=1):
                self.replay_on_model(tracking, action)
                if progress is not None:
                    progress(done, len(actions))
        except BaseException:
            tracking.reset()
            self.active_object = None
            raise

    def _model_record(self):
        device = None if self.tracking is None else str(self.tracking.predictor.device)
        return model_record(self.engine, self.model, self.quality, device)

    def _quality_of(self, project: Project) -> None:
        """Switch to the offered quality a project was made at: the same resolution and
        precision, else the same resolution (a different precision is noted)."""
        saved = project.model
        offered = self.engine.qualities()
        same = [q for q in offered if q.resolution == saved.resolution]
        exact = [q for q in same if saved.bf16 is None or q.bf16 == saved.bf16]
        choice = (exact or same or [None])[0]
        if choice is not None and choice.key != self.quality:
            self.set_quality(choice.key, replay_prompts=False)

    # ------------------------------------------------------------------ display
    @property
    def display_scale(self) -> float:
        return display.display_scale(self.info.width, self.info.height)

    def to_original(self, x_display: float, y_display: float) -> tuple[float, float]:
        """A position in the displayed image -> (x, y) pixels of the original frame."""
        return display.to_original(self.info, x_display, y_display)

    def view_frame(self, frame_idx: int) -> np.ndarray:
        """The frame as the page shows it (display-scaled, prompts drawn)."""
        self.touch()  # looking at frames is using the session
        frame_idx = self.check_frame(frame_idx)
        return display.render_frame(
            self.frame_rgb,
            self.tracking,
            self.style,
            frame_idx,
            scale=self.display_scale,
            pending=self.pending_corner,
        )

    def gallery(self, max_items: int = 24) -> list[tuple[np.ndarray, str]]:
        """Every N-th frame with its overlay, for a quick check of a whole run."""
        return display.gallery(self.frame_rgb, self.tracking, self.style, self.info, max_items)

    # ------------------------------------------------------------------ lifecycle
    def stop_model_work(self) -> None:
        super().stop_model_work()
        for stop in list(self.remote_stops):
            stop()
        if self.tracking is not None:
            self.tracking.close()

    def drop_workspace(self) -> None:
        self.forget_results()
        self.tracking = None
        self.source_sha256 = None
        self.folder = None
        self.active_object = None
        self.remote_frames = None  # lets the cluster free its copy of the frames
        self.remote_state_stale = False
        super().drop_workspace()

    # ------------------------------------------------------------------ checks
    def check_frame(self, frame_idx) -> int:
        """A frame number from a request, checked against the video; returns it as int."""
        n = self.folder_checked().info.num_frames
        if isinstance(frame_idx, float) and frame_idx.is_integer():
            frame_idx = int(frame_idx)
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise PromptError(
                f"The frame number is missing or not a whole number; pick a frame from 0 to "
                f"{n - 1}."
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
            raise TrackingError(TRACKING_RUNS)

    def forget_results(self) -> None:
        self.output.forget()
        self.exports = Exports()
        self.pending_corner = None

    def _exports_dir(self) -> Path:
        if self.workspace is None:
            raise PromptError("Upload a video or image sequence first.")
        return self.workspace.exports_dir
