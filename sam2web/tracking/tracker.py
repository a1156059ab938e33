"""One user's tracking session: objects, prompts, SAM2 state and results.

The session drives sam2's ``SAM2VideoPredictor`` exactly as Meta's tutorial does: every
click re-sends all clicks of that object on that frame with ``clear_old_points=True``,
propagation is ``propagate_in_video``, masks are ``logits > 0``. What it adds:

* frames come from a :class:`~sam2web.tracking.frames.LazyFrameSource` instead of being loaded all
  at once;
* results go to an on-disk :class:`~sam2web.tracking.maskstore.MaskStore`, not a dict in RAM;
* for long videos, stored model outputs that SAM2 will never read again are released while
  tracking (see :func:`sam2web.tracking.sam2state.release_outputs`), so memory stays flat;
* undo, per-frame clear, object names and colours, cancellable propagation in either
  direction over a chosen range;
* a typed history of every action (:mod:`sam2web.history`) that :func:`replay` applies
  again, so a project file or a worker process rebuilds the same state.

Nothing here imports gradio; a notebook or the CLI uses this class directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PromptError, SessionClosedError, TrackingError
from ..history import (
    Action,
    AddClick,
    AddMask,
    AddObject,
    ClearFrame,
    FillGaps,
    FindObjects,
    MergeObjects,
    Pass,
    Propagate,
    RemoveObject,
    RenameObject,
    SetBox,
    SwapObjects,
    Undo,
    UndoFix,
    decode_mask,
    encode_mask,
    identity_fixes,
)
from ..types import Box, Click, FramePrompts, FrameResult, TrackedObject, VideoInfo, color_for
from .frames import LazyFrameSource
from .maskstore import MaskStore
from .sam2state import (
    new_inference_state,
    object_score,
    release_outputs,
    tensor_bytes,
    upcast_memory,
)
from .transfer import copy_frame

log = logging.getLogger(__name__)

DIRECTIONS = ("forward", "backward", "both")


class StateReleased(RuntimeError):
    """A model step on a session whose state was released (see
    :meth:`TrackingSession.release_state`): rebuild it first."""

    def __init__(self) -> None:
        super().__init__("the SAM 2 state of this session was released; rebuild it first")


@dataclass(frozen=True)
class PropagationStep:
    """Progress of a running propagation: one tracked frame."""

    result: FrameResult
    done: int  # frames finished so far in this propagation
    total: int  # frames this propagation will track


class TrackingSession:
    """Tracking state of one user on one video.

    ``predictor`` is a sam2 ``SAM2VideoPredictor`` (shared, read-only between sessions);
    all per-user state lives here. Methods are thread-safe: model work is serialised by a
    per-session lock, while reading stored results never waits for it.
    """

    def __init__(
        self,
        predictor,
        frame_paths: list[Path],
        info: VideoInfo,
        masks_dir: Path,
        *,
        full_memory_frames: int = 300,
        autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
        frame_cache: int = 4,
    ):
        if len(frame_paths) != info.num_frames:
            raise ValueError("frame_paths and info disagree on the number of frames")
        self.predictor = predictor
        self.info = info
        self.frames = LazyFrameSource(
            frame_paths, predictor.image_size, predictor.device, cache_size=frame_cache
        )
        self.store = MaskStore(masks_dir, info.height, info.width)
        self.state = new_inference_state(predictor, self.frames, info.height, info.width)
        self.objects: dict[int, TrackedObject] = {}
        self.prompts: dict[tuple[int, int], FramePrompts] = {}  # (frame, obj_id) -> prompts
        # Frames whose stored model output was released, per object id.
        self.released: dict[int, set[int]] = {}
        self.trim = info.num_frames > full_memory_frames
        self._autocast = autocast or contextlib.nullcontext
        self._lock = threading.RLock()
        self._next_id = 1
        self.propagating = False
        self.closed = False  # see close(): no model step runs after it
        # Every action that changed SAM2's state, in order. Replaying it on the same frames
        # with the same model gives the same masks (see replay()).
        self.history: list[Action] = []

    # ------------------------------------------------------------------ objects
    def add_object(self, name: str | None = None) -> TrackedObject:
        with self._lock:
            obj_id = self._next_id
            self._next_id += 1
            obj = TrackedObject(
                obj_id, (name or "").strip() or f"object {obj_id}", color_for(obj_id)
            )
            self.objects[obj_id] = obj
            self.history.append(AddObject(obj_id, obj.name))
            return obj

    def rename_object(self, obj_id: int, name: str) -> TrackedObject:
        obj = self._object(obj_id)
        name = name.strip()
        if not name:
            raise PromptError("An object name cannot be empty; type a name.")
        obj.name = name[:80]
        self.history.append(RenameObject(obj_id, obj.name))
        return obj

    def remove_object(self, obj_id: int) -> None:
        with self._lock:
            self._object(obj_id)
            self._require_idle()
            self._forget(obj_id)
            self.history.append(RemoveObject(obj_id))

    def _forget(self, obj_id: int) -> None:
        self.predictor.remove_object(self.state, obj_id, need_output=False)
        del self.objects[obj_id]
        for key in [k for k in self.prompts if k[1] == obj_id]:
            del self.prompts[key]
        self.released.pop(obj_id, None)
        self.store.remove_object(obj_id)

    def _object(self, obj_id: int) -> TrackedObject:
        try:
            return self.objects[obj_id]
        except (KeyError, TypeError):
            raise PromptError(
                "That object does not exist (it may have been removed); pick or add an object."
            ) from None

    # ------------------------------------------------------------------ prompts
    def add_click(self, frame_idx: int, obj_id: int, click: Click) -> FrameResult:
        """Add one positive or negative click and return the frame's masks at once."""
        check_frame(self.info, frame_idx)
        self._object(obj_id)
        check_point(self.info, click.x, click.y)
        with self._lock:
            self._require_idle()
            prompts = self.prompts.setdefault((frame_idx, obj_id), FramePrompts())
            prompts.clicks.append(click)
            try:
                result = self._send_prompts(frame_idx, obj_id)
            except Exception:
                prompts.clicks.pop()
                raise
            x, y = float(click.x), float(click.y)
            self.history.append(AddClick(int(frame_idx), obj_id, x, y, bool(click.positive)))
            return result

    def set_box(self, frame_idx: int, obj_id: int, box: Box) -> FrameResult:
        """Set the object's box on this frame (SAM2 takes one box, before any clicks)."""
        check_frame(self.info, frame_idx)
        self._object(obj_id)
        box = box.normalized()
        check_point(self.info, box.x0, box.y0)
        check_point(self.info, box.x1, box.y1)
        if box.x1 - box.x0 < 2 or box.y1 - box.y0 < 2:
            raise PromptError("The box is too small; drag a box at least a few pixels wide.")
        with self._lock:
            self._require_idle()
            prompts = self.prompts.setdefault((frame_idx, obj_id), FramePrompts())
            old = prompts.box
            prompts.box = box
            try:
                result = self._send_prompts(frame_idx, obj_id)
            except Exception:
                prompts.box = old
                raise
            self.history.append(SetBox(int(frame_idx), obj_id, box.x0, box.y0, box.x1, box.y1))
            return result

    def add_mask(self, frame_idx: int, obj_id: int, mask: np.ndarray) -> FrameResult:
        """Prompt the object with a mask on this frame (sam2's ``add_new_mask``); it
        replaces the object's clicks and box there, and later clicks refine it."""
        check_frame(self.info, frame_idx)
        self._object(obj_id)
        mask = check_mask(self.info, mask)
        with self._lock:
            self._require_idle()
            old = self.prompts.get((frame_idx, obj_id))
            self.prompts[(frame_idx, obj_id)] = FramePrompts([], None, mask)
            try:
                result = self._send_prompts(frame_idx, obj_id)
            except Exception:
                self.prompts.pop((frame_idx, obj_id))
                if old is not None:
                    self.prompts[(frame_idx, obj_id)] = old
                raise
            self.history.append(AddMask(int(frame_idx), obj_id, encode_mask(mask)))
            return result

    def undo(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Remove the object's last prompt on this frame (last click, else the box, else
        the mask)."""
        check_frame(self.info, frame_idx)
        self._object(obj_id)
        with self._lock:
            self._require_idle()
            prompts = self.prompts.get((frame_idx, obj_id))
            if prompts is None or prompts.is_empty():
                raise PromptError("There is nothing to undo for this object on this frame.")
            if prompts.clicks:
                prompts.clicks.pop()
            elif prompts.box is not None:
                prompts.box = None
            else:
                prompts.mask = None
            self.history.append(Undo(int(frame_idx), obj_id))
            return self._replay(frame_idx, obj_id)

    def clear_frame(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Remove all prompts of the object on this frame."""
        check_frame(self.info, frame_idx)
        self._object(obj_id)
        with self._lock:
            self._require_idle()
            self.prompts.pop((frame_idx, obj_id), None)
            self.history.append(ClearFrame(int(frame_idx), obj_id))
            return self._replay(frame_idx, obj_id)

    def reset(self) -> None:
        """Forget every prompt, result and object (a released state is simply made anew)."""
        with self._lock:
            if self.state is None and not self.closed:
                self.state = new_inference_state(
                    self.predictor, self.frames, self.info.height, self.info.width
                )
            self._require_idle()
            self.predictor.reset_state(self.state)
            self.state["cached_features"] = {}
            self.objects.clear()
            self.prompts.clear()
            self.released.clear()
            self.store.clear()
            self._next_id = 1
            self.history.clear()

    def prompted_frames(self, obj_id: int | None = None) -> list[int]:
        return sorted(
            {
                f
                for (f, o), p in self.prompts.items()
                if not p.is_empty() and (obj_id is None or o == obj_id)
            }
        )

    def _replay(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Rebuild the object's SAM2 input on this frame from the remaining prompts, in the
        order they were given (so the decoder sees the same history it saw originally)."""
        prompts = self.prompts.get((frame_idx, obj_id))
        if obj_id not in self.state["obj_id_to_idx"]:
            self.store.drop(frame_idx, obj_id)
            return self._current(frame_idx)
        with self._autocast():
            _, obj_ids, logits = self.predictor.clear_all_prompts_in_frame(
                self.state, frame_idx, obj_id, need_output=True
            )
        if prompts is None or prompts.is_empty():
            self.prompts.pop((frame_idx, obj_id), None)
            score = object_score(self.state, frame_idx, obj_id)
            if np.isnan(score):  # no tracked output left on this frame
                self.store.drop(frame_idx, obj_id)
            else:  # SAM2 keeps the frame's previous output as a tracked frame
                idx = list(obj_ids).index(obj_id)
                mask = (logits[idx, 0] > 0.0).cpu().numpy()
                self.store.write(frame_idx, {obj_id: mask}, {obj_id: score})
            return self._current(frame_idx)
        steps: list[FramePrompts] = []
        if prompts.mask is not None:
            steps.append(FramePrompts([], None, prompts.mask))
        if prompts.box is not None:
            steps.append(FramePrompts([], prompts.box))
        for i in range(1, len(prompts.clicks) + 1):
            steps.append(FramePrompts(prompts.clicks[:i], prompts.box))
        result = None
        for step in steps:
            result = self._send(frame_idx, obj_id, step)
        assert result is not None
        return result

    def _send_prompts(self, frame_idx: int, obj_id: int) -> FrameResult:
        return self._send(frame_idx, obj_id, self.prompts[(frame_idx, obj_id)])

    def _send(self, frame_idx: int, obj_id: int, prompts: FramePrompts) -> FrameResult:
        self._retrack_if_released(frame_idx, obj_id)
        with self._autocast():
            obj_ids, logits = send_prompts(self.predictor, self.state, frame_idx, obj_id, prompts)
        idx = list(obj_ids).index(obj_id)
        mask = (logits[idx, 0] > 0.0).cpu().numpy()
        score = object_score(self.state, frame_idx, obj_id, temp=True)
        stored = self.store.write(frame_idx, {obj_id: mask}, {obj_id: score})
        return self._current(frame_idx, stored)

    def _current(self, frame_idx: int, stored: FrameResult | None = None) -> FrameResult:
        result = self.store.read(frame_idx) if stored is None else stored  # write()'s answer
        if result is None:
            return FrameResult(frame_idx, {}, {})
        keep = set(self.objects)
        return FrameResult(
            frame_idx,
            {k: v for k, v in result.masks.items() if k in keep},
            {k: v for k, v in result.scores.items() if k in keep},
        )

    def result(self, frame_idx: int) -> FrameResult | None:
        """Stored masks of every object on a frame, or None when the frame has none."""
        check_frame(self.info, frame_idx)
        result = self.store.read(frame_idx)
        return None if result is None else self._current(frame_idx)

    # ------------------------------------------------------------------ propagation
    def propagate(
        self,
        direction: str = "forward",
        start_frame: int | None = None,
        end_frame: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[PropagationStep]:
        """Track every object through the video, yielding one frame's result at a time.

        ``direction``: forward, backward or both (forward first, then backward from the same
        start). ``start_frame`` defaults to the earliest prompted frame (as in SAM2);
        ``end_frame`` limits the range (inclusive; for "both" it bounds the forward pass and
        the backward pass goes to frame 0). Setting ``cancel`` stops between frames; what
        was tracked so far is kept. The run is recorded as one :class:`Propagate` action.
        """
        with self._lock:
            passes = self._plan(direction, start_frame, end_frame)
        yield from self._track(passes, cancel)

    def _track(
        self, passes: list[Pass], cancel: threading.Event | None = None
    ) -> Iterator[PropagationStep]:
        """Run ``passes`` (their ``frames`` are the counts to track) as one recorded run."""
        with self._lock:
            self._require_idle()
            self.propagating = True
        total = sum(p.frames for p in passes)
        done = 0
        recorded: list[Pass] = []
        at = len(self.history)
        self.history.append(Propagate())
        try:
            for plan in passes:
                tracked = 0
                results = self._run_pass(plan.start, plan.frames, plan.reverse, cancel)
                for tracked, result in enumerate(results, start=1):
                    done += 1
                    self.history[at] = Propagate(
                        (*recorded, Pass(plan.start, plan.reverse, tracked))
                    )
                    yield PropagationStep(result, done, total)
                recorded.append(Pass(plan.start, plan.reverse, tracked))
                self.history[at] = Propagate(tuple(recorded))
                if cancel is not None and cancel.is_set():
                    return
        finally:
            self.propagating = False

    def replay_run(
        self, action: Propagate, cancel: threading.Event | None = None
    ) -> Iterator[PropagationStep]:
        """Track a recorded run's passes again, frame for frame, as one new recorded run;
        setting ``cancel`` stops it between frames."""
        return self._track(list(action.passes), cancel)

    def planned_frames(
        self,
        direction: str = "forward",
        start_frame: int | None = None,
        end_frame: int | None = None,
    ) -> list[int]:
        """The frames :meth:`propagate` with these arguments will track, in the order it
        tracks them (a frame tracked by both passes of "both" appears twice). Raises the
        same errors as :meth:`propagate` for arguments it would refuse."""
        with self._lock:
            return pass_frames(self._plan(direction, start_frame, end_frame))

    def _plan(self, direction: str, start_frame: int | None, end_frame: int | None) -> list[Pass]:
        if direction not in DIRECTIONS:
            raise TrackingError(f"Direction must be one of {', '.join(DIRECTIONS)}.")
        self._check_ready_to_track()
        if start_frame is None:
            start_frame = min(self.prompted_frames())
        check_frame(self.info, start_frame)
        if end_frame is not None:
            check_frame(self.info, end_frame)
        return plan_passes(direction, start_frame, end_frame, self.info.num_frames)

    def _run_pass(
        self, start: int, count: int, reverse: bool, cancel: threading.Event | None
    ) -> Iterator[FrameResult]:
        # Gradio may resume a generator on a different worker thread, so no lock or
        # autocast context is held across a yield: both are entered around each step.
        # (sam2 decorates propagate_in_video with inference_mode, which torch re-enters
        # around every step of a generator.)
        anchors = set(self.prompted_frames()) | {start}
        with self._lock, self._autocast():
            if self.closed:
                return
            # Consolidate the prompted frames' outputs (sam2 repeats this, idempotently, when
            # the generator starts) so their memory can be upcast before any frame reads it.
            self.predictor.propagate_in_video_preflight(self.state)
            upcast_memory(self.state, self.predictor.device.type)
        gen = self.predictor.propagate_in_video(
            self.state,
            start_frame_idx=start,
            max_frame_num_to_track=count - 1,
            reverse=reverse,
        )
        try:
            while True:
                with self._lock:
                    if self.closed:  # its files may be gone; stop quietly
                        return
                    with self._autocast():
                        try:
                            frame_idx, obj_ids, logits = next(gen)
                        except StopIteration:
                            return
                        upcast_memory(self.state, self.predictor.device.type, frame_idx)
                    # One copy of all masks and one of all scores, waited for at the write.
                    copy = copy_frame(self.state, frame_idx, obj_ids, logits)
                    for oid in obj_ids:
                        self.released.get(oid, set()).discard(frame_idx)
                    if self.trim:
                        for oid, frames in release_outputs(
                            self.state, frame_idx, reverse, anchors
                        ).items():
                            self.released.setdefault(oid, set()).update(frames)
                    stored = self.store.write(frame_idx, *copy.result(), behind=True)
                    result = self._current(frame_idx, stored)
                yield result
                if cancel is not None and cancel.is_set():
                    return
        finally:
            gen.close()
            self.store.flush()

    def _check_ready_to_track(self) -> None:
        if not self.objects:
            raise TrackingError("Add an object and click on it before tracking.")
        missing = [o.name for o in self.objects.values() if not self.prompted_frames(o.obj_id)]
        if missing:
            raise TrackingError(
                f"Object {missing[0]!s} has no clicks yet; click on it in a frame or remove "
                "it before tracking."
            )

    def _retrack_if_released(self, frame_idx: int, obj_id: int) -> None:
        """A prompt on a frame whose model output was released needs that output (and the
        memory before it) again: re-track from the nearest prompted frame up to it."""
        if frame_idx not in self.released.get(obj_id, set()):
            return
        obj_idx = self.state["obj_id_to_idx"][obj_id]
        tracked = self.state["frames_tracked_per_obj"][obj_idx].get(frame_idx)
        reverse = bool(tracked and tracked["reverse"])
        prompted = [
            f
            for f in self.prompted_frames()
            if (f >= frame_idx if reverse else f <= frame_idx)
            and (f, obj_id) in self.prompts
            and f != frame_idx
        ]
        if not prompted:
            prompted = [f for f in self.prompted_frames() if f != frame_idx]
        if not prompted:
            return
        anchor = min(prompted, key=lambda f: abs(f - frame_idx))
        count = abs(frame_idx - anchor) + 1
        log.info("re-tracking frames %d..%d before refining frame %d", anchor, frame_idx, frame_idx)
        for _ in self._run_pass(anchor, count, reverse, None):
            pass

    def held_bytes(self) -> dict[str, int]:
        """Bytes of tensors this session holds: model state and frame cache."""
        state = self.state or {}
        state_bytes = tensor_bytes({k: v for k, v in state.items() if k != "images"})
        return {"state": state_bytes, "frame_cache": self.frames.cached_bytes()}

    # ------------------------------------------------------------------ releasing the state
    @property
    def state_released(self) -> bool:
        """True after :meth:`release_state`, until :meth:`adopt` gives the state back."""
        return self.state is None

    def release_state(self) -> bool:
        """Drop SAM 2's inference state and the frame cache (most of the RAM a session
        holds); objects, prompts, history and the masks on disk stay. Refused (False)
        while a run or a rebuild holds the session. Every model step afterwards raises
        :class:`StateReleased` until :meth:`adopt` gives it a state rebuilt from the
        history."""
        with self._lock:
            if self.propagating or self.closed or self.state is None:
                return False
            self.state = None
            self.frames.clear_cache()
            return True

    def adopt(self, rebuilt: TrackingSession) -> None:
        """Take the model state of ``rebuilt``, a session on the same frames that replayed
        this one's history, keeping this session's mask store, names and colours: the
        state is then what it was before :meth:`release_state`."""
        with self._lock:
            if rebuilt.history != self.history:
                raise RuntimeError("the rebuilt session's history differs from this one's")
            self.state = rebuilt.state
            self.frames = rebuilt.frames
            self.prompts = rebuilt.prompts
            self.released = rebuilt.released
            self._next_id = rebuilt._next_id

    # ------------------------------------------------------------------ helpers
    def close(self) -> None:
        """End this session for good. Waits for a model step in progress (one tracked
        frame, one click) to finish; no step runs after this returns, so the session's
        frames and masks can then be removed while a propagation is suspended mid-way."""
        with self._lock, contextlib.suppress(OSError):  # a full disk: the folder goes anyway
            self.closed = True
            self.store.close()  # the masks written behind reach their files, then none

    def _require_idle(self, needs_state: bool = True) -> None:
        if self.closed:
            raise SessionClosedError()
        if needs_state and self.state is None:
            raise StateReleased()
        if self.propagating:
            raise TrackingError("Tracking is running; wait for it to finish or press Cancel first.")


# ---------------------------------------------------------------------- planning
def plan_passes(direction: str, start: int, end: int | None, num_frames: int) -> list[Pass]:
    """The passes a run in ``direction`` from ``start`` makes (see
    :meth:`TrackingSession.propagate` for what ``end`` bounds), with the frames each
    tracks."""
    last = num_frames - 1
    passes = []
    if direction in ("forward", "both"):
        stop = last if end is None or end < start else end
        if direction == "forward" or stop >= start:
            passes.append(Pass(start, False, stop - start + 1))
    if direction in ("backward", "both"):
        stop = 0 if end is None or end > start or direction == "both" else end
        if start > 0 or direction == "backward":
            passes.append(Pass(start, True, start - stop + 1))
    return [p for p in passes if p.frames > 0]


def pass_frames(passes: list[Pass]) -> list[int]:
    """The frames ``passes`` track, in the order they track them."""
    frames: list[int] = []
    for p in passes:
        step = -1 if p.reverse else 1
        frames.extend(range(p.start, p.start + step * p.frames, step))
    return frames


# ---------------------------------------------------------------------- checks
def check_frame(info: VideoInfo, frame_idx) -> None:
    """Refuse, in one sentence, a frame number that is not a frame of the video."""
    if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
        raise PromptError("The frame number must be a whole number.")
    if not 0 <= frame_idx < info.num_frames:
        raise PromptError(
            f"Frame {int(frame_idx)} does not exist; this video has frames 0 to "
            f"{info.num_frames - 1}."
        )


def check_point(info: VideoInfo, x, y) -> None:
    """Refuse, in one sentence, a click position that is missing or outside the frame."""
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise PromptError("The click has no valid position; click on the image.") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise PromptError("The click has no valid position; click on the image.")
    if not (0 <= x <= info.width and 0 <= y <= info.height):
        raise PromptError(
            f"The click at ({x:.0f}, {y:.0f}) is outside the {info.width}x"
            f"{info.height} image; click inside it."
        )


def send_prompts(predictor, state: dict, frame_idx: int, obj_id: int, prompts: FramePrompts):
    """Give sam2 the object's prompts on a frame, as Meta's tutorial does: a mask alone
    through ``add_new_mask``; clicks and box through ``add_new_points_or_box`` with
    ``clear_old_points=True``. Returns sam2's (object ids, mask logits)."""
    points = labels = None
    if prompts.clicks:
        points = np.array([[c.x, c.y] for c in prompts.clicks], dtype=np.float32)
        labels = np.array([1 if c.positive else 0 for c in prompts.clicks], dtype=np.int32)
    if prompts.box is None and points is None:
        _, obj_ids, logits = predictor.add_new_mask(state, frame_idx, obj_id, prompts.mask)
        return obj_ids, logits
    box = None
    if prompts.box is not None:
        b = prompts.box
        box = np.array([b.x0, b.y0, b.x1, b.y1], dtype=np.float32)
    _, obj_ids, logits = predictor.add_new_points_or_box(
        state,
        frame_idx,
        obj_id,
        points=points,
        labels=labels,
        box=box,
        clear_old_points=True,
    )
    return obj_ids, logits


def check_mask(info: VideoInfo, mask) -> np.ndarray:
    """A mask prompt as a bool (H, W) array of the frame size; a wrong size or an empty
    mask is refused in one sentence."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (info.height, info.width):
        raise PromptError(
            f"The mask is {mask.shape[-1]}x{mask.shape[0]} pixels but the frames are "
            f"{info.width}x{info.height}; draw it on this video's frame."
        )
    if not mask.any():
        raise PromptError("The mask is empty; paint over the object or load its labels.")
    return mask


# ---------------------------------------------------------------------- fixes
def record_fix(
    tracking: TrackingSession, action: SwapObjects | MergeObjects | UndoFix | FillGaps
) -> None:
    """Record an identity fix, its undo or the gap setting in the session's history,
    checked. Nothing SAM 2 holds changes: the fixes are applied where masks are read
    (:mod:`sam2web.analysis.identity`), so the stored masks stay as tracked."""
    if isinstance(action, (SwapObjects, MergeObjects)):
        swap = isinstance(action, SwapObjects)
        pair = (action.a, action.b) if swap else (action.target, action.source)
        if any(obj_id not in tracking.objects for obj_id in pair):
            raise PromptError(
                "That object does not exist (it may have been removed); pick or add an object."
            )
        if pair[0] == pair[1]:
            raise PromptError("Choose two different objects.")
        check_frame(tracking.info, action.frame)
    elif isinstance(action, UndoFix):
        if not identity_fixes(tracking.history):
            raise PromptError("There is no identity fix to undo.")
    elif isinstance(action, FillGaps):
        if isinstance(action.frames, bool) or not 0 <= action.frames <= 1000:
            raise PromptError("The longest gap to fill must be 0 to 1000 frames.")
    else:
        raise TypeError(f"not an identity fix: {action!r}")
    with tracking._lock:
        tracking._require_idle(needs_state=False)  # a fix changes no model state
        tracking.history.append(action)


def record_found(tracking: TrackingSession, action: FindObjects) -> None:
    """Record how the objects just added were found (no model state changes)."""
    with tracking._lock:
        tracking._require_idle()
        tracking.history.append(action)


# ---------------------------------------------------------------------- replay
def replay(
    tracking: TrackingSession, action: Action, on_frame: Callable[[], None] | None = None
) -> None:
    """Apply one recorded action to a tracking session again. A tracking run tracks its
    passes again, frame for frame (``on_frame()`` after each), and stays one action."""
    if isinstance(action, Propagate):
        for _ in tracking.replay_run(action):
            if on_frame is not None:
                on_frame()
    elif isinstance(action, AddObject):
        obj = tracking.add_object(action.name)
        if obj.obj_id != action.obj:  # ids restart at 1 after a reset; projects check order
            raise RuntimeError(f"replayed object id {obj.obj_id}, expected {action.obj}")
    elif isinstance(action, RenameObject):
        tracking.rename_object(action.obj, action.name)
    elif isinstance(action, RemoveObject):
        tracking.remove_object(action.obj)
    elif isinstance(action, AddClick):
        tracking.add_click(action.frame, action.obj, Click(action.x, action.y, action.positive))
    elif isinstance(action, SetBox):
        tracking.set_box(action.frame, action.obj, Box(action.x0, action.y0, action.x1, action.y1))
    elif isinstance(action, Undo):
        tracking.undo(action.frame, action.obj)
    elif isinstance(action, ClearFrame):
        tracking.clear_frame(action.frame, action.obj)
    elif isinstance(action, AddMask):
        try:
            mask = decode_mask(action.rle, tracking.info.height, tracking.info.width)
        except ValueError:
            raise PromptError("The stored mask does not fit this video's frame size.") from None
        tracking.add_mask(action.frame, action.obj, mask)
    elif isinstance(action, (SwapObjects, MergeObjects, UndoFix, FillGaps)):
        record_fix(tracking, action)
    elif isinstance(action, FindObjects):
        record_found(tracking, action)
    else:
        raise TypeError(f"not a recorded action: {action!r}")


def object_mark(tracking: TrackingSession) -> int:
    """What :func:`drop_objects_since` goes back to (the next new object's id)."""
    return tracking._next_id


def drop_objects_since(tracking: TrackingSession, mark: int) -> None:
    """Take back the objects added since ``mark`` as if never added (all or nothing)."""
    with tracking._lock:
        tracking._require_idle()
        new = [obj_id for obj_id in tracking.objects if obj_id >= mark]
        for obj_id in new:
            tracking._forget(obj_id)
        tracking.history[:] = [a for a in tracking.history if getattr(a, "obj", None) not in new]
        tracking._next_id = max([mark, *(obj_id + 1 for obj_id in tracking.objects)])
