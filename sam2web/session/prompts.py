"""Objects and prompts of the user session: adding, naming and removing objects, clicks,
boxes, undo and reset (:class:`PromptSession`), with the checks of a request's positions
and object names.

Every prompt names an object as the page shows it on that frame and goes to the tracker
object :meth:`~sam2web.session.fixes.MasksAndFixes.edit_target` gives (the identity rule,
docs/ARCHITECTURE.md "Identities"). A name belongs to the object as shown, on every frame,
so renaming needs no translation; removing an object that a fix in force involves is
refused in one sentence (:func:`sam2web.analysis.identity.check_removal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..analysis.identity import check_removal, fixes_in_force, shown_object
from ..analysis.presence import PresenceIndex
from ..analysis.tables import Calibration
from ..errors import PromptError
from ..outputs import display
from ..tracking.tracker import check_point
from ..types import Box, Click, TrackedObject
from .fixes import MasksAndFixes
from .lifecycle import Exports, TrackingRun, writes_files
from .video import VideoSession

PROMPT_MODES = ("positive", "negative", "box")


@dataclass
class PromptSession(MasksAndFixes, VideoSession):
    """Objects and prompts, on top of the video and model configuration of
    :class:`VideoSession` (object lookups are :class:`UserSession`'s)."""

    last_run: TrackingRun = field(default_factory=TrackingRun)
    calibration: Calibration = field(default_factory=Calibration)
    # Objects the page does not draw on its frames (a display setting: files draw them all).
    hidden_objects: set[int] = field(default_factory=set)
    presence: PresenceIndex = field(default_factory=PresenceIndex, repr=False)

    def view_frame(self, frame_idx: int) -> np.ndarray:
        """The frame as the page shows it (display-scaled, prompts drawn): hidden objects
        left out, the active one outlined thicker."""
        self.touch()  # looking at frames is using the session
        return display.render_frame(
            self.frame_rgb,
            self.tracking,
            self.style,
            self.check_frame(frame_idx),
            scale=self.display_scale,
            pending=self.pending_corner,
            hidden=self.hidden_objects,
            active=self.active_object,
        )

    def set_model(self, model_key: str) -> bool:
        cleared = super().set_model(model_key)
        if self.tracking is None:  # the objects went with the old model
            self.hidden_objects.clear()
        return cleared

    def drop_workspace(self) -> None:
        super().drop_workspace()
        self.hidden_objects.clear()

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
        """Name the object as the page shows it: the name follows it on every frame, before
        and after any identity fix (a fix exchanges masks, never names)."""
        self._object(obj_id)
        return self.ensure_tracking().rename_object(int(obj_id), _clean_name(name))

    def remove_object(self, obj_id: int) -> None:
        """Remove the object with its prompts and masks; one that an identity fix in force
        involves is refused in one sentence (removing it would remove the tracker object
        the fix shows as the other one)."""
        self._object(obj_id)
        tracking = self.ensure_tracking()
        check_removal(fixes_in_force(tracking.history), int(obj_id))
        self.on_model(tracking, lambda: tracking.remove_object(int(obj_id)))
        if self.active_object == obj_id:
            remaining = self.objects
            self.active_object = remaining[-1].obj_id if remaining else None
        self.hidden_objects.discard(int(obj_id))
        self.exports = Exports()

    def show_object(self, obj_id: int, shown: bool) -> TrackedObject:
        """Draw the object on the page's frames or not; the overlay video and every file
        still draw it."""
        obj = self._object(obj_id)
        if shown:
            self.hidden_objects.discard(obj.obj_id)
        else:
            self.hidden_objects.add(obj.obj_id)
        return obj

    def frames_present(self) -> dict[int, list[int]]:
        """{object: the frames it is present on}, as the identity fixes show them."""
        if self.tracking is None:
            return {}
        fixes = fixes_in_force(self.tracking.history)
        return self.presence.frames_present(self.tracking.store, fixes)

    def prompted_frames(self) -> dict[int, list[int]]:
        """{object: the frames it has a prompt on}, by the object each prompt is shown as."""
        if self.tracking is None:
            return {}
        fixes = fixes_in_force(self.tracking.history)
        prompted: dict[int, set[int]] = {}
        for frame, tracker in self.tracking.prompts:
            prompted.setdefault(shown_object(fixes, tracker, frame), set()).add(frame)
        return {obj: sorted(frames) for obj, frames in prompted.items()}

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
        target = self.edit_target(obj, frame_idx)
        if mode == "box":
            corner = self.pending_corner
            if corner is None or corner.frame != frame_idx:
                check_point(tracking.info, x, y)
                self.pending_corner = display.PendingCorner(frame_idx, x, y, obj.obj_id)
                return f"First corner of the box for {obj.name} set; click the opposite corner."
            self.pending_corner = None
            box = Box(corner.x, corner.y, x, y)
            self.on_model(tracking, lambda: tracking.set_box(frame_idx, target, box))
            return f"Box set for {obj.name} on frame {frame_idx}."
        self.pending_corner = None
        click = Click(x, y, mode == "positive")
        self.on_model(tracking, lambda: tracking.add_click(frame_idx, target, click))
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
        target = self.edit_target(obj, frame_idx)
        box = Box(x0, y0, x1, y1)
        self.on_model(tracking, lambda: tracking.set_box(frame_idx, target, box))

    def undo(self, frame_idx: int, obj_id: int | None = None) -> None:
        frame_idx = self.check_frame(frame_idx)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.pending_corner = None
        tracking = self.ensure_tracking()
        target = self.edit_target(obj, frame_idx)
        self.on_model(tracking, lambda: tracking.undo(frame_idx, target))

    def clear_frame(self, frame_idx: int, obj_id: int | None = None) -> None:
        frame_idx = self.check_frame(frame_idx)
        obj = self._object(obj_id if obj_id is not None else self.active_object)
        self.pending_corner = None
        tracking = self.ensure_tracking()
        target = self.edit_target(obj, frame_idx)
        self.on_model(tracking, lambda: tracking.clear_frame(frame_idx, target))

    @writes_files
    def reset(self) -> None:
        self.touch()
        self.forget_results()
        tracking = self.tracking
        if tracking is not None:
            self.on_model(tracking, tracking.reset)
        self.remote_state_stale = False  # nothing of the cluster's runs is left to replay
        self.active_object = None
        self.hidden_objects.clear()
        if self.workspace is not None:
            for p in self.workspace.exports_dir.iterdir():
                p.unlink(missing_ok=True)


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
