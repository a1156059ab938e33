"""One user's tracking session: objects, prompts, SAM2 state and results.

The session drives sam2's ``SAM2VideoPredictor`` exactly as Meta's tutorial does: every
click re-sends all clicks of that object on that frame with ``clear_old_points=True``,
propagation is ``propagate_in_video``, masks are ``logits > 0``. What it adds:

* frames come from a :class:`~sam2web.frames.LazyFrameSource` instead of being loaded all
  at once;
* results go to an on-disk :class:`~sam2web.maskstore.MaskStore`, not a dict in RAM;
* for long videos, stored model outputs that SAM2 will never read again are released while
  tracking (see :meth:`TrackingSession._release_outputs`), so memory stays flat;
* undo, per-frame clear, object names and colours, cancellable propagation in either
  direction over a chosen range.

Nothing here imports gradio; a notebook or the CLI uses this class directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import PromptError, SessionClosedError, TrackingError
from .frames import LazyFrameSource
from .maskstore import MaskStore
from .render import color_for
from .types import Box, Click, FramePrompts, FrameResult, TrackedObject, VideoInfo

log = logging.getLogger(__name__)

# SAM2 reads, when tracking frame t forward: every conditioning (prompted) frame, the
# non-conditioning outputs of t-1 .. t-(num_maskmem-1) and object pointers of
# t-1 .. t-(max_obj_ptrs_in_encoder-1). 16 covers both for all released SAM2 configs.
MEMORY_WINDOW = 16

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class PropagationStep:
    """Progress of a running propagation: one tracked frame."""

    result: FrameResult
    done: int  # frames finished so far in this propagation
    total: int  # frames this propagation will track


def new_inference_state(predictor, images, video_height: int, video_width: int) -> dict:
    """The dict ``predictor.init_state`` builds, with ``images`` supplied by the caller.

    Mirrors sam2 1.1.0's ``init_state`` field for field (a test compares the keys), except
    that no frame is loaded and no image feature is computed here.
    """
    device = predictor.device
    return {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": video_height,
        "video_width": video_width,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def tensor_bytes(obj) -> int:
    """Bytes held by all tensors reachable through dicts, lists and tuples in ``obj``
    (each storage counted once)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            key = storage.data_ptr()
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


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
        # Every action that changed SAM2's state, in order, as plain dicts. Replaying it on
        # the same frames with the same model gives the same masks (see sam2web.project).
        self.history: list[dict] = []

    # ------------------------------------------------------------------ objects
    def add_object(self, name: str | None = None) -> TrackedObject:
        with self._lock:
            obj_id = self._next_id
            self._next_id += 1
            obj = TrackedObject(
                obj_id, (name or "").strip() or f"object {obj_id}", color_for(obj_id)
            )
            self.objects[obj_id] = obj
            self.history.append({"op": "add_object", "obj": obj_id, "name": obj.name})
            return obj

    def rename_object(self, obj_id: int, name: str) -> TrackedObject:
        obj = self._object(obj_id)
        name = name.strip()
        if not name:
            raise PromptError("An object name cannot be empty; type a name.")
        obj.name = name[:80]
        self.history.append({"op": "rename_object", "obj": obj_id, "name": obj.name})
        return obj

    def remove_object(self, obj_id: int) -> None:
        with self._lock:
            self._object(obj_id)
            self._require_idle()
            self.predictor.remove_object(self.state, obj_id, need_output=False)
            del self.objects[obj_id]
            for key in [k for k in self.prompts if k[1] == obj_id]:
                del self.prompts[key]
            self.released.pop(obj_id, None)
            self.store.remove_object(obj_id)
            self.history.append({"op": "remove_object", "obj": obj_id})

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
        self._check_frame(frame_idx)
        self._object(obj_id)
        self._check_point(click.x, click.y)
        with self._lock:
            self._require_idle()
            prompts = self.prompts.setdefault((frame_idx, obj_id), FramePrompts())
            prompts.clicks.append(click)
            try:
                result = self._send_prompts(frame_idx, obj_id)
            except Exception:
                prompts.clicks.pop()
                raise
            self.history.append(
                {
                    "op": "click",
                    "frame": int(frame_idx),
                    "obj": obj_id,
                    "x": float(click.x),
                    "y": float(click.y),
                    "positive": bool(click.positive),
                }
            )
            return result

    def set_box(self, frame_idx: int, obj_id: int, box: Box) -> FrameResult:
        """Set the object's box on this frame (SAM2 takes one box, before any clicks)."""
        self._check_frame(frame_idx)
        self._object(obj_id)
        box = box.normalized()
        self._check_point(box.x0, box.y0)
        self._check_point(box.x1, box.y1)
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
            self.history.append(
                {
                    "op": "box",
                    "frame": int(frame_idx),
                    "obj": obj_id,
                    "x0": box.x0,
                    "y0": box.y0,
                    "x1": box.x1,
                    "y1": box.y1,
                }
            )
            return result

    def undo(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Remove the object's last prompt on this frame (last click, else the box)."""
        self._check_frame(frame_idx)
        self._object(obj_id)
        with self._lock:
            self._require_idle()
            prompts = self.prompts.get((frame_idx, obj_id))
            if prompts is None or prompts.is_empty():
                raise PromptError("There is nothing to undo for this object on this frame.")
            if prompts.clicks:
                prompts.clicks.pop()
            else:
                prompts.box = None
            self.history.append({"op": "undo", "frame": int(frame_idx), "obj": obj_id})
            return self._replay(frame_idx, obj_id)

    def clear_frame(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Remove all prompts of the object on this frame."""
        self._check_frame(frame_idx)
        self._object(obj_id)
        with self._lock:
            self._require_idle()
            self.prompts.pop((frame_idx, obj_id), None)
            self.history.append({"op": "clear", "frame": int(frame_idx), "obj": obj_id})
            return self._replay(frame_idx, obj_id)

    def reset(self) -> None:
        """Forget every prompt, result and object."""
        with self._lock:
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
            score = self._score(frame_idx, obj_id)
            if np.isnan(score):  # no tracked output left on this frame
                self.store.drop(frame_idx, obj_id)
            else:  # SAM2 keeps the frame's previous output as a tracked frame
                idx = list(obj_ids).index(obj_id)
                mask = (logits[idx, 0] > 0.0).cpu().numpy()
                self.store.write(frame_idx, {obj_id: mask}, {obj_id: score})
            return self._current(frame_idx)
        steps: list[FramePrompts] = []
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
        points = labels = None
        if prompts.clicks:
            points = np.array([[c.x, c.y] for c in prompts.clicks], dtype=np.float32)
            labels = np.array([1 if c.positive else 0 for c in prompts.clicks], dtype=np.int32)
        box = None
        if prompts.box is not None:
            b = prompts.box
            box = np.array([b.x0, b.y0, b.x1, b.y1], dtype=np.float32)
        with self._autocast():
            _, obj_ids, logits = self.predictor.add_new_points_or_box(
                self.state,
                frame_idx,
                obj_id,
                points=points,
                labels=labels,
                box=box,
                clear_old_points=True,
            )
        idx = list(obj_ids).index(obj_id)
        mask = (logits[idx, 0] > 0.0).cpu().numpy()
        score = self._score(frame_idx, obj_id, temp=True)
        self.store.write(frame_idx, {obj_id: mask}, {obj_id: score})
        return self._current(frame_idx)

    def _current(self, frame_idx: int) -> FrameResult:
        result = self.store.read(frame_idx)
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
        self._check_frame(frame_idx)
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
        was tracked so far is kept.
        """
        with self._lock:
            self._require_idle()
            start_frame, passes = self._plan(direction, start_frame, end_frame)
            total = sum(n for _, n in passes)
            self.propagating = True
        done = 0
        record = {"op": "propagate", "passes": []}
        self.history.append(record)
        try:
            for reverse, count in passes:
                record["passes"].append({"start": start_frame, "reverse": reverse, "frames": 0})
                for tracked, result in enumerate(
                    self._run_pass(start_frame, count, reverse, cancel), start=1
                ):
                    done += 1
                    record["passes"][-1]["frames"] = tracked
                    yield PropagationStep(result, done, total)
                if cancel is not None and cancel.is_set():
                    return
        finally:
            self.propagating = False

    def replay_pass(self, start_frame: int, reverse: bool, frames: int) -> Iterator[FrameResult]:
        """Run one recorded propagation pass again (``frames`` frames from ``start_frame``)."""
        with self._lock:
            self._require_idle()
            self._check_frame(start_frame)
            self.propagating = True
        record = {
            "op": "propagate",
            "passes": [{"start": start_frame, "reverse": reverse, "frames": 0}],
        }
        self.history.append(record)
        try:
            for result in self._run_pass(start_frame, frames, reverse, None):
                record["passes"][0]["frames"] += 1
                yield result
        finally:
            self.propagating = False

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
            start, passes = self._plan(direction, start_frame, end_frame)
        frames: list[int] = []
        for reverse, count in passes:
            step = -1 if reverse else 1
            frames.extend(range(start, start + step * count, step))
        return frames

    def _plan(
        self, direction: str, start_frame: int | None, end_frame: int | None
    ) -> tuple[int, list[tuple[bool, int]]]:
        if direction not in DIRECTIONS:
            raise TrackingError(f"Direction must be one of {', '.join(DIRECTIONS)}.")
        self._check_ready_to_track()
        if start_frame is None:
            start_frame = min(self.prompted_frames())
        self._check_frame(start_frame)
        if end_frame is not None:
            self._check_frame(end_frame)
        return start_frame, self._passes(direction, start_frame, end_frame)

    def _passes(self, direction: str, start: int, end: int | None) -> list[tuple[bool, int]]:
        last = self.info.num_frames - 1
        passes = []
        if direction in ("forward", "both"):
            stop = last if end is None or end < start else end
            if direction == "forward" or stop >= start:
                passes.append((False, stop - start + 1))
        if direction in ("backward", "both"):
            stop = 0 if end is None or end > start or direction == "both" else end
            if start > 0 or direction == "backward":
                passes.append((True, start - stop + 1))
        return [p for p in passes if p[1] > 0]

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
            self._upcast_memory()
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
                        self._upcast_memory(frame_idx)
                    masks = {
                        oid: (logits[i, 0] > 0.0).cpu().numpy() for i, oid in enumerate(obj_ids)
                    }
                    scores = {oid: self._score(frame_idx, oid) for oid in obj_ids}
                    self.store.write(frame_idx, masks, scores)
                    for oid in obj_ids:
                        self.released.get(oid, set()).discard(frame_idx)
                    if self.trim:
                        self._release_outputs(frame_idx, reverse, anchors)
                    result = self._current(frame_idx)
                yield result
                if cancel is not None and cancel.is_set():
                    return
        finally:
            gen.close()

    def _check_ready_to_track(self) -> None:
        if not self.objects:
            raise TrackingError("Add an object and click on it before tracking.")
        missing = [o.name for o in self.objects.values() if not self.prompted_frames(o.obj_id)]
        if missing:
            raise TrackingError(
                f"Object {missing[0]!s} has no clicks yet; click on it in a frame or remove "
                "it before tracking."
            )

    # ------------------------------------------------------------------ memory bounds
    def _release_outputs(self, current: int, reverse: bool, anchors: set[int]) -> None:
        """Drop stored per-frame model outputs that SAM2 will not read again in this pass.

        Kept: every conditioning frame (SAM2 attends to all of them), the last
        MEMORY_WINDOW frames behind the current one (memory frames and object pointers),
        and MEMORY_WINDOW frames on both sides of each prompted frame and of the pass start
        (a later pass in the other direction starts there and reads them).
        """

        def keep(frame: int) -> bool:
            behind = frame - current if reverse else current - frame
            if 0 <= behind <= MEMORY_WINDOW:
                return True
            return any(abs(frame - a) <= MEMORY_WINDOW for a in anchors)

        for obj_idx, out in self.state["output_dict_per_obj"].items():
            obj_id = self.state["obj_idx_to_id"][obj_idx]
            non_cond = out["non_cond_frame_outputs"]
            for frame in [f for f in non_cond if not keep(f)]:
                del non_cond[frame]
                self.released.setdefault(obj_id, set()).add(frame)

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

    def _upcast_memory(self, frame_idx: int | None = None) -> None:
        """Keep stored memory features in float32 when running without autocast.

        sam2 stores them as bfloat16 and relies on CUDA autocast to mix them with float32
        weights. On the CPU in float32 that works only while some float32 object pointer is
        concatenated with them; tracking an object on frames before its first prompted frame
        has none and fails with a dtype error. bfloat16 -> float32 is exact, so where sam2
        works the values it computes are unchanged.
        """
        device_type = self.predictor.device.type
        if torch.is_autocast_enabled(device_type):
            return
        for per_obj in (self.state["output_dict_per_obj"], self.state["temp_output_dict_per_obj"]):
            for out in per_obj.values():
                for outputs in out.values():
                    # After a tracking step only that frame's entries are new.
                    entries = (
                        outputs.values()
                        if frame_idx is None
                        else [outputs[frame_idx]]
                        if frame_idx in outputs
                        else []
                    )
                    for entry in entries:
                        feats = entry.get("maskmem_features")
                        if feats is not None and feats.dtype == torch.bfloat16:
                            entry["maskmem_features"] = feats.float()

    def held_bytes(self) -> dict[str, int]:
        """Bytes of tensors this session holds: model state and frame cache."""
        state_bytes = tensor_bytes({k: v for k, v in self.state.items() if k != "images"})
        return {"state": state_bytes, "frame_cache": self.frames.cached_bytes()}

    # ------------------------------------------------------------------ helpers
    def _score(self, frame_idx: int, obj_id: int, temp: bool = False) -> float:
        """SAM2's object score logit for this object on this frame (> 0: present)."""
        obj_idx = self.state["obj_id_to_idx"][obj_id]
        dicts = []
        if temp:
            dicts.append(self.state["temp_output_dict_per_obj"][obj_idx])
        dicts.append(self.state["output_dict_per_obj"][obj_idx])
        for d in dicts:
            for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
                out = d[key].get(frame_idx)
                if out is not None and out.get("object_score_logits") is not None:
                    return float(out["object_score_logits"].float().reshape(-1)[0])
        return float("nan")

    def _check_frame(self, frame_idx) -> None:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise PromptError("The frame number must be a whole number.")
        if not 0 <= frame_idx < self.info.num_frames:
            raise PromptError(
                f"Frame {int(frame_idx)} does not exist; this video has frames 0 to "
                f"{self.info.num_frames - 1}."
            )

    def _check_point(self, x, y) -> None:
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise PromptError("The click has no valid position; click on the image.") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise PromptError("The click has no valid position; click on the image.")
        if not (0 <= x <= self.info.width and 0 <= y <= self.info.height):
            raise PromptError(
                f"The click at ({x:.0f}, {y:.0f}) is outside the {self.info.width}x"
                f"{self.info.height} image; click inside it."
            )

    def close(self) -> None:
        """End this session for good. Waits for a model step in progress (one tracked
        frame, one click) to finish; no step runs after this returns, so the session's
        frames and masks can then be removed while a propagation is suspended mid-way."""
        with self._lock:
            self.closed = True

    def _require_idle(self) -> None:
        if self.closed:
            raise SessionClosedError()
        if self.propagating:
            raise TrackingError("Tracking is running; wait for it to finish or press Cancel first.")
