"""A stand-in for sam2's video predictor whose masks follow the prompts, so that objects
differ and a mistake of identity shows: what it answers is known by construction."""

from __future__ import annotations

import numpy as np
import torch

HEIGHT, WIDTH = 48, 64  # the helpers' default frame size (the double answers in the video's)
DISC_RADIUS = 6  # the double's mask around the last positive click
HOLE_RADIUS = 3  # what a negative click carves


def disc(cx: float, cy: float, r: float, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """The pixels whose centre lies within ``r`` of (cx, cy), in a frame of ``shape``."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` moved by (dx, dy) pixels; what leaves the frame is lost."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def velocity(obj_id: int) -> tuple[int, int]:
    """The double's per-object motion in pixels per frame (objects move differently)."""
    return ((obj_id * 2) % 5) - 2, ((obj_id * 3) % 5) - 2


def points_mask(points, labels, box, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """The double's answer to clicks and a box: the box filled, a disc around the last
    positive click, a hole around every negative click."""
    mask = np.zeros(shape, bool)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        mask |= (xx + 0.5 >= x0) & (xx + 0.5 <= x1) & (yy + 0.5 >= y0) & (yy + 0.5 <= y1)
    if points is not None:
        positive = [p for p, lab in zip(points, labels, strict=True) if lab == 1]
        if positive:
            mask |= disc(float(positive[-1][0]), float(positive[-1][1]), DISC_RADIUS, shape)
        for p, lab in zip(points, labels, strict=True):
            if lab == 0:
                mask &= ~disc(float(p[0]), float(p[1]), HOLE_RADIUS, shape)
    return mask


def frame_shape(state) -> tuple[int, int]:
    """The video's frame size (height, width) in an inference state."""
    return int(state["video_height"]), int(state["video_width"])


class PredictorDouble:
    """Stands in for sam2's ``SAM2VideoPredictor`` on the calls the tracking session
    makes, on the same inference-state dict (object indices, output dicts, tracked
    frames). A prompt's output is :func:`points_mask` or the mask itself; tracking gives
    each object, on a frame without its own input, the mask of its nearest input frame
    (the earlier one on a tie) moved by :func:`velocity` per frame. Scores are +4 for a
    non-empty mask, -4 for an empty one."""

    def __init__(self, image_size: int = 256):
        self.image_size = image_size
        self.device = torch.device("cpu")

    # state ------------------------------------------------------------------------
    def _idx(self, state, obj_id: int) -> int:
        idx = state["obj_id_to_idx"].get(obj_id)
        if idx is None:
            idx = len(state["obj_id_to_idx"])
            state["obj_id_to_idx"][obj_id] = idx
            state["obj_idx_to_id"][idx] = obj_id
            state["obj_ids"] = list(state["obj_id_to_idx"])
            state["point_inputs_per_obj"][idx] = {}
            state["mask_inputs_per_obj"][idx] = {}
            for key in ("output_dict_per_obj", "temp_output_dict_per_obj"):
                state[key][idx] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
            state["frames_tracked_per_obj"][idx] = {}
        return idx

    @staticmethod
    def _out(mask: np.ndarray) -> dict:
        score = 4.0 if mask.any() else -4.0
        return {"mask": mask, "object_score_logits": torch.tensor([[score]])}

    @staticmethod
    def _current(state, idx: int, frame: int) -> dict | None:
        for key in ("temp_output_dict_per_obj", "output_dict_per_obj"):
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
                out = state[key][idx][kind].get(frame)
                if out is not None:
                    return out
        return None

    def _logits(self, state, frame: int):
        masks = []
        for idx in range(len(state["obj_ids"])):
            out = self._current(state, idx, frame)
            masks.append(np.zeros(frame_shape(state), bool) if out is None else out["mask"])
        empty = np.zeros((0, 1, *frame_shape(state)), bool)
        stack = np.stack(masks)[:, None] if masks else empty
        return torch.from_numpy(np.where(stack, 10.0, -10.0).astype(np.float32))

    def _prompted(self, state, idx: int, frame: int, mask: np.ndarray, inputs: str):
        other = (
            "mask_inputs_per_obj" if inputs == "point_inputs_per_obj" else "point_inputs_per_obj"
        )
        state[inputs][idx][frame] = mask
        state[other][idx].pop(frame, None)
        state["temp_output_dict_per_obj"][idx]["cond_frame_outputs"][frame] = self._out(mask)
        return frame, list(state["obj_ids"]), self._logits(state, frame)

    # prompts ------------------------------------------------------------------------
    def add_new_points_or_box(
        self, state, frame_idx, obj_id, points=None, labels=None, box=None, **_
    ):
        idx = self._idx(state, obj_id)
        mask = points_mask(points, labels, box, frame_shape(state))
        return self._prompted(state, idx, frame_idx, mask, "point_inputs_per_obj")

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        idx = self._idx(state, obj_id)
        mask = np.asarray(mask, bool).copy()
        return self._prompted(state, idx, frame_idx, mask, "mask_inputs_per_obj")

    def clear_all_prompts_in_frame(self, state, frame_idx, obj_id, need_output=True):
        idx = state["obj_id_to_idx"][obj_id]
        state["point_inputs_per_obj"][idx].pop(frame_idx, None)
        state["mask_inputs_per_obj"][idx].pop(frame_idx, None)
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            state["temp_output_dict_per_obj"][idx][kind].pop(frame_idx, None)
        outputs = state["output_dict_per_obj"][idx]
        out = outputs["cond_frame_outputs"].pop(frame_idx, None)
        if out is not None:  # as sam2: downgraded to a tracked frame's output
            outputs["non_cond_frame_outputs"][frame_idx] = out
            state["frames_tracked_per_obj"][idx].pop(frame_idx, None)
        if need_output:
            return frame_idx, list(state["obj_ids"]), self._logits(state, frame_idx)
        return None

    def remove_object(self, state, obj_id, need_output=True, strict=False):
        old = state["obj_id_to_idx"].pop(obj_id, None)
        if old is None:
            return
        keys = (
            "point_inputs_per_obj",
            "mask_inputs_per_obj",
            "output_dict_per_obj",
            "temp_output_dict_per_obj",
            "frames_tracked_per_obj",
        )
        kept = [i for i in sorted(state["obj_idx_to_id"]) if i != old]
        for key in keys:
            state[key] = {new: state[key][i] for new, i in enumerate(kept)}
        ids = [state["obj_idx_to_id"][i] for i in kept]
        state["obj_id_to_idx"].clear()
        state["obj_idx_to_id"].clear()
        for new, oid in enumerate(ids):
            state["obj_id_to_idx"][oid] = new
            state["obj_idx_to_id"][new] = oid
        state["obj_ids"] = ids

    def reset_state(self, state):
        for key in (
            "point_inputs_per_obj",
            "mask_inputs_per_obj",
            "output_dict_per_obj",
            "temp_output_dict_per_obj",
            "frames_tracked_per_obj",
        ):
            state[key].clear()
        state["obj_id_to_idx"].clear()
        state["obj_idx_to_id"].clear()
        state["obj_ids"] = []

    # tracking ------------------------------------------------------------------------
    def propagate_in_video_preflight(self, state):
        for idx in range(len(state["obj_ids"])):
            if not state["point_inputs_per_obj"][idx] and not state["mask_inputs_per_obj"][idx]:
                raise RuntimeError(f"no input for object id {state['obj_idx_to_id'][idx]}")
            temp = state["temp_output_dict_per_obj"][idx]
            outputs = state["output_dict_per_obj"][idx]
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
                outputs["cond_frame_outputs"].update(temp[kind])
                temp[kind].clear()
            for frame in outputs["cond_frame_outputs"]:
                outputs["non_cond_frame_outputs"].pop(frame, None)

    def _tracked_mask(self, state, idx: int, frame: int) -> np.ndarray:
        inputs = {**state["point_inputs_per_obj"][idx], **state["mask_inputs_per_obj"][idx]}
        if frame in inputs:
            return inputs[frame]
        nearest = min(inputs, key=lambda f: (abs(f - frame), f))
        vx, vy = velocity(state["obj_idx_to_id"][idx])
        steps = frame - nearest
        return shifted(inputs[nearest], vx * steps, vy * steps)

    def propagate_in_video(
        self, state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False
    ):
        self.propagate_in_video_preflight(state)
        n = state["num_frames"]
        count = n if max_frame_num_to_track is None else max_frame_num_to_track + 1
        step = -1 if reverse else 1
        end = max(-1, start_frame_idx - count) if reverse else min(n, start_frame_idx + count)
        for frame in range(start_frame_idx, end, step):
            for idx in range(len(state["obj_ids"])):
                outputs = state["output_dict_per_obj"][idx]
                mask = self._tracked_mask(state, idx, frame)
                if frame in outputs["cond_frame_outputs"]:
                    outputs["cond_frame_outputs"][frame] = self._out(mask)
                else:
                    outputs["non_cond_frame_outputs"][frame] = self._out(mask)
                    state["frames_tracked_per_obj"][idx][frame] = {"reverse": reverse}
            yield frame, list(state["obj_ids"]), self._logits_tracked(state, frame)

    def _logits_tracked(self, state, frame: int):
        masks = [self._current(state, idx, frame)["mask"] for idx in range(len(state["obj_ids"]))]
        stack = np.stack(masks)[:, None]
        return torch.from_numpy(np.where(stack, 10.0, -10.0).astype(np.float32))


def build_double(spec, ckpt_path, *, device, image_size=1024, corrections="keep", compile="off"):
    return PredictorDouble(image_size)
