"""What the page and its API receive that claims a size: zones sent as JSON and the brush's
painted layer are refused in one sentence naming the limit before anything of the size
they claim is parsed, decoded or built.

The crafted inputs run in a fresh interpreter whose address space is capped at what it has
mapped after its imports plus 256 MiB (:func:`hostile.bounded`). Recorded run, before the
brush's editor read each image's header first: a PNG layer of 80 kB holding 9000x9000
pixels was decoded by Gradio before any handler saw it and ended in ``MemoryError`` under
the cap (RGBA of it takes 324 MB).
"""

from __future__ import annotations

import ast
import io
import json

import numpy as np
import pytest
from hostile import bounded, png_of_zeros, polygon_corners

gr = pytest.importorskip("gradio")

from sam2web.ui import handlers as h  # noqa: E402
from sam2web.ui import masks_events as m  # noqa: E402
from sam2web.ui import zones_handlers as z  # noqa: E402
from tests import synth  # noqa: E402

HEADROOM_MIB = 256


def _refused(result: dict, *words: str) -> str:
    assert result["outcome"] == "Error", result  # the page's error, not MemoryError
    message = ast.literal_eval(result["message"])  # str() of a page error quotes it
    assert message.count(". ") == 0 and message.endswith("."), message  # one sentence
    for word in words:
        assert word in message, message
    assert result["rss_growth_mib"] < HEADROOM_MIB, result
    return message


# ---------------------------------------------------------------------------- zones sent
ZONES = """
from sam2web.ui import zones_handlers
TEXT = DATA.decode()
"""


def test_zones_json_longer_than_the_limit_is_refused_before_it_is_parsed():
    text = json.dumps([{"type": "polygon", "name": "p", "vertices": polygon_corners(200_000)}])
    assert len(text) > 1_000_000
    result = bounded(ZONES, "zones_handlers.set_zones(None, None, TEXT, 0)", text.encode())
    _refused(result, f"{len(text):,} characters", "1,000,000 a set of zones may take")


@pytest.fixture
def loaded(ctx, user, tmp_path):
    clip = synth.write_image_zip(tmp_path / "discs.zip", synth.make_frames(2, 120, 160))
    h.upload(ctx, user, str(clip))
    return user


def test_zones_of_too_many_corners_or_too_many_zones_are_refused_and_change_nothing(ctx, loaded):
    ok = [{"type": "rect", "name": "left", "x0": 0, "y0": 0, "x1": 80, "y1": 120}]
    z.set_zones(ctx, loaded, json.dumps(ok), 0)
    before = loaded.behaviour.setup.zones
    polygon = [{"type": "polygon", "name": "p", "vertices": polygon_corners(5_000)}]
    with pytest.raises(gr.Error) as err:
        z.set_zones(ctx, loaded, json.dumps(polygon), 0)
    assert "5,000 corners" in err.value.message and "1,000" in err.value.message
    many = [{**ok[0], "name": f"r{i}"} for i in range(33)]
    with pytest.raises(gr.Error, match="at most 32 zones"):
        z.set_zones(ctx, loaded, json.dumps(many), 0)
    assert loaded.behaviour.setup.zones == before
    z.set_zones(ctx, loaded, json.dumps(many[:32]), 0)  # the limit itself is allowed
    assert len(loaded.behaviour.setup.zones) == 32


# ---------------------------------------------------------------------------- the brush
def test_a_painted_layer_of_another_size_is_refused_and_changes_nothing(ctx, loaded):
    h.add_object(ctx, loaded, "red", 0)
    editor = m.brush_load(ctx, loaded, 0)[ctx.page.masks.editor]
    history = list(loaded.tracking.history)
    tiny = np.full((1, 1, 4), 255, np.uint8)  # would have been stretched over the frame
    with pytest.raises(gr.Error) as err:
        m.brush_apply(ctx, loaded, {**editor, "layers": [tiny]}, 0)
    assert "1x1 pixels" in err.value.message and "160x120" in err.value.message
    assert list(loaded.tracking.history) == history


EDITOR = """
import tempfile
from pathlib import Path
from gradio.data_classes import FileData
from gradio.components.image_editor import EditorData
from sam2web.ui.brush_editor import brush_editor
editor = brush_editor(1280 * 720, type="numpy", image_mode="RGBA", render=False)
PATH = Path(tempfile.mkdtemp()) / "layer.png"
PATH.write_bytes(DATA)
"""
EDITOR_BODY = """
layer = FileData(path=str(PATH), orig_name="layer.png")
_value = editor.preprocess(EditorData(background=None, layers=[layer], composite=None))
"""


def test_a_painted_layer_of_9000_pixels_square_is_refused_before_decoding():
    data = png_of_zeros(9_000, 9_000)  # 81 million pixels in 80 kB
    assert len(data) < 100_000
    _refused(bounded(EDITOR, EDITOR_BODY, data), "9000x9000", "921,600 pixels")


def test_a_painted_layer_of_the_frame_size_still_reaches_the_handler():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (160, 120)).save(buf, format="PNG")
    result = bounded(EDITOR, EDITOR_BODY + "_value = _value['layers'][0].shape", buf.getvalue())
    assert (result["outcome"], result["value"]) == ("returned", "(120, 160, 4)"), result
