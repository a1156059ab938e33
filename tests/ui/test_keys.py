"""The keyboard shortcuts without a browser: the frame keys' handlers keep the slider in
the video, and every control the script presses exists on the page under that id."""

from __future__ import annotations

import re

import pytest

gr = pytest.importorskip("gradio")

from sam2web.ui import keys  # noqa: E402
from sam2web.ui.keys_events import step_frame  # noqa: E402
from sam2web.ui.layout import build_layout  # noqa: E402
from tests import synth  # noqa: E402


def test_the_frame_keys_move_the_slider_inside_the_video(ctx, user, tmp_path):
    from sam2web.ui import handlers as h

    slider = ctx.page.frame_slider
    assert step_frame(ctx, user, 0, 1) == gr.skip()  # no video yet: nothing changes
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(16, 120, 160), fps=8)
    h.upload(ctx, user, str(clip))
    cases = {(0, 1): 1, (3, 10): 13, (13, 10): 15, (15, 1): 15, (5, -10): 0, (0, -1): 0}
    for (frame, delta), expected in cases.items():
        assert step_frame(ctx, user, frame, delta) == {slider: expected}, (frame, delta)
    # Each hidden button moves by its own step.
    assert sorted(ctx.page.keys.steps) == [-10, -1, 1, 10]


def test_every_control_the_script_presses_is_on_the_page(engine):
    with gr.Blocks() as demo:
        page = build_layout(engine)
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    script_ids = set(re.findall(r'"(key-[a-z0-9-]+)"', keys.KEYS_JS))
    assert script_ids == set(keys.STEP_BUTTONS)
    assert set(keys.BUTTON_KEYS.values()) | set(keys.STEP_BUTTONS) <= ids
    # the steps a key opens before pressing a control of a closed step
    assert set(keys.STEP_OF) <= ids and {f"step-{s}" for s in keys.STEP_OF.values()} <= ids
    assert "#click-mode" in keys.KEYS_JS and page.mode.elem_id == "click-mode"
    modes = {value for _, value in page.mode.choices}
    assert set(keys.MODE_KEYS.values()) == modes
    for delta, button in page.keys.steps.items():
        assert button.visible == "hidden"  # in the page, not shown
        assert keys.STEP_BUTTONS[button.elem_id] == delta
    # The help line names every key.
    for key in ("←/→", "Shift", "**P**", "**N**", "**B**", "**Z**", "**T**", "**Esc**"):
        assert key in keys.KEYS_HELP
