"""The "Find objects" panel's handlers without a server: proposals drawn over the frame,
accept all or the numbers picked, and a refusal as one sentence."""

from __future__ import annotations

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from sam2web.ui import finders_events as f  # noqa: E402
from sam2web.ui import handlers as h  # noqa: E402
from tests import synth  # noqa: E402

H, W, T = 120, 160, 12


def _clip(tmp_path):
    shapes = (
        synth.Shape(tuple((20 + 6 * t, 40.0) for t in range(T)), 9, 9, (230, 60, 40)),
        synth.Shape(tuple((140 - 6 * t, 85.0) for t in range(T)), 8, 8, (40, 90, 230)),
    )
    return synth.write_video(tmp_path / "a.mp4", synth.arena_frames(shapes, H, W, noise=2.0))


def test_proposals_are_drawn_and_the_picked_accepted(ctx, user, tmp_path):
    h.upload(ctx, user, str(_clip(tmp_path)))
    p = ctx.page
    out = f.find_objects(ctx, user, "motion", 2, 40, 0, -1, "bright", 0)
    assert "2 proposals on frame 0" in out[p.status]
    drawn, plain = np.asarray(out[p.frame_view]), user.view_frame(0)
    assert drawn.shape == plain.shape and not np.array_equal(drawn, plain)
    assert user.objects == []  # finding changes nothing
    out = f.accept_found(ctx, user, "2", "box", 0)
    assert "1 object added" in out[p.status]
    assert [o.name for o in user.objects] == ["found 2"]


def test_a_still_video_is_refused_in_one_sentence(ctx, user, tmp_path):
    still = np.repeat(synth.background(H, W)[None], T, axis=0)
    h.upload(ctx, user, str(synth.write_video(tmp_path / "s.mp4", still)))
    with pytest.raises(gr.Error, match="Nothing moves in this video"):
        f.find_objects(ctx, user, "motion", 1, 30, 0, -1, "bright", 0)
