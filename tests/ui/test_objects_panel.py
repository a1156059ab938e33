"""The objects panel's handlers called directly, without a server: masks known by
construction (mask prompts from a label image), the rows against the store, a row click
making an object active, hiding one object on the frame view only."""

from __future__ import annotations

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
from PIL import Image  # noqa: E402

from sam2web.ui import handlers as h  # noqa: E402
from sam2web.ui import masks_events as m  # noqa: E402
from sam2web.ui import objects_events as oe  # noqa: E402
from sam2web.ui.objects_panel import SHOW_COLUMN, rows  # noqa: E402
from tests import synth  # noqa: E402
from tests.masks import assert_nontrivial  # noqa: E402


class Select:
    """What Gradio's select event gives a handler: the clicked cell and its row."""

    def __init__(self, row, column, row_value):
        self.index, self.row_value = [row, column], row_value


def _two_objects(ctx, user, tmp_path):
    clip = synth.write_image_zip(tmp_path / "discs.zip", synth.make_frames(3, 120, 160))
    h.upload(ctx, user, str(clip))
    labels = np.zeros((120, 160), np.uint8)
    for i, disc in enumerate(synth.DEFAULT_DISCS[:2]):
        labels[synth.disc_mask(120, 160, disc, 1)] = i + 1
    cache = tmp_path / "gradio-cache" / "upload1"
    cache.mkdir(parents=True)
    png = cache / "labels.png"
    Image.fromarray(labels).save(png)
    m.start_from_labels(ctx, user, {"path": str(png)}, 1)
    return labels


def test_rows_give_name_colour_and_frames_the_store_holds(ctx, user, tmp_path):
    _two_objects(ctx, user, tmp_path)
    store = user.tracking.store
    table = rows(user)
    assert [r[0] for r in table] == ["1", "2"]
    assert [r[1].removeprefix("▶ ") for r in table] == ["label 1", "label 2"]
    assert table[1][1].startswith("▶ ")  # the last added is active
    for r, obj in zip(table, user.objects, strict=True):
        present = [
            f for f in store.frames() if (mk := store.mask(f, obj.obj_id)) is not None and mk.any()
        ]
        assert present == [1]
        assert r[2] == "prompted on frame 1"
    # Scripted into the store: object 1 on frames 0-2 -> tracked beyond its prompt.
    disc = synth.disc_mask(120, 160, synth.DEFAULT_DISCS[0], 0)
    for f in (0, 2):
        store.write(f, {1: disc}, {1: 1.0})
    store.write(2, {2: np.zeros_like(disc)}, {2: 1.0})  # an empty mask is not presence
    table = rows(user)
    assert table[0][2] == "frames 0–2, 3 of 3" and table[1][2] == "prompted on frame 1"
    shown = oe.show_objects(ctx, user)[ctx.page.objects.table]
    assert shown["visible"] is True
    styled = shown["value"]
    css = styled._compute().ctx
    r, g, b = user.objects[0].color
    assert any(f"rgb({r}, {g}, {b})" in v for _, v in css[(0, 0)])


def test_a_row_click_makes_the_object_active_and_clicks_go_to_it(ctx, user, tmp_path):
    _two_objects(ctx, user, tmp_path)
    store = user.tracking.store
    before = {o: store.mask(1, o).copy() for o in (1, 2)}
    assert_nontrivial(before.values())
    out = oe.pick_object(ctx, user, 1, Select(0, 1, ["1", "label 1", "", ""]))
    assert user.active_object == 1 and "label 1 is the active object" in out[ctx.page.status]
    out = h.click_frame(
        ctx,
        user,
        1,
        "negative",
        type(
            "E",
            (),
            {
                "index": [
                    synth.DEFAULT_DISCS[0].x0 * user.display_scale,
                    synth.DEFAULT_DISCS[0].y0 * user.display_scale,
                ]
            },
        )(),
    )
    assert "label 1" in out[ctx.page.status]
    assert not np.array_equal(store.mask(1, 1), before[1])
    assert np.array_equal(store.mask(1, 2), before[2])


def test_hiding_b_changes_only_the_frame_view(ctx, user, tmp_path):
    _two_objects(ctx, user, tmp_path)
    store = user.tracking.store
    user.select_object(1)
    shown = user.view_frame(1).copy()
    video_before = user.export().video.read_bytes()
    out = oe.pick_object(ctx, user, 1, Select(1, SHOW_COLUMN, ["2", "label 2", "", ""]))
    assert 2 in user.hidden_objects and "hidden" in out[ctx.page.status]
    assert rows(user)[1][3] == "hidden"
    hidden = user.view_frame(1)
    k = user.display_scale
    scale = lambda mk: np.kron(mk, np.ones((int(k), int(k)), bool))  # noqa: E731
    a, b = scale(store.mask(1, 1)), scale(store.mask(1, 2))
    raw = np.kron(user.frame_rgb(1), np.ones((int(k), int(k), 1), np.uint8))
    inner_b = b & ~a
    assert inner_b.any()
    assert not np.array_equal(shown[inner_b], hidden[inner_b])
    assert np.abs(hidden[inner_b].astype(int) - raw[inner_b]).max() <= 2  # no tint left
    assert np.array_equal(shown[a], hidden[a])
    user.exports = type(user.exports)()
    assert user.export().video.read_bytes() == video_before  # the video still draws B
    oe.set_object_shown(ctx, user, 2, True, 1)
    assert np.array_equal(user.view_frame(1), shown)


def test_rename_remove_and_an_html_name(ctx, user, tmp_path):
    _two_objects(ctx, user, tmp_path)
    out = h.rename_object(ctx, user, "<b>x</b>", 1)
    assert "&lt;b&gt;x&lt;/b&gt;" in out[ctx.page.status]
    assert rows(user)[1][1] == "▶ <b>x</b>"  # a text cell: the browser shows it as text
    h.remove_object(ctx, user, 1)
    assert [r[0] for r in rows(user)] == ["1"]


def test_playing_over_frames_whose_objects_stay_the_same_sends_no_table(ctx, user, tmp_path):
    from sam2web.ui import flow

    _two_objects(ctx, user, tmp_path)
    p, o = ctx.page, ctx.page.objects
    first = oe.refresh_objects(ctx, user, None)  # a page that has no table yet gets one
    assert [list(r) for r in first[o.table]["value"].data.values] == rows(user)
    sent = first[o.sent]
    frame = 0
    for _ in range(2):  # Play: a tick moves the slider, the frame shown changes, the refresh
        frame = flow.tick(ctx, user, frame)[p.frame_slider]
        assert h.show_frame(ctx, user, frame)[p.frame_view] is not None
        again = oe.refresh_objects(ctx, user, sent)
        assert again == {
            o.table: gr.skip(),
            o.sent: gr.skip(),
            o.choice: gr.skip(),
            o.edit: gr.skip(),
        }
    assert frame == 2
    # A mask change on a frame: object 2 is now present beyond its prompt.
    user.tracking.store.write(
        2, {2: synth.disc_mask(120, 160, synth.DEFAULT_DISCS[1], 2)}, {2: 1.0}
    )
    changed = oe.refresh_objects(ctx, user, sent)
    assert changed[o.table]["value"].data.values[1][2] == "frames 1–2, 2 of 3"
    sent = changed[o.sent]
    assert oe.refresh_objects(ctx, user, sent)[o.table] == gr.skip()
    # A row click sends the table itself and says so: the next refresh sends nothing.
    picked = oe.pick_object(ctx, user, 2, Select(0, 1, ["1", "label 1", "", ""]))
    assert picked[o.table]["value"].data.values[0][1] == "▶ label 1"
    assert oe.refresh_objects(ctx, user, picked[o.sent])[o.table] == gr.skip()
    # Another object made active elsewhere (the dropdown): the table is sent again.
    user.select_object(2)
    assert oe.refresh_objects(ctx, user, picked[o.sent])[o.table]["value"].data.values[1][1] == (
        "▶ label 2"
    )


def test_choosing_renaming_and_removing_are_shown_once_there_is_an_object(ctx, user, tmp_path):
    """Before any object the page shows how to add one, not the active-object list or the
    rename and remove buttons, which could do nothing yet."""
    o = ctx.page.objects
    clip = synth.write_image_zip(tmp_path / "discs.zip", synth.make_frames(3, 120, 160))
    h.upload(ctx, user, str(clip))
    fresh = oe.refresh_objects(ctx, user, None)
    assert fresh[o.choice]["visible"] is False and fresh[o.edit]["visible"] is False
    h.add_object(ctx, user, "mouse", 0)
    added = oe.refresh_objects(ctx, user, fresh[o.sent])
    assert added[o.choice]["visible"] is True and added[o.edit]["visible"] is True
    h.remove_object(ctx, user, 0)  # the active one
    gone = oe.refresh_objects(ctx, user, added[o.sent])
    assert gone[o.choice]["visible"] is False and gone[o.edit]["visible"] is False
