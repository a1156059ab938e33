"""The "Masks and identities" panel's handlers called directly, without a server (as
tests/test_handlers.py does): the brush, label images, identity fixes and the channel
choice of a multi-channel TIFF."""

from __future__ import annotations

import json

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
tifffile = pytest.importorskip("tifffile")

from sam2web.history import AddMask, decode_mask  # noqa: E402
from sam2web.ui import handlers as h  # noqa: E402
from sam2web.ui import masks_events as m  # noqa: E402
from sam2web.ui.user import UserSession  # noqa: E402
from tests import synth  # noqa: E402
from tests.double import shifted, velocity  # noqa: E402
from tests.masks import assert_nontrivial  # noqa: E402

RED = synth.DEFAULT_DISCS[0]
TRACK = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")  # as the page sends it


def _grow(mask: np.ndarray, by: int) -> np.ndarray:
    """``mask`` and every pixel within ``by`` pixels of it (a square neighbourhood)."""
    padded = np.pad(mask, by)
    rows, cols = mask.shape
    n = 2 * by + 1
    return np.logical_or.reduce(
        [padded[dy : dy + rows, dx : dx + cols] for dy in range(n) for dx in range(n)]
    )


def _display(mask: np.ndarray) -> np.ndarray:
    """A frame mask at the page's display scale for 160x120 clips (6x)."""
    return np.kron(mask, np.ones((6, 6), dtype=bool))


def _display_rgb(image: np.ndarray) -> np.ndarray:
    """A frame at the page's display scale for 160x120 clips (6x, nearest pixel)."""
    return np.repeat(np.repeat(image, 6, axis=0), 6, axis=1)


def test_the_brush_paints_a_mask_prompt_that_is_recorded_and_replayed(ctx, user, tmp_path):
    clip = synth.write_image_zip(tmp_path / "discs.zip", synth.make_frames(3, 120, 160))
    h.upload(ctx, user, str(clip))
    h.add_object(ctx, user, "red", 0)
    loaded = m.brush_load(ctx, user, 0)[ctx.page.masks.editor]
    assert loaded["background"].shape == (120, 160, 3)
    layer = loaded["layers"][0]
    assert layer.shape == (120, 160, 4) and not layer[..., 3].any()  # no mask yet
    # Paint the red disc (brush), then erase its left third (eraser: transparent again).
    disc = synth.disc_mask(120, 160, RED, 0)
    layer[disc] = (230, 25, 75, 255)
    layer[:, : int(RED.x0 - 5), 3] = 0
    painted = disc.copy()
    painted[:, : int(RED.x0 - 5)] = False
    out = m.brush_apply(ctx, user, {**loaded, "layers": [layer]}, 0)
    assert "prompt on frame 0" in out[ctx.page.status]
    action = user.tracking.history[-1]
    assert isinstance(action, AddMask) and (action.frame, action.obj) == (0, 1)
    assert np.array_equal(decode_mask(action.rle, 120, 160), painted)
    result = user.tracking.store.mask(0, 1)
    assert_nontrivial([result], "mask from the painted prompt")
    # The brush now starts from that mask.
    again = m.brush_load(ctx, user, 0)[ctx.page.masks.editor]["layers"][0]
    assert np.array_equal(again[..., 3] > 0, result)
    # Saved and loaded: the replayed prompt gives the same mask.
    path = user.save_project()
    other = UserSession(ctx.engine)
    try:
        other.upload(clip, source_name="discs.zip")
        other.load_project(path)
        assert np.array_equal(other.tracking.store.mask(0, 1), result)
    finally:
        other.close()
    with pytest.raises(gr.Error, match="Nothing was painted"):
        m.brush_apply(ctx, user, {**loaded, "layers": []}, 0)


def test_label_image_and_identity_fix_through_the_handlers(ctx, user, tmp_path, double_engine):
    """With the predictor double the masks are known: a label image's objects start from
    their labels' masks, and tracking moves each by the double's velocity per frame. A
    swap from frame 2 on exchanges the two objects' masks, as the page shows them (the
    masks and the tint of the frame), on frames 2 and 3 and not on 0 and 1; undoing it
    gives back the masks from before."""
    from PIL import Image

    frames, k = 4, 2
    clip = synth.write_image_zip(tmp_path / "discs.zip", synth.make_frames(frames, 120, 160))
    h.upload(ctx, user, str(clip))
    truth = [synth.disc_mask(120, 160, disc, 0) for disc in synth.DEFAULT_DISCS]
    labels = np.zeros((120, 160), np.uint8)
    for i, mask in enumerate(truth):
        labels[mask] = i + 1
    cache = tmp_path / "gradio-cache" / "upload1"
    cache.mkdir(parents=True)
    png = cache / "labels.png"
    Image.fromarray(labels).save(png)
    out = m.start_from_labels(ctx, user, {"path": str(png)}, 0.0)
    assert out[ctx.page.status].startswith("2 objects started from the labels on frame 0")
    assert out[ctx.page.frame_slider] == 0
    assert not png.exists()  # the uploaded copy is removed once read
    assert [o.name for o in user.objects] == ["label 1", "label 2"]
    assert_nontrivial(truth)
    assert np.array_equal(user.mask_on(0, 1), truth[0])
    assert np.array_equal(user.mask_on(0, 2), truth[1])

    list(h.track(ctx, user, *TRACK))
    tracked = {
        (f, obj): shifted(truth[obj - 1], *(f * v for v in velocity(obj)))
        for f in range(frames)
        for obj in (1, 2)
    }
    assert not np.array_equal(tracked[(k, 1)], tracked[(0, 1)])  # the double moved it
    for key, mask in tracked.items():
        assert np.array_equal(user.mask_on(*key), mask), key

    out = m.fix_identity(ctx, user, "swap", 1, 2.0, k, k)
    assert "label 1 and label 2 are swapped from frame 2 on" in out[ctx.page.status]
    assert user.tracking.history[-1].op == "swap"
    for (f, obj), mask in tracked.items():
        shown_as = 3 - obj if f >= k else obj
        assert np.array_equal(user.mask_on(f, shown_as), mask), (f, obj)
    # The frames shown: object 1's tracked mask is tinted in label 2's colour from frame 2.
    colours = {o.obj_id: np.array(o.color, dtype=np.float64) for o in user.objects}
    for f, view in ((k, out[ctx.page.frame_view]), (k - 1, user.view_frame(k - 1))):
        inner = _display(~_grow(~tracked[(f, 1)], 3))  # less the edge (thick: active)
        expected = np.rint(
            _display_rgb(user.frame_rgb(f)) * 0.5 + colours[2 if f >= k else 1] * 0.5
        )
        assert np.array_equal(np.asarray(view)[inner], expected.astype(np.uint8)[inner]), f

    m.undo_fix(ctx, user, 1)
    assert user.tracking.history[-1].op == "undo_fix"
    for key, mask in tracked.items():
        assert np.array_equal(user.mask_on(*key), mask), key
    m.fill_gaps(ctx, user, 2, 1)
    assert user.tracking.history[-1].frames == 2
    with pytest.raises(gr.Error, match="whole number"):
        m.fix_identity(ctx, user, "merge", 1, None, 0, 1)


def test_a_two_channel_tiff_asks_and_opens_with_the_chosen_channel(ctx, user, tmp_path):
    data = np.zeros((3, 2, 48, 64), np.uint8)
    data[:, 0, 10:20, 10:20] = 200  # channel 0: a square at the top left
    data[:, 1, 30:40, 40:50] = 200  # channel 1: a square at the bottom right
    cache = tmp_path / "gradio-cache" / "upload2"
    cache.mkdir(parents=True)
    src = cache / "cells.tif"
    # 0.5 µm pixels and 0.25 s between frames, as ImageJ writes them.
    tifffile.imwrite(
        src,
        data,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TCYX", "unit": "um", "finterval": 0.25},
    )
    # Nothing loaded yet: both fields stay as they are (an update that changes nothing).
    kept = h.file_scale(ctx, user)
    assert kept == {ctx.page.pixels_per_unit: gr.skip(), ctx.page.unit: gr.skip()}
    with pytest.raises(gr.Error, match="has 2 channels"):
        h.upload(ctx, user, {"path": str(src)})
    assert not src.exists()  # the upload cache's copy is gone; the session holds its own
    asked = m.stack_choices(ctx, user)
    panel = ctx.page.masks
    assert asked[panel.stack_group]["visible"] is True
    assert [v for _, v in asked[panel.channel]["choices"]] == ["0", "1", "composite"]
    out = m.open_stack(ctx, user, "1", None)
    assert "**cells.tif** — 3 frames" in out[ctx.page.facts]
    assert out[panel.stack_group]["visible"] is False
    assert user.held_stack is None and user.stack_choice == (1, None)
    # The file's pixel size fills in the calibration; its frame interval gives the rate.
    scale = h.file_scale(ctx, user)
    assert scale == {ctx.page.pixels_per_unit: "2", ctx.page.unit: "µm"}
    assert user.info.fps == pytest.approx(4.0)
    frame = user.frame_rgb(0)
    assert frame[35, 45].max() > 100 and frame[15, 15].max() < 50  # channel 1's square
    user.add_object("cell")
    saved = json.loads(user.save_project().read_text())
    assert saved["version"] == 2
    assert (saved["source"]["channel"], saved["source"]["axis"]) == (1, None)
    with pytest.raises(gr.Error, match="Upload the TIFF first"):
        m.open_stack(ctx, user, "0", None)


def test_project_with_a_stack_choice_replays_on_the_command_line(engine, tmp_path):
    """The CLI opens a TIFF with the project's channel (or --channel) before replaying."""
    from sam2web.analysis.tables import Calibration
    from sam2web.cli.track import track_video
    from sam2web.session.projectload import load_project

    data = np.zeros((2, 2, 48, 64), np.uint8)
    data[:, 0, 10:26, 10:26] = 220
    data[:, 1, 30:40, 40:50] = 220
    src = tmp_path / "cells.tif"
    tifffile.imwrite(  # pixels of 0.25 µm: the CLI's calibration where none is given
        src, data, imagej=True, resolution=(4.0, 4.0), metadata={"axes": "TCYX", "unit": "um"}
    )
    user = UserSession(engine)
    try:
        user.upload(src, source_name="cells.tif", channel=0)
        user.click(0, 18, 18)
        for _ in user.propagate():
            pass
        csv_bytes = user.export(video=False).csv.read_bytes()
        project = load_project(user.save_project())
    finally:
        user.close()
    assert project.source.channel == 0
    track_video(engine, src, project, Calibration(), tmp_path / "out", video_out=False)
    assert (tmp_path / "out" / "sam2web_tracks.csv").read_bytes() == csv_bytes
    summary = (tmp_path / "out" / "sam2web_summary.csv").read_text(encoding="utf-8")
    assert summary.splitlines()[1].endswith(",µm")  # the file's unit, from its pixel size
    # --fill-gaps adds the marked column (nothing is lost in two frames, so all 0).
    track_video(
        engine, src, project, Calibration(), tmp_path / "gaps", video_out=False, fill_gaps=1
    )
    filled = (tmp_path / "gaps" / "sam2web_tracks.csv").read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in filled] == csv_bytes.decode().splitlines()
    assert [line.rsplit(",", 1)[1] for line in filled] == ["interpolated", "0", "0"]
    # Opened with another channel, the replay says so.
    other = UserSession(engine)
    try:
        other.upload(src, source_name="cells.tif", channel=1)
        notes = other.apply_project(project)
        assert any("made on channel 0" in n for n in notes)
    finally:
        other.close()


def test_the_command_line_takes_a_channel_an_axis_and_gap_filling():
    from sam2web.cli.parser import build_parser

    args = build_parser().parse_args(
        ["track", "a.tif", "--project", "p.json", "--out", "o"]
        + ["--channel", "1", "--axis", "Z", "--fill-gaps", "2"]
    )
    assert (args.channel, args.axis, args.fill_gaps) == ("1", "Z", 2)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["track", "a.tif", "--project", "p", "--out", "o", "--axis", "Q"])
