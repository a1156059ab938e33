"""Masks and identity fixes of the user session: objects started from label images, brush
corrections, swaps, merges and gap filling, and a microscopy TIFF held until the user
chooses what it shows (:class:`MasksAndFixes`).

It also holds the session's half of the one identity rule: an edit names an object as the
page shows it, and :meth:`MasksAndFixes.edit_target` (once per edit, for every edit path:
clicks, boxes, undo, clearing a frame, the brush, label images) says which of the
tracker's objects it goes to under the fixes in force
(:func:`sam2web.analysis.identity.tracker_object`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..analysis.identity import fixed_view, fixes_in_force, tracker_object
from ..errors import PromptError
from ..history import FillGaps, UndoFix, gap_limit
from ..media.tiff import StackChoiceError
from ..tracking.tracker import TrackingSession, record_fix
from ..types import Progress, TrackedObject, VideoInfo
from . import corrections
from .engine import Workspace


class MasksAndFixes:
    """The part of :class:`UserSession` that starts objects from label images, takes
    brush corrections and records identity fixes and gap filling; each method checks its
    input and delegates to :mod:`sam2web.session.corrections` and :mod:`sam2web.tracking.tracker`. It
    also keeps a microscopy TIFF that needs a choice (channel, axis) until the user makes
    it (:meth:`upload_or_hold`, :meth:`choose_stack`)."""

    # (a server-made workspace holding the file, the file, its name shown, the question)
    held_stack: tuple[Workspace, Path, str, StackChoiceError] | None = None
    held_step: int = 1  # the frame step the held TIFF was uploaded with

    def upload_or_hold(
        self,
        path: Path,
        source_name: str | None = None,
        progress: Progress | None = None,
        frame_step: int = 1,
    ) -> VideoInfo:
        """:meth:`upload`; a TIFF that needs a choice is kept (a server-side copy) so that
        :meth:`choose_stack` can open it, and its :class:`StackChoiceError` raised."""
        try:
            return self.upload(
                path, source_name=source_name, progress=progress, frame_step=frame_step
            )
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
            self.held_step = frame_step
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
                path,
                source_name=name,
                progress=progress,
                channel=channel,
                axis=axis,
                frame_step=self.held_step,
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
        ``frame_idx``, each object one unit on the shared model, all or nothing (see
        :func:`sam2web.session.corrections.start_from_labels`)."""
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        labels = corrections.read_labels(
            self.info, source, frame_idx, max_labels=self.engine.settings.max_labels, name=name
        )
        tracking = self.ensure_tracking()
        with self.busy():
            added = corrections.start_from_labels(
                tracking,
                labels,
                frame_idx,
                lambda fn: self.on_model(tracking, fn),
                lambda obj: self.edit_target(obj, frame_idx),
            )
        self.pending_corner = None
        self.active_object = added[-1].obj_id
        return added

    def paint(self, frame_idx: int, mask: np.ndarray, obj_id: int | None = None) -> None:
        """Make ``mask`` (bool, original frame size) the mask prompt on the frame of the
        object as the page shows it there: what the brush painted."""
        self.touch()
        frame_idx = self.check_frame(frame_idx)
        obj = self._object_for_click(obj_id)
        tracking = self.ensure_tracking()
        target = self.edit_target(obj, frame_idx)
        self.on_model(tracking, lambda: tracking.add_mask(frame_idx, target, mask))

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
        """The object's mask on the frame as the page shows it (identity fixes applied),
        what the brush starts from; None where it has none. An object merged into another
        there is refused in one sentence, as an edit of it is."""
        if self.tracking is None:
            return None
        frame_idx = self.check_frame(frame_idx)
        obj = self._object(obj_id)
        self.edit_target(obj, frame_idx)
        view = fixed_view(self.tracking.store, self.tracking.history)
        return view.mask(frame_idx, obj.obj_id)

    def edit_target(self, obj: TrackedObject, frame_idx: int) -> int:
        """The tracker object an edit of ``obj`` on ``frame_idx`` goes to: the one shown
        as ``obj`` there under the identity fixes in force (the one identity rule,
        :func:`sam2web.analysis.identity.tracker_object`); ``obj`` itself where no fix
        covers the frame. An object merged into another there is refused in one sentence."""
        history = self._tracked_or_prompt().history
        return tracker_object(fixes_in_force(history), obj.obj_id, frame_idx)

    def _tracked_or_prompt(self) -> TrackingSession:
        if self.tracking is None:
            raise PromptError("Upload a video and add objects first.")
        return self.tracking

    def _gap(self) -> int:
        return 0 if self.tracking is None else gap_limit(self.tracking.history)
