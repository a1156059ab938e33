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


def test_a_click_inside_proposal_2_picks_it_and_accept_adds_exactly_it(ctx, user, tmp_path):
    from tests.ui.test_handlers import select

    h.upload(ctx, user, str(_clip(tmp_path)))
    p = ctx.page
    f.find_objects(ctx, user, "motion", 2, 40, 0, -1, "bright", 0)
    # The blue square (8 px half-size, centred at (140, 85) on frame 0) is the smaller blob,
    # so it is proposal 2; the red one (9 px, at (20, 40)) is proposal 1.
    dashed = user.proposals_image([])
    out = h.click_frame(ctx, user, 0, "positive", select(user, 140, 85), "objects", "", 0.5, "")
    assert out[p.status].startswith("Proposal 2 picked") and out[p.finders.picked] == "2"
    assert not np.array_equal(np.asarray(out[p.frame_view]), dashed)  # drawn solid now
    assert user.objects == []  # picking changes nothing else
    out = h.click_frame(ctx, user, 0, "positive", select(user, 80, 110), "objects", "", 0.5, "2")
    assert "outside every proposal" in out[p.status] and out[p.finders.picked] == "2"
    out = h.click_frame(ctx, user, 0, "positive", select(user, 140, 85), "objects", "", 0.5, "2")
    assert out[p.finders.picked] == ""  # a second click unpicks it
    h.click_frame(ctx, user, 0, "positive", select(user, 140, 85), "objects", "", 0.5, "")
    f.accept_found(ctx, user, "2", "box", 0)
    (obj,) = user.objects
    assert obj.name == "found 2"
    from sam2web.history import SetBox

    (box,) = [a for a in user.tracking.history if isinstance(a, SetBox)]
    # The box prompt is the blue square's: centred near (140, 85), 17 px wide.
    assert abs((box.x0 + box.x1) / 2 - 140) <= 2 and abs((box.y0 + box.y1) / 2 - 85) <= 2
    assert 14 <= box.x1 - box.x0 <= 21


def _pick(ctx, user, x, y, picked):
    """A click at (x, y) of the original frame while proposals are shown: the numbers
    the page's box holds afterwards, and the status line."""
    from tests.ui.test_handlers import select

    out = h.click_frame(ctx, user, 0, "positive", select(user, x, y), "objects", "", 0.5, picked)
    return out[ctx.page.finders.picked], out[ctx.page.status]


def _find(ctx, user, picked):
    return f.find_objects_v2(ctx, user, "motion", 2, 40, 0, -1, "bright", 0, picked)


def test_a_second_find_clears_the_picks_and_accept_adds_only_the_later_pick(ctx, user, tmp_path):
    h.upload(ctx, user, str(_clip(tmp_path)))
    p = ctx.page
    out = _find(ctx, user, "")
    assert "cleared" not in out[p.status] and out[p.finders.picked] == ""
    # Proposal 2 is the blue square (centred at (140, 85)), proposal 1 the red (20, 40).
    picked, _ = _pick(ctx, user, 140, 85, out[p.finders.picked])
    assert picked == "2"
    out = _find(ctx, user, picked)
    assert out[p.finders.picked] == ""
    assert out[p.status].startswith("The picks of the last proposals (2) are cleared.")
    assert "2 proposals on frame 0" in out[p.status]
    with pytest.raises(gr.Error, match="Pick proposals first"):
        f.accept_picked(ctx, user, out[p.finders.picked], "box", 0)
    assert user.objects == []  # nothing picked is not "all"
    picked, message = _pick(ctx, user, 20, 40, out[p.finders.picked])
    assert picked == "1" and message.startswith("Proposal 1 picked")
    out = f.accept_picked(ctx, user, picked, "box", 0)
    assert "1 object added" in out[p.status]
    assert [o.name for o in user.objects] == ["found 1"]
    from sam2web.history import SetBox

    (box,) = [a for a in user.tracking.history if isinstance(a, SetBox)]
    assert abs((box.x0 + box.x1) / 2 - 20) <= 2 and abs((box.y0 + box.y1) / 2 - 40) <= 2


def _files(root) -> dict[str, bytes]:
    return {
        str(q.relative_to(root)): q.read_bytes() for q in sorted(root.rglob("*")) if q.is_file()
    }


def test_dismiss_takes_the_proposals_away_and_changes_no_object_or_file(ctx, user, tmp_path):
    h.upload(ctx, user, str(_clip(tmp_path)))
    p, fp = ctx.page, ctx.page.finders
    assert f.finder_controls(ctx, user)[fp.actions]["visible"] is False
    _find(ctx, user, "")
    f.accept_picked(ctx, user, "1", "box", 0)  # an object whose mask is on disk
    out = _find(ctx, user, "")
    assert out[fp.actions]["visible"] is True
    picked, _ = _pick(ctx, user, 140, 85, "")
    assert picked == "2"
    files, history = _files(user.workspace.root), list(user.tracking.history)
    objects = [(o.obj_id, o.name) for o in user.objects]
    mask = user.tracking.store.mask(0, user.objects[0].obj_id).copy()
    plain = user.view_frame(0)
    out = f.dismiss_found(ctx, user, 0)
    assert out[p.status].startswith("2 proposals dismissed; no object changed.")
    assert np.array_equal(np.asarray(out[p.frame_view]), plain)  # the frame without them
    assert out[fp.picked] == "" and out[fp.actions]["visible"] is False
    assert not user.proposals_shown(0)
    assert _files(user.workspace.root) == files  # byte for byte
    assert list(user.tracking.history) == history
    assert [(o.obj_id, o.name) for o in user.objects] == objects
    assert np.array_equal(user.tracking.store.mask(0, user.objects[0].obj_id), mask)
    with pytest.raises(gr.Error, match="Find objects first"):
        f.accept_found(ctx, user, "", "box", 0)
    out = f.dismiss_found(ctx, user, 0)
    assert out[p.status].startswith("There are no proposals to dismiss.")


def test_while_proposals_wait_the_guide_line_says_to_accept_or_dismiss_them(ctx, user, tmp_path):
    from sam2web.ui import flow

    h.upload(ctx, user, str(_clip(tmp_path)))
    guide = ctx.page.flow.guide
    assert "click on an animal" in flow.show_guide(ctx, user)[guide]
    _find(ctx, user, "")
    assert "Accept the picked" in flow.show_guide(ctx, user)[guide]
    f.dismiss_found(ctx, user, 0)
    assert "click on an animal" in flow.show_guide(ctx, user)[guide]
    _find(ctx, user, "")
    f.accept_picked(ctx, user, "1", "box", 0)
    assert "press **Track" in flow.show_guide(ctx, user)[guide]


def test_the_accept_button_to_press_stands_out(ctx):
    fp = ctx.page.finders
    none, some = f.emphasis(ctx, ""), f.emphasis(ctx, "2, 3")
    assert none[fp.accept_all_btn]["variant"] == "primary"
    assert none[fp.accept_picked_btn]["variant"] == "secondary"
    assert some[fp.accept_all_btn]["variant"] == "secondary"
    assert some[fp.accept_picked_btn]["variant"] == "primary"


def test_a_new_video_drops_the_last_ones_proposals(ctx, user, tmp_path):
    h.upload(ctx, user, str(_clip(tmp_path)))
    _find(ctx, user, "")
    (tmp_path / "again").mkdir()
    h.upload(ctx, user, str(_clip(tmp_path / "again")))
    assert not user.proposals_shown(0)
    assert f.finder_controls(ctx, user)[ctx.page.finders.actions]["visible"] is False


def test_find_objects_keeps_its_parameters_beside_the_new_endpoints(engine):
    from sam2web.ui.wiring import build_app

    demo = build_app(engine)
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    names = lambda key: [getattr(c, "label", None) for c in fns[key].inputs]  # noqa: E731
    first = names("find_objects")
    # The session, finder, how many, minimum and maximum area, threshold, polarity, frame.
    assert len(first) == 8 and len(fns["find_objects"].outputs) == 3
    assert names("find_objects_v2") == [*first, "Proposals to accept (numbers, e.g. 1, 3)"]
    assert len(names("dismiss_found")) == 2  # the session and the frame
    assert len(fns["accept_picked"].inputs) == 4
