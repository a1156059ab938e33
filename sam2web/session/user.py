"""What one user does in the app, without any web framework: a facade over the stages.

:class:`UserSession` owns a user's workspace (frames, masks, exports), their
:class:`~sam2web.tracking.tracker.TrackingSession`, the active object and display options. Each
method checks its input, holds the session where needed, and delegates: to
:mod:`sam2web.tracking.tracker` for the model, :mod:`sam2web.outputs.display` for frames as the page shows
them, :mod:`sam2web.outputs.exports` for files, :mod:`sam2web.session.quality` for comparisons,
:mod:`sam2web.session.project` for project files, :mod:`sam2web.compute.zerogpu` for GPU jobs and
:mod:`sam2web.compute.remote` for tracking on a Ray cluster.
It is built from parts, each in its own module: :mod:`sam2web.session.lifecycle` keeps files
safe while the session is used from several threads and closed at any moment, and runs the
session's model work on the shared model; :mod:`sam2web.session.video` holds the video, model
and quality; :mod:`sam2web.session.fixes` masks and identity fixes;
:mod:`sam2web.session.prompts` objects and prompts; :mod:`sam2web.session.runs` where a
tracking run goes and how it is followed; :mod:`sam2web.session.finding` objects found
without clicks. This module adds tracking runs, results, zones and
projects. Every method takes and returns plain values, so the page
(``sam2web.ui``) only wires widgets to these methods, and tests drive them directly.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis.identity import fixed_view
from ..analysis.results import Results
from ..analysis.tables import Calibration, ObjectSummary, confidence_events, summarize
from ..errors import PromptError, UserError, as_clause
from ..history import Action
from ..outputs.exports import FILES
from ..outputs.render import OverlayStyle
from ..tracking.tracker import PropagationStep, TrackingSession, replay
from ..types import Progress, TrackedObject, WaitCallback
from .behaviour import (
    BehaviourOutputs,
    BehaviourSetup,
    BehaviourState,
    ExtraOutputs,
    draw_setup,
    write_behaviour,
    write_label_stacks,
)
from .finding import FindingSession
from .lifecycle import Exports, writes_files
from .project import (
    PROJECT_FILENAME,
    Project,
    ProjectError,
    build_project,
    check_source,
    model_notes,
    save_project,
    stack_notes,
)
from .projectload import load_project
from .prompts import PromptSession
from .runs import cluster_for_run, follow_run, run_steps

log = logging.getLogger(__name__)

# Analysis outputs of :meth:`UserSession.export_science`, by key (names in exports.FILES).
SCIENCE_KEYS = ("summary", "calibrated", "trajectories", "confidence", "npz", "coco")
SCIENCE_FILES = {key: FILES[key] for key in SCIENCE_KEYS}


@dataclass
class Review:
    summaries: list[ObjectSummary]  # one per object
    events: list[tuple[int, int, str, str]]  # (frame, object id, object name, lost|uncertain)


@dataclass
class UserSession(FindingSession, PromptSession):
    """One user of the app: objects and prompts, tracking runs, results, zones and
    projects. ``behaviour`` holds the zones, ruler and pair settings
    (:mod:`sam2web.session.behaviour`)."""

    behaviour: BehaviourState = field(default_factory=BehaviourState)
    # The last tracking run started in the session's own thread
    # (sam2web.session.background.BackgroundRun), which pages follow and re-attach to.
    background: object | None = field(default=None, repr=False)

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
        cluster = cluster_for_run(self, notes)
        self.cancel_event = threading.Event()
        self.forget_results()
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
        steps = run_steps(self, tracking, cluster, plan, notes, on_wait)
        yield from follow_run(self, steps, live, notes)

    def cancel(self) -> bool:
        """Ask a running propagation to stop after the current frame."""
        running = self.tracking is not None and self.tracking.propagating
        self.cancel_event.set()
        return running

    # ------------------------------------------------------------------ results
    @writes_files
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

    @writes_files
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

    @writes_files
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
            masks=fixed_view(tracking.store, tracking.history),  # what the rows measured
        )

    @writes_files
    def export_label_stacks(self) -> dict[str, Path]:
        """The masks as a uint16 label TIFF stack and a Cell Tracking Challenge zip, with
        the identity fixes in force (as every other file has them)."""
        self._results(video=False)
        tracking = self._tracked()
        ids = [o.obj_id for o in tracking.objects.values()]
        view = fixed_view(tracking.store, tracking.history)
        return write_label_stacks(view, self.info, self.calibration, self._exports_dir(), ids)

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
    @writes_files
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
