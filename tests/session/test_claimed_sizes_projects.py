"""Small project files that claim huge sizes: each is refused in one sentence that names the
limit, or fitted to the video it runs on, before anything of the size it claims is decoded
or allocated (zones and painted layers sent by the page: tests/ui/test_claimed_sizes_page.py).

Every case runs in a fresh interpreter whose address space is capped at what it has mapped
after its imports plus 256 MiB (:func:`hostile.bounded`), so an allocation from a claimed
size ends in ``MemoryError`` there, and the test reports it, instead of taking the machine.
Recorded run, before the project reader counted a mask's pixels from its run-length
string instead of decoding it: the file of a few hundred bytes whose ``source`` claims
100000x100000 ended in ``MemoryError`` under the cap in ``load_project`` (its mask prompt
asks for 9.3 GiB), and so did the same file fitted to a batch video.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hostile import bounded, polygon_corners

from sam2web.history import SwapObjects, decode_mask, encode_mask
from sam2web.session.batch import fit_project
from sam2web.session.corrections import brush_mask
from sam2web.session.project import ProjectError
from sam2web.session.projectload import parse_project
from sam2web.types import VideoInfo

HEADROOM_MIB = 256
PROJECTS = """
import tempfile
from pathlib import Path
from sam2web.history import AddMask, decode_mask
from sam2web.session.batch import fit_project
from sam2web.session.behaviour import BehaviourSetup
from sam2web.session.project import check_source
from sam2web.session.projectload import load_project
from sam2web.types import VideoInfo
PATH = Path(tempfile.mkdtemp()) / "sam2web_project.json"
PATH.write_bytes(DATA)
"""
# What UserSession.apply_project does first with a project on the loaded video.
INTO_SESSION = """
project = load_project(PATH)
check_source(project, VideoInfo(1, 160, 120, 10.0, "v.mp4", "video"), None)
BehaviourSetup.from_project(project)
_value = "loaded"
"""
# What one video of a batch does (sam2web.cli.track.track_video) before its replay.
INTO_BATCH = """
plan = fit_project(load_project(PATH), VideoInfo(1, 160, 120, 10.0, "v.mp4", "video"), None)
mask = next(a for a in plan.project.history if isinstance(a, AddMask))
_value = (bool(decode_mask(mask.rle, 120, 160).all()), plan.notes)
"""


def _rle(counts: list[int]) -> str:
    """The compressed COCO run-length string of these run lengths (background first)."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


def _project(width: int, height: int, frames: int = 1, history=None, objects=None, **extra) -> dict:
    return {
        "format": "sam2web-project",
        "version": 2,
        "sam2web_version": "0.1.0",
        "sam2_version": None,
        "created": "2025-01-31T12:00:00+00:00",
        "source": {
            "name": "v.mp4",
            "sha256": None,
            "num_frames": frames,
            "width": width,
            "height": height,
            "fps": 10.0,
            "kind": "video",
        },
        "model": {
            "key": "sam2.1-tiny",
            "label": "SAM 2.1 tiny",
            "checkpoint_identity": None,
            "resolution": 1024,
            "corrections": "keep",
            "bf16": None,
            "device": None,
        },
        "calibration": {"pixels_per_unit": None, "unit": "px", "fps": None},
        "objects": [{"id": 1, "name": "a", "color": [230, 25, 75]}] if objects is None else objects,
        "history": [{"op": "add_object", "obj": 1, "name": "a"}] if history is None else history,
        **extra,
    }


def _with_mask(width: int, height: int, counts: list[int]) -> bytes:
    history = [
        {"op": "add_object", "obj": 1, "name": "a"},
        {"op": "mask", "frame": 0, "obj": 1, "rle": _rle(counts)},
    ]
    return json.dumps(_project(width, height, history=history)).encode()


def _refused(result: dict, *words: str) -> str:
    assert result["outcome"].endswith("Error") and result["outcome"] != "MemoryError", result
    message = result["message"]
    assert message.count(". ") == 0 and message.endswith("."), message  # one sentence
    for word in words:
        assert word in message, message
    assert result["rss_growth_mib"] < HEADROOM_MIB, result
    return message


def _run(data: bytes, body: str) -> dict:
    return bounded(PROJECTS, body, data, HEADROOM_MIB)


def test_the_rle_helper_writes_what_sam2web_writes():
    mask = np.zeros((7, 5), bool)
    mask[2:5, 1:4] = True
    runs = [9, 3, 4, 3, 4, 3, 9]  # column after column
    assert _rle(runs) == encode_mask(mask)


def test_a_mask_of_ten_billion_pixels_is_compared_with_the_loaded_video_first():
    data = _with_mask(100_000, 100_000, [10**10])
    assert len(data) < 1000
    _refused(_run(data, INTO_SESSION), "100000x100000", "160x120")


def test_a_mask_claiming_more_pixels_than_its_source_is_refused_when_read():
    data = _with_mask(160, 120, [10**12])
    _refused(_run(data, INTO_SESSION), "mask of history step 2", "160x120 pixels")


def test_a_mask_claiming_ten_billion_pixels_is_fitted_to_a_batch_video_at_its_size():
    """A batch scales a project made on larger frames of the same shape: the mask comes out
    at the video's own size, without being made at the size the project claims."""
    data = _with_mask(100_000, 75_000, [0, 7_500_000_000])  # all foreground, 4:3
    result = _run(data, INTO_BATCH)
    assert result["outcome"] == "returned", result
    assert result["value"].startswith("(True, ["), result
    assert "scaled by 0.0016" in result["value"], result
    assert result["rss_growth_mib"] < HEADROOM_MIB, result


def test_a_batch_video_of_another_shape_is_refused_before_a_mask_is_decoded():
    data = _with_mask(100_000, 100_000, [10**10])
    _refused(_run(data, INTO_BATCH), "100000x100000", "160x120", "another shape")


@pytest.mark.parametrize(
    "claims, extra, words",
    [
        (
            "1,001 objects",
            {"objects": [{}] * 1001},
            ("1,001 objects", "more than 1,000"),
        ),
        (
            "100,001 history steps",
            {"history": [{}] * 100_001},
            ("100,001 steps", "more than 100,000"),
        ),
        (
            "an object name of 10,000 characters",
            {"objects": [{"id": 1, "name": "a" * 10_000, "color": [1, 2, 3]}]},
            ("longer than 80 characters",),
        ),
        (
            "a polygon zone of 20,000 corners",
            {"zones": [{"type": "polygon", "name": "p", "vertices": polygon_corners(20_000)}]},
            ("20,000 corners", "1,000"),
        ),
        (
            "200 zones",
            {
                "zones": [
                    {"type": "rect", "name": f"r{i}", "x0": 0, "y0": 0, "x1": 9, "y1": 9}
                    for i in range(200)
                ]
            },
            ("at most 32 zones",),
        ),
        (
            "a source of 20,000,000 frames",
            {"source": {**_project(160, 120)["source"], "num_frames": 20_000_000}},
            ("20000000", "10000000"),
        ),
    ],
)
def test_project_counts_beyond_the_read_limits_are_refused(claims, extra, words):
    data = json.dumps({**_project(160, 120), **extra}).encode()
    assert len(data) < 1_000_000, claims
    _refused(_run(data, INTO_SESSION), *words)


# ---------------------------------------------------------------------------- batches
def test_a_batch_refuses_a_video_too_short_for_an_identity_fix_up_front():
    """A swap beyond the video's last frame is refused before anything is tracked, in one
    line naming the frame and the video's length (it used to fail only after tracking)."""
    history = [
        {"op": "add_object", "obj": 1, "name": "a"},
        {"op": "add_object", "obj": 2, "name": "b"},
        {"op": "click", "frame": 0, "obj": 1, "x": 10.0, "y": 10.0, "positive": True},
        {"op": "click", "frame": 0, "obj": 2, "x": 50.0, "y": 50.0, "positive": True},
        {"op": "propagate", "passes": [{"start": 0, "reverse": False, "frames": 8}]},
        {"op": "swap", "a": 1, "b": 2, "frame": 6},
    ]
    objects = [
        {"id": 1, "name": "a", "color": [1, 2, 3]},
        {"id": 2, "name": "b", "color": [3, 2, 1]},
    ]
    project = parse_project(_project(160, 120, 8, history, objects))
    assert isinstance(project.history[-1], SwapObjects)
    with pytest.raises(ProjectError) as err:
        fit_project(project, VideoInfo(5, 160, 120, 10.0, "short.mp4", "video"), None)
    message = err.value.message
    # Frames numbered from 0, as on the page: the fix is on frame 6, which a video of 7 holds.
    assert "from frame 6" in message and "only 5 frames (0 to 4)" in message, message
    assert "at least 7 frames" in message, message
    assert message.count(". ") == 0, message
    history[-1] = {"op": "merge", "target": 1, "source": 2, "frame": 6}
    merged = parse_project(_project(160, 120, 8, history, objects))
    with pytest.raises(ProjectError, match="from frame 6"):
        fit_project(merged, VideoInfo(5, 160, 120, 10.0, "short.mp4", "video"), None)
    assert fit_project(merged, VideoInfo(7, 160, 120, 10.0, "long.mp4", "video"), None)


# ---------------------------------------------------------------------------- the brush
def test_a_painted_layer_must_have_the_frame_size():
    """The brush paints on the frame at its own size: a layer of another size is refused
    in one sentence instead of being stretched over the frame."""
    with pytest.raises(Exception) as err:
        brush_mask(np.zeros((1, 1, 4), np.uint8), 160, 120)
    assert "1x1" in str(err.value) and "160x120" in str(err.value)
    layer = np.zeros((120, 160, 4), np.uint8)
    layer[10:20, 30:40, 3] = 255
    mask = brush_mask(layer, 160, 120)
    assert mask.sum() == 100 and mask[15, 35]


def test_a_mask_prompt_decodes_only_at_the_size_it_covers():
    mask = np.zeros((120, 160), bool)
    mask[30:50, 40:90] = True
    rle = encode_mask(mask)
    assert np.array_equal(decode_mask(rle, 120, 160), mask)
    with pytest.raises(ValueError):
        decode_mask(rle, 100_000, 100_000)
    with pytest.raises(ValueError):  # runs of no pixels after the first: not sam2web's
        decode_mask(_rle([19_200]) + "0" * 1000, 120, 160)
