"""SAM2's per-video inference state: building it, reading scores from it, and keeping its
memory bounded.

The state is the dict sam2's ``SAM2VideoPredictor.init_state`` returns; these functions
work on it directly, so :class:`~sam2web.tracking.tracker.TrackingSession` stays about prompts and
runs. Nothing here imports gradio.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

# SAM2 reads, when tracking frame t forward: every conditioning (prompted) frame, the
# non-conditioning outputs of t-1 .. t-(num_maskmem-1) and object pointers of
# t-1 .. t-(max_obj_ptrs_in_encoder-1). 16 covers both for all released SAM2 configs.
MEMORY_WINDOW = 16


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


def object_score(state: dict, frame_idx: int, obj_id: int, temp: bool = False) -> float:
    """SAM2's object score logit for this object on this frame (> 0: present); NaN when
    the state holds no output for it. ``temp`` also looks at outputs of prompts not yet
    consolidated by a propagation."""
    found = score_tensor(state, frame_idx, obj_id, temp)
    return float("nan") if found is None else float(found.float().reshape(-1)[0])


def score_tensor(
    state: dict, frame_idx: int, obj_id: int, temp: bool = False
) -> torch.Tensor | None:
    """The tensor (on the model's device) :func:`object_score` reads, or None."""
    obj_idx = state["obj_id_to_idx"][obj_id]
    dicts = []
    if temp:
        dicts.append(state["temp_output_dict_per_obj"][obj_idx])
    dicts.append(state["output_dict_per_obj"][obj_idx])
    for d in dicts:
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            out = d[key].get(frame_idx)
            if out is not None and out.get("object_score_logits") is not None:
                return out["object_score_logits"]
    return None


def release_outputs(
    state: dict, current: int, reverse: bool, anchors: set[int]
) -> dict[int, set[int]]:
    """Drop stored per-frame model outputs that SAM2 will not read again in this pass;
    returns {object id: frames released}.

    Kept: every conditioning frame (SAM2 attends to all of them), the last MEMORY_WINDOW
    frames behind the current one (memory frames and object pointers), and MEMORY_WINDOW
    frames on both sides of each prompted frame and of the pass start (a later pass in the
    other direction starts there and reads them).
    """

    def keep(frame: int) -> bool:
        behind = frame - current if reverse else current - frame
        if 0 <= behind <= MEMORY_WINDOW:
            return True
        return any(abs(frame - a) <= MEMORY_WINDOW for a in anchors)

    released: dict[int, set[int]] = {}
    for obj_idx, out in state["output_dict_per_obj"].items():
        obj_id = state["obj_idx_to_id"][obj_idx]
        non_cond = out["non_cond_frame_outputs"]
        for frame in [f for f in non_cond if not keep(f)]:
            del non_cond[frame]
            released.setdefault(obj_id, set()).add(frame)
    return released


def upcast_memory(state: dict, device_type: str, frame_idx: int | None = None) -> None:
    """Keep stored memory features in float32 when running without autocast.

    sam2 stores them as bfloat16 and relies on CUDA autocast to mix them with float32
    weights. On the CPU in float32 that works only while some float32 object pointer is
    concatenated with them; tracking an object on frames before its first prompted frame
    has none and fails with a dtype error. bfloat16 -> float32 is exact, so where sam2
    works the values it computes are unchanged. With ``frame_idx`` only that frame's
    entries are looked at (after a tracking step only they are new).
    """
    if torch.is_autocast_enabled(device_type):
        return
    for per_obj in (state["output_dict_per_obj"], state["temp_output_dict_per_obj"]):
        for out in per_obj.values():
            for outputs in out.values():
                if frame_idx is None:
                    entries = list(outputs.values())
                else:
                    entries = [outputs[frame_idx]] if frame_idx in outputs else []
                for entry in entries:
                    feats = entry.get("maskmem_features")
                    if feats is not None and feats.dtype == torch.bfloat16:
                        entry["maskmem_features"] = feats.float()
