"""What one user does in the app, without any web framework: a facade over the stages.

:class:`UserSession` owns a user's workspace (frames, masks, exports), their
:class:`~sam2web.tracking.tracker.TrackingSession`, the active object and display options. Each
method checks its input, holds the session where needed, and delegates: to
:mod:`sam2web.tracking.tracker` for the model, :mod:`sam2web.outputs.display` for frames as the page shows
them, :mod:`sam2web.outputs.exports` for files, :mod:`sam2web.session.quality` for comparisons,
:mod:`sam2web.session.project` for project files, :mod:`sam2web.compute.zerogpu` for GPU jobs and
:mod:`sam2web.compute.remote` for tracking on a Ray cluster.
:class:`Lifecycle` is the part that keeps files safe while the session is used from several
threads and closed at any moment, and that runs the session's model work on the shared model:
each click, undo or object change is one unit of the engine's
:class:`~sam2web.tracking.scheduler.Scheduler`, each tracked frame another, so users take turns on the
model while their uploads, frames and exports never wait for anyone else. Every method takes and returns plain values, so the page
(``sam2web.ui``) only wires widgets to these methods, and tests drive them directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis.identity import fixed_view
from ..analysis.results import Results
from ..analysis.tables import Calibration, ObjectSummary, confidence_events, summarize
from ..compute import remote
from ..compute.zerogpu import TrackingJob, propagate_in_job
from ..errors import PromptError, SessionClosedError, TrackingError, UserError, as_clause
from ..history import Action, FillGaps, Propagate, UndoFix, gap_limit, prompt_actions
from ..media.folder import FrameFolder
from ..media.tiff import StackChoiceError
from ..outputs import display
from ..outputs.exports import FILES, LiveExports, SessionResults
from ..outputs.render import OverlayStyle
from ..tracking.model import get_spec
from ..tracking.scheduler import Scheduler, Snapshot, UnitCancelled, UnitKind
from ..tracking.tracker import PropagationStep, TrackingSession, check_point, record_fix, replay
from ..types import Box, Click, Progress, TrackedObject, VideoInfo, WaitCallback
from . import corrections, quality
from .behaviour import (
    BehaviourOutputs,
    BehaviourSetup,
    BehaviourState,
    ExtraOutputs,
    draw_setup,
    write_behaviour,
    write_label_stacks,
)
from .engine import Engine, Workspace, model_record
from .project import (
    PROJECT_FILENAME,
    Project,
    ProjectError,
    build_project,
    check_source,
    file_sha256,
    load_project,
    model_notes,
    save_project,
    stack_notes,
)

log = logging.getLogger(__name__)

PROMPT_MODES = ("positive", "negative", "box")

# Analysis outputs of :meth:`UserSession.export_science`, by key (names in exports.FILES).
SCIENCE_KEYS = ("summary", "calibrated", "trajectories", "confidence", "npz", "coco")
SCIENCE_FILES = {key: FILES[key] for key in SCIENCE_KEYS}

TRACKING_RUNS = "Tracking is running; wait for it to finish or press Cancel first."


@dataclass
class Review:
    summaries: list[ObjectSummary]  # one per object
    events: list[tuple[int, int, str, str]]  # (frame, object id, object name, lost|uncertain)


@dataclass
class Exports:
    video: Path | None = None
    csv: Path | None = None
    masks: Path | None = None

    def files(self) -> list[Path]:
        return [p for p in (self.video, self.csv, self.masks) if p is not None]


@dataclass
class TrackingRun:
    """Summary of the last propagation."""

    frames: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)  # sentences for the page (the cluster)


def _writes_files(method):
    """Mark a method that writes into the session's folder: it refuses to start once the
    session is closed, and a close() while it runs removes the folder only after it
    returned (so nothing is ever written into, or re-created in, a removed folder)."""

    @functools.wraps(method)
    def wrapper(self: Lifecycle, *args, **kwargs):
        with self.writing():
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class Lifecycle:
    """A user's workspace and the rules for using it from several threads: one long action
    at a time (:meth:`busy`), no file written after :meth:`close`, and the folder removed
    once nothing writes into it any more."""

    engine: Engine
    workspace: Workspace | None = None
    last_used: float = field(default_factory=time.time)
    closed: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _writers: int = 0  # methods writing into the folder right now (see _writes_files)
    _busy: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # This session's key in the model schedulers (see sam2web.tracking.scheduler).
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __deepcopy__(self, memo):
        # A user session is owned, never duplicated: Gradio deep-copies the value a state
        # factory returns, and a copy would share the workspace folder anyway.
        return self

    def touch(self) -> None:
        self.last_used = time.time()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Hold this session for one long action: an upload, tracking with its exports, an
        export, loading a project. A second long action of the same user while one runs is
        refused with one sentence, so two runs never interleave their results. A session
        closed meanwhile loses its files when the action ends (see :meth:`close`)."""
        if not self._busy.acquire(blocking=False):
            raise TrackingError(
                "This video is busy with another action (tracking, exporting or loading); "
                "wait for it to finish or press Cancel first."
            )
        try:
            yield
        finally:
            try:
                with self._guard:
                    drop = self.closed and self._writers == 0
                if drop:
                    self.drop_workspace()
            finally:
                self._busy.release()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around writing into the session's folder (see :func:`_writes_files`)."""
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
                self.drop_workspace()

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
        self.stop_model_work()
        if not writing and self._busy.acquire(blocking=False):
            try:
                self.drop_workspace()
            finally:
                self._busy.release()

    def stop_model_work(self) -> None:
        """No model step may run after this returns (see :meth:`close`)."""
        self.engine.schedulers.cancel_owner(self.owner)

    # ------------------------------------------------------------------ the shared model
    def on_model(self, tracking: TrackingSession, fn, kind: UnitKind = UnitKind.INTERACTIVE):
        """Run ``fn`` (model work on ``tracking``) as one unit on the shared model and return
        its value. Refused in one sentence while this session tracks."""
        if tracking.propagating:
            raise TrackingError(TRACKING_RUNS)
        return self._scheduler(tracking).run(fn, self.owner, kind)

    def model_steps(
        self,
        tracking: TrackingSession,
        steps: Iterator,
        kind: UnitKind = UnitKind.TRACKING,
        on_wait: WaitCallback | None = None,
        wait_s: float = 1.0,
    ) -> Iterator:
        """``steps`` with each item computed as one unit on the shared model, which is given
        back between items; while an item waits, ``on_wait()`` runs about every ``wait_s``
        seconds (in the caller's thread, never holding the model). Once this session is
        closed the iteration ends quietly, as a cancelled one does."""
        with self._scheduler(tracking).iterate(steps, self.owner, kind) as shared:
            while True:
                try:
                    item = shared.next_within(wait_s)
                except TimeoutError:
                    if on_wait is not None:
                        on_wait()
                    continue
                except StopIteration:
                    return
                except UnitCancelled:
                    if self.closed:
                        return
                    raise
                yield item

    def replay_on_model(
        self, tracking: TrackingSession, action: Action, on_frame: Callable[[], None] | None = None
    ) -> None:
        """Apply a recorded action again on the shared model: a tracking run one unit per
        frame (``on_frame()`` after each), anything else as one unit."""
        if isinstance(action, Propagate):
            for _ in self.model_steps(tracking, tracking.replay_run(action)):
                if on_frame is not None:
                    on_frame()
        else:
            self.on_model(tracking, lambda: replay(tracking, action))

    def model_standing(self, tracking: TrackingSession | None) -> Snapshot | None:
        """Where this session stands with the shared model (None before it was used)."""
        if tracking is None:
            return None
        return self.engine.schedulers.standing(self.owner, str(tracking.predictor.device))

    def _scheduler(self, tracking: TrackingSession) -> Scheduler:
        return self.engine.schedulers.get(str(tracking.predictor.device))

    def drop_workspace(self) -> None:
        """Forget the video and remove the workspace folder."""
        if self.workspace is not None:
            self.workspace.remove()
            self.workspace = None


@dataclass
class VideoSession(Lifecycle):
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

    @_writes_files
    def upload(
        self,
        path: Path,
        source_name: str | None = None,
        fps: float | None = None,
        progress: Progress | None = None,
        channel: int | str | None = None,
        axis: str | None = None,
    ) -> VideoInfo:
        """Decode an upload into a fresh workspace; the previous video, if any, is dropped
        only once the new one decoded. ``channel`` and ``axis`` choose what a
        multi-channel or volume TIFF shows (see :func:`sam2web.media.ingest.ingest`); without them
        such a file raises :class:`~sam2web.media.tiff.StackChoiceError`, which lists the
        choices."""
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
        if self.tracking is None:
            if self.workspace is None:
                raise PromptError("Upload a video or image sequence first.")
            self.tracking = self.engine.start_session(
                self.workspace, self.model_key, progress=progress, quality=self.quality
            )
        return self.tracking

    @property
    def resolution(self) -> int:
        """Processing resolution (pixels) of this session's quality."""
        return self.engine.resolution(self.quality)

    @property
    def model(self) -> str:
        return self.model_key or self.engine.settings.model

    @_writes_files
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
        if old is None or (new.resolution, new.bf16) == (before.resolution, before.bf16):
            return False
        actions = prompt_actions(old.history) if replay_prompts else []
        colors = {o.obj_id: o.color for o in old.objects.values()}
        self._forget_results()
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
        self._forget_results()
        if self.tracking is not None:
            self.tracking.store.clear()
            self.tracking = None
        self.model_key = spec.key
        self.active_object = None
        return cleared

    @_writes_files
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
        self._forget_results()
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

    def _forget_results(self) -> None:
        self.output.forget()
        self.exports = Exports()
        self.pending_corner = None

    def _exports_dir(self) -> Path:
        if self.workspace is None:
            raise PromptError("Upload a video or image sequence first.")
        return self.workspace.exports_dir


class MasksAndFixes:
    """The part of :class:`UserSession` that starts objects from label images, takes
    brush corrections and records identity fixes and gap filling; each method checks its
    input and delegates to :mod:`sam2web.session.corrections` and :mod:`sam2web.tracking.tracker`. It
    also keeps a microscopy TIFF that needs a choice (channel, axis) until the user makes
    it (:meth:`upload_or_hold`, :meth:`choose_stack`)."""

    # (a server-made workspace holding the file, the file, its name shown, the question)
    held_stack: tuple[Workspace, Path, str, StackChoiceError] | None = None

    def upload_or_hold(
        self, path: Path, source_name: str | None = None, progress: Progress | None = None
    ) -> VideoInfo:
        """:meth:`upload`; a TIFF that needs a choice is kept (a server-side copy) so that
        :meth:`choose_stack` can open it, and its :class:`StackChoiceError` raised."""
        try:
            return self.upload(path, source_name=source_name, progress=progress)
        except StackChoiceError as err:
            self.drop_held_stack()
            ws = self.engine.create_workspace()
            try:
                held = ws.root / "held_stack"
                shutil.copyfile(path, held)
            except BaseException:
                ws.remove()
                raise
            self.held_stack = (ws, held, source_name or Path(path).name, err)
            raise

    def choose_stack(
        self, channel: int | str | None, axis: str | None, progress: Progress | None = None
    ) -> VideoInfo:
        """Open the held TIFF with this channel and axis (see :func:`sam2web.media.ingest.ingest`)."""
        if self.held_stack is None:
            raise PromptError("Upload the TIFF first; a choice is asked for when it needs one.")
        _, path, name, _ = self.held_stack
        try:
            info = self.upload(
                path, source_name=name, progress=progress, channel=channel, axis=axis
            )
        except StackChoiceError as err:
            self.held_stack = (*self.held_stack[:3], err)
            raise
        self.drop_held_stack()
        return info

    def drop_held_stack(self) -> None:
        held, self.held_stack = self.held_stack, None
        if held is not None:
            held[0].remove()

    def drop_workspace(self) -> None:
        self.drop_held_stack()
        super().drop_workspace()

    def start_from_labels(
        self, source: bytes | Path, frame_idx: int, name: str | None = None
    ) -> list[TrackedObject]:
        """One object per label of a label image, each prompted with its mask on
        ``frame_idx`` (see :func:`sam2web.session.corrections.start_from_labels`)."""
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        labels = corrections.read_labels(
            self.info, source, frame_idx, max_labels=self.engine.settings.max_labels, name=name
        )
        tracking = self.ensure_tracking()
        added = self.on_model(
            tracking, lambda: corrections.start_from_labels(tracking, labels, frame_idx)
        )
        self.pending_corner = None
        self.active_object = added[-1].obj_id
        return added

    def paint(self, frame_idx: int, mask: np.ndarray, obj_id: int | None = None) -> None:
        """Make ``mask`` (bool, original frame size) the object's mask prompt on the
        frame: what the brush painted."""
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        obj = self._object_for_click(obj_id)
        tracking = self.ensure_tracking()
        self.on_model(tracking, lambda: tracking.add_mask(frame_idx, obj.obj_id, mask))

    def fix_identity(self, kind: str, first: int, second: int, frame_idx: int) -> str:
        """Swap ``first`` and ``second``, or merge ``second`` into ``first``, from
        ``frame_idx`` on, in every output; returns a status sentence."""
        self.touch()
        action = corrections.fix_action(kind, first, second, frame_idx)
        self._object(first)
        self._object(second)
        record_fix(self._tracked_or_prompt(), action)
        names = [self._object(i).name for i in (first, second)]
        if kind == "swap":
            return f"{names[0]} and {names[1]} are swapped from frame {int(frame_idx)} on."
        return f"{names[1]} is merged into {names[0]} from frame {int(frame_idx)} on."

    def undo_fix(self) -> None:
        """Take back the last identity fix."""
        self.touch()
        record_fix(self._tracked_or_prompt(), UndoFix())

    def fill_gaps(self, frames: int) -> None:
        """Bridge absences of at most ``frames`` frames in the per-frame table (0: off)."""
        self.touch()
        if isinstance(frames, float) and frames.is_integer():
            frames = int(frames)
        if isinstance(frames, bool) or not isinstance(frames, int):
            raise PromptError("The longest gap to fill must be a whole number of frames.")
        record_fix(self._tracked_or_prompt(), FillGaps(frames))

    def mask_on(self, frame_idx: int, obj_id: int) -> np.ndarray | None:
        """The object's mask on the frame as the page shows it (identity fixes applied);
        None where it has none."""
        if self.tracking is None:
            return None
        return fixed_view(self.tracking.store, self.tracking.history).mask(frame_idx, obj_id)

    def _tracked_or_prompt(self) -> TrackingSession:
        if self.tracking is None:
            raise PromptError("Upload a video and add objects first.")
        return self.tracking

    def _gap(self) -> int:
        return 0 if self.tracking is None else gap_limit(self.tracking.history)


@dataclass
class PromptSession(MasksAndFixes, VideoSession):
    """Objects and prompts, on top of the video and model configuration of
    :class:`VideoSession` (object lookups are :class:`UserSession`'s)."""

    last_run: TrackingRun = field(default_factory=TrackingRun)
    calibration: Calibration = field(default_factory=Calibration)

    # ------------------------------------------------------------------ objects and prompts
    @property
    def objects(self) -> list[TrackedObject]:
        return [] if self.tracking is None else list(self.tracking.objects.values())

    def add_object(self, name: str | None = None) -> TrackedObject:
        self.touch()
        tracking = self.ensure_tracking()
        obj = self.on_model(tracking, lambda: tracking.add_object(_clean_name(name)))
        self.active_object = obj.obj_id
        return obj

    def select_object(self, obj_id: int) -> TrackedObject:
        obj = self._object(obj_id)
        self.active_object = obj.obj_id
        self.pending_corner = None
        return obj

    def rename_object(self, obj_id: int, name: str) -> TrackedObject:
        self._object(obj_id)
        return self.ensure_tracking().rename_object(int(obj_id), _clean_name(name))

    def remove_object(self, obj_id: int) -> None:
        self._object(obj_id)
        tracking = self.ensure_tracking()
        self.on_model(tracking, lambda: tracking.remove_object(int(obj_id)))
        if self.active_object == obj_id:
            remaining = self.objects
            self.active_object = remaining[-1].obj_id if remaining else None
        self.exports = Exports()

    def click(
        self,
        frame_idx: int,
        x: float,
        y: float,
        mode: str = "positive",
        obj_id: int | None = None,
    ) -> str:
        """A click on the frame image; returns a short status sentence. Without an object
        (``obj_id`` None or 0 and none active) the first object is created, as on the page.
        In box mode the first click marks a corner and the second completes the box."""
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        x, y = _position("click", x, y)
        if mode not in PROMPT_MODES:
            raise PromptError("Choose positive, negative or box as the click mode.")
        obj = self._object_for_click(obj_id)
        tracking = self.ensure_tracking()
        if mode == "box":
            corner = self.pending_corner
            if corner is None or corner.frame != frame_idx:
                check_point(tracking.info, x, y)
                self.pending_corner = display.PendingCorner(frame_idx, x, y, obj.obj_id)
                return f"First corner of the box for {obj.name} set; click the opposite corner."
            self.pending_corner = None
            box = Box(corner.x, corner.y, x, y)
            self.on_model(tracking, lambda: tracking.set_box(frame_idx, obj.obj_id, box))
            return f"Box set for {obj.name} on frame {frame_idx}."
        self.pending_corner = None
        click = Click(x, y, mode == "positive")
        self.on_model(tracking, lambda: tracking.add_click(frame_idx, obj.obj_id, click))
        kind = "Positive" if mode == "positive" else "Negative"
        return f"{kind} click added to {obj.name} at x={x:.0f}, y={y:.0f}."

    def add_box(
        self,
        frame_idx: int,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        obj_id: int | None = None,
    ) -> None:
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        x0, y0, x1, y1 = _position("box", x0, y0, x1, y1)
        obj = self._object_for_click(obj_id)
        tracking = self.ensure_tracking()
        box = Box(x0, y0, x1, y1)
        self.on_model(tracking, lambda: tracking.set_box(frame_idx, obj.obj_id, box))

    def undo(self, frame_idx: int, obj_id: int | None = None) -> None:
        frame_idx = self.check_frame(frame_idx)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.pending_corner = None
        tracking = self.ensure_tracking()
        self.on_model(tracking, lambda: tracking.undo(frame_idx, obj.obj_id))

    def clear_frame(self, frame_idx: int, obj_id: int | None = None) -> None:
        frame_idx = self.check_frame(frame_idx)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.pending_corner = None
        tracking = self.ensure_tracking()
        self.on_model(tracking, lambda: tracking.clear_frame(frame_idx, obj.obj_id))

    @_writes_files
    def reset(self) -> None:
        self.touch()
        self._forget_results()
        tracking = self.tracking
        if tracking is not None:
            self.on_model(tracking, tracking.reset)
        self.active_object = None
        if self.workspace is not None:
            for p in self.workspace.exports_dir.iterdir():
                p.unlink(missing_ok=True)


@dataclass
class UserSession(PromptSession):
    """One user of the app: objects and prompts, tracking runs, results, zones and
    projects. ``behaviour`` holds the zones, ruler and pair settings
    (:mod:`sam2web.session.behaviour`)."""

    behaviour: BehaviourState = field(default_factory=BehaviourState)

    # ------------------------------------------------------------------ tracking
    def propagate(
        self,
        direction: str = "forward",
        start_frame: int | None = None,
        end_frame: int | None = None,
        on_wait: WaitCallback | None = None,
    ) -> Iterator[PropagationStep]:
        """Track all objects; yields each frame's step. Cancel with :meth:`cancel`. Each
        frame is one unit on the shared model; ``on_wait()`` runs about once a second while
        the next frame waits for it."""
        self.touch()
        tracking = self.ensure_tracking()
        self._require_not_tracking()  # before replacing the running one's cancel flag
        planned = tracking.planned_frames(direction, start_frame, end_frame)
        notes: list[str] = []  # where the run went, for the page
        cluster, tracking = _where_to_track(self, tracking, notes)
        self.cancel_event = threading.Event()
        self._forget_results()
        assert self.workspace is not None
        # The overlay video and mask files are written beside tracking (see LiveExports);
        # the run adds one action to the history.
        live = self.output.start_live(
            self.frame_rgb,
            fixed_view(tracking.store, tracking.history),
            tracking.objects.values(),
            self.info,
            self.video_style,
            self.workspace.exports_dir,
            planned,
            len(tracking.history) + 1,
        )
        plan = (direction, start_frame, end_frame)
        steps = _run_steps(self, tracking, cluster, plan, notes, on_wait)
        yield from _follow_run(self, steps, live, notes)

    def cancel(self) -> bool:
        """Ask a running propagation to stop after the current frame."""
        running = self.tracking is not None and self.tracking.propagating
        self.cancel_event.set()
        return running

    # ------------------------------------------------------------------ results
    @_writes_files
    def export(self, video: bool = True, progress: Progress | None = None) -> Exports:
        """Write the overlay MP4, the per-frame CSV and every other file for what is
        tracked; each stored mask is read once for all of them (beside tracking where the
        last run's pass still applies)."""
        results = self._results(video, progress)
        out = self._exports_dir()
        files = self.output.row_files(self.calibration, self._first_frame, out, self._gap())
        video_path = out / FILES["video"]
        self.exports = Exports(
            video_path if video and video_path.is_file() else None,
            files["csv"],
            results.files["masks"],
        )
        return self.exports

    @_writes_files
    def export_science(self, calibration: Calibration | None = None) -> dict[str, Path]:
        """Write the analysis files (:data:`SCIENCE_FILES`) with ``calibration``: per-object
        summary CSV, calibrated per-frame CSV, trajectory and confidence plots (PNG), masks
        as NPZ and as COCO RLE JSON. Returns {key: path}. Masks are read only when nothing
        current was exported yet."""
        results = self._results(video=False)
        cal = calibration or self.calibration
        files = self.output.row_files(cal, self._first_frame, self._exports_dir(), self._gap())
        files.update(results.files)
        return {key: files[key] for key in SCIENCE_KEYS}

    def review(self, uncertain_margin: float = 1.0) -> Review:
        """What the page shows after tracking: the per-object summary (calibrated) and the
        frames where an object is lost (score < 0) or uncertain (0 <= score < margin)."""
        results = self._results(video=False)
        names = results.object_names()
        events = [
            (frame, obj_id, names.get(obj_id, str(obj_id)), kind)
            for frame, obj_id, kind in confidence_events(results.rows, 0.0, uncertain_margin)
        ]
        return Review(summarize(results.rows, results.objects, self.calibration), events)

    def _results(self, video: bool, progress: Progress | None = None) -> Results:
        """The current results (see :class:`~sam2web.outputs.exports.SessionResults`)."""
        self.touch()
        tracking = self._tracked()
        self._require_not_tracking()
        return self.output.current(
            self.frame_rgb,
            fixed_view(tracking.store, tracking.history),
            tracking.objects.values(),
            self.info,
            self.video_style,
            self._exports_dir(),
            len(tracking.history),
            video,
            progress,
        )

    # ------------------------------------------------------------------ zones and pairs
    @property
    def video_style(self) -> OverlayStyle:
        """The overlay video's look: :attr:`style`, with the zones when asked for."""
        zones = self.behaviour.setup.zones if self.behaviour.on_video else ()
        return dataclasses.replace(self.style, zones=zones)

    def view_frame(self, frame_idx: int) -> np.ndarray:
        """The frame as the page shows it, with the zones, ruler and a shape being drawn."""
        image = super().view_frame(frame_idx)
        b = self.behaviour
        return draw_setup(image, b.setup, self.display_scale, b.draft)

    def set_ruler(self, distance, unit: str) -> Calibration:
        """Calibrate lengths with the ruler just drawn (``distance`` ``unit`` long); keeps
        the frame rate override."""
        self.touch()
        ruler = self.behaviour.ruler(distance, unit)
        self.calibration = ruler.calibration(self.calibration.fps)
        return self.calibration

    @_writes_files
    def export_behaviour(self) -> BehaviourOutputs:
        """Write the zone, pair and occupancy tables and heatmaps (:func:`write_behaviour`)
        from the current measurements with this session's calibration."""
        results = self._results(video=False)
        tracking = self._tracked()
        return write_behaviour(
            results.rows,
            results.object_names(),
            self.info,
            self.calibration,
            self.behaviour.setup,
            self._first_frame(),
            self._exports_dir(),
            masks=tracking.store,
        )

    @_writes_files
    def export_label_stacks(self) -> dict[str, Path]:
        """The masks as a uint16 label TIFF stack and a Cell Tracking Challenge zip."""
        self._results(video=False)
        tracking = self._tracked()
        ids = [o.obj_id for o in tracking.objects.values()]
        return write_label_stacks(
            tracking.store, self.info, self.calibration, self._exports_dir(), ids
        )

    def export_extras(self, extras: ExtraOutputs, calibration: Calibration) -> list[Path]:
        """The files of ``extras`` with ``calibration`` (the batch command's hook)."""
        self.calibration = calibration
        b = self.behaviour
        if extras.pair_within is not None:
            b.setup = dataclasses.replace(b.setup, pair_within=extras.pair_within)
        files: list[Path] = []
        if extras.behaviour or b.setup.zones:
            files += self.export_behaviour().files.values()
        if extras.label_stacks:
            files += self.export_label_stacks().values()
        return files

    def _first_frame(self) -> np.ndarray:
        return self.frame_rgb(0)

    @property
    def results(self) -> Results | None:
        return self.output.results

    # ------------------------------------------------------------------ projects
    @_writes_files
    def save_project(self, calibration: Calibration | None = None) -> Path:
        """Write this session's project (video identity, model, calibration, objects and
        every action) to the exports folder as ``sam2web_project.json``."""
        self.touch()
        self._require_not_tracking()
        tracking = self.tracking
        data = build_project(
            self.info,
            self.source_sha256,
            self._model_record(),
            calibration,
            self.objects,
            [] if tracking is None else list(tracking.history),
            self.behaviour.setup.to_json(),
            self.stack_choice,
        )
        return save_project(data, self._exports_dir() / PROJECT_FILENAME)

    def load_project(self, path: Path, progress: Progress | None = None) -> list[str]:
        """Replay a saved project on the loaded video, which must be the file the project
        was made on. Returns notes for the user (e.g. a different model)."""
        self.touch()
        return self.apply_project(load_project(path), progress, strict_source=True)

    def apply_project(
        self, project: Project, progress: Progress | None = None, strict_source: bool = True
    ) -> list[str]:
        """Replay ``project`` on the loaded video; returns notes for the user.

        The video must have the project's frame count and size; with ``strict_source`` it
        must also be the very file the project was made on (same SHA-256). The session is
        reset, then every action is replayed in order; ``progress(done, total)`` counts
        actions and tracked frames. On failure the session is left empty."""
        notes = check_source(project, self.info, self.source_sha256, strict=strict_source)
        setup = BehaviourSetup.from_project(project)
        self._require_not_tracking()
        self._quality_of(project)
        tracking = self.ensure_tracking()
        notes += model_notes(project, self._model_record())
        notes += stack_notes(project, self.stack_choice)
        self.reset()
        try:
            replay_project(tracking, project, progress, apply=self.replay_on_model)
        except BaseException:
            self.reset()
            raise
        self.active_object = project.objects[-1].obj_id if project.objects else None
        self.behaviour = BehaviourState(setup)
        log.info(
            "replayed a project of %d steps on %s", len(project.history), self.info.source_name
        )
        return notes

    # ------------------------------------------------------------------ objects
    def _object(self, obj_id) -> TrackedObject:
        if self.tracking is None:
            raise PromptError("Upload a video and add an object first.")
        try:
            return self.tracking.objects[int(obj_id)]
        except (KeyError, TypeError, ValueError):
            raise PromptError(
                "That object does not exist (it may have been removed); pick or add an object."
            ) from None

    def _object_for_click(self, obj_id) -> TrackedObject:
        """The object a click goes to: ``obj_id``, else the active one, else a new one; the
        object clicked on becomes the active one."""
        if obj_id is None or obj_id == 0:
            if self.active_object is None:
                self.add_object()
            obj_id = self.active_object
        obj = self._object(obj_id)
        if obj.obj_id != self.active_object:
            self.active_object = obj.obj_id
            self.pending_corner = None
        return obj


def _run_steps(
    user: UserSession,
    tracking: TrackingSession,
    cluster: remote.Cluster | None,
    plan: tuple[str, int | None, int | None],
    notes: list[str],
    on_wait: WaitCallback | None,
) -> Iterator[PropagationStep]:
    """The steps of a run (``plan``: direction, start and end frame): on the shared model
    here, as a job on ZeroGPU, or on the Ray cluster ``cluster``."""
    if user.engine.gpu_jobs or cluster is not None:
        assert user.workspace is not None
        job = user.engine.tracking_job(
            user.workspace, tracking, user.model_key, *plan, quality=user.quality
        )
        if cluster is None:
            return propagate_in_job(job, tracking, user.cancel_event)
        return _remote_steps(user, cluster, job, tracking, notes)
    run = tracking.propagate(*plan, cancel=user.cancel_event)
    return user.model_steps(tracking, run, on_wait=on_wait)


def _where_to_track(
    user: UserSession, tracking: TrackingSession, notes: list[str]
) -> tuple[remote.Cluster | None, TrackingSession]:
    """The Ray cluster a run goes to (None: here) and the session it tracks; a run here
    after runs on the cluster first rebuilds this process's state (see _rebuild_here)."""
    cluster = _cluster_for_run(user, notes)
    if cluster is None and user.remote_state_stale and not user.engine.gpu_jobs:
        tracking = _rebuild_here(user, tracking)
    return cluster, tracking


def _cluster_for_run(user: UserSession, notes: list[str]) -> remote.Cluster | None:
    """The Ray cluster this run goes to (SAM2WEB_RAY_ADDRESS), or None to track here;
    when it cannot be used, one sentence in ``notes`` (or, with
    SAM2WEB_RAY_FALLBACK=refuse, a refusal)."""
    settings = user.engine.settings
    if not settings.ray_address or user.engine.gpu_jobs:
        return None
    try:
        return remote.connect(settings.ray_address)
    except remote.ClusterUnavailable as reason:
        log.warning("tracking here: %s", reason)
        if settings.ray_fallback == "refuse":
            raise remote.refuse(reason) from None
        notes.append(remote.unavailable_sentence(reason, "local"))
        return None


def _remote_steps(
    user: UserSession,
    cluster: remote.Cluster,
    job: TrackingJob,
    tracking: TrackingSession,
    notes: list[str],
) -> Iterator[PropagationStep]:
    """``job`` on the cluster, with the session's frames put in its object store once."""
    assert user.workspace is not None
    frames_dir = user.workspace.frames_dir

    def frames():
        key = (str(frames_dir), cluster.generation)
        if user.remote_frames is None or user.remote_frames[:2] != key:
            user.remote_frames = (*key, cluster.put_frames(frames_dir))
        return user.remote_frames[2]

    user.remote_state_stale = True
    job = remote.remote_job(job, user.engine.settings.device)
    return remote.propagate_remote(
        cluster, job, frames, tracking, user.cancel_event, notes, user.remote_stops
    )


def _rebuild_here(user: UserSession, tracking: TrackingSession) -> TrackingSession:
    """After runs on the cluster, this process's SAM2 state lacks their frames: the
    history is replayed into a fresh session on the same store (rewriting each frame
    with the same masks), so tracking here continues exactly."""
    assert user.workspace is not None
    fresh = user.engine.start_session(
        user.workspace, user.model_key, quality=user.quality, masks_dir=tracking.store.root
    )
    for action in tracking.history:
        user.replay_on_model(fresh, action)
    for obj in tracking.objects.values():
        if obj.obj_id in fresh.objects:
            fresh.objects[obj.obj_id].name = obj.name
            fresh.objects[obj.obj_id].color = obj.color
    user.tracking, user.remote_state_stale = fresh, False
    return fresh


def _follow_run(
    user: UserSession,
    steps: Iterator[PropagationStep],
    live: LiveExports,
    notes: list[str] | None = None,
) -> Iterator[PropagationStep]:
    """Pass a run's steps on, feeding the pass beside tracking and the run's summary
    (``notes``: sentences about where the run went, filled in as it goes)."""
    started = time.perf_counter()
    run = user.last_run = TrackingRun(notes=[] if notes is None else notes)
    total = None
    try:
        for step in steps:
            live.frame_done(step.result.frame_idx)
            run.frames, total = step.done, step.total
            run.seconds = time.perf_counter() - started
            user.touch()
            yield step
    except BaseException:
        user._forget_results()
        raise
    finally:
        run.cancelled = user.cancel_event.is_set()
        log.info(
            "tracking %s after %d of %s frames in %.1f s",
            "cancelled" if run.cancelled else "ended",
            run.frames,
            "?" if total is None else total,
            time.perf_counter() - started,
        )


def replay_project(
    tracking: TrackingSession,
    project: Project,
    progress: Progress | None = None,
    apply: Callable[[TrackingSession, Action, Callable[[], None]], None] = replay,
) -> None:
    """Replay every action of ``project`` on ``tracking`` (which is empty), then give
    objects their saved names and colours. ``progress(done, total)`` counts actions and
    tracked frames; an action that cannot be replayed raises ProjectError naming it.
    ``apply(tracking, action, on_frame)`` applies one action (default: :func:`replay`)."""
    total, done = project.replay_steps(), 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    for i, action in enumerate(project.history):
        try:
            apply(tracking, action, advance)  # a tracking run: per frame
        except UserError as err:
            raise ProjectError(
                f"Step {i + 1} of the project ({action.op.replace('_', ' ')}) cannot be "
                f"replayed on this video: {as_clause(err.message)}."
            ) from None
        if action.op != "propagate":
            advance()
    for saved in project.objects:
        obj = tracking.objects[saved.obj_id]
        obj.color = tuple(saved.color)
        if obj.name != saved.name:
            tracking.rename_object(saved.obj_id, saved.name)


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
