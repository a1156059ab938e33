"""The page's handlers called directly, without a server: the layout is built inside a
``gr.Blocks()`` and each handler gets a real UserSession on the test engine."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from sam2web.ui import handlers as h  # noqa: E402
from sam2web.ui.user import UserSession  # noqa: E402
from tests import synth  # noqa: E402
from tests.double import points_mask  # noqa: E402
from tests.masks import assert_nontrivial  # noqa: E402

RED = synth.DEFAULT_DISCS[0]
TRACK = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")  # as the page sends it


@pytest.fixture
def clip(tmp_path) -> Path:
    return synth.write_video(tmp_path / "discs.mp4", synth.make_frames(8, 120, 160), fps=10)


def select(user: UserSession, x: float, y: float) -> gr.SelectData:
    """The event Gradio sends for a click at (x, y) pixels of the original frame."""
    k = user.display_scale  # the page shows the frame scaled by this factor
    return gr.SelectData(None, {"index": [x * k, y * k], "value": None})


def test_upload_shows_the_facts_the_first_frame_and_the_slider_range(ctx, user, clip):
    p = ctx.page
    out = h.upload(ctx, user, str(clip))
    assert out[p.state] is user
    assert "**discs.mp4** — 8 frames, 10 fps, 160×120 px, 0.8 s" in out[p.facts]
    # The frame is shown enlarged (small videos are easier to click precisely).
    assert isinstance(out[p.frame_view], np.ndarray) and out[p.frame_view].shape == (720, 960, 3)
    assert out[p.frame_slider]["maximum"] == 7 and out[p.frame_slider]["value"] == 0
    assert out[p.frame_slider]["interactive"] is True
    assert out[p.frame_number]["maximum"] == 7
    assert out[p.status] == "Loaded. Click on an object to start."
    assert out[p.info]["num_frames"] == 8 and out[p.info]["fps"] == 10.0
    assert out[p.video] is None and out[p.gallery] == []
    assert clip.exists()  # only copies in Gradio's upload cache are removed after reading


def _grow(mask: np.ndarray, by: int = 1) -> np.ndarray:
    """``mask`` and every pixel within ``by`` pixels of it (a square neighbourhood)."""
    padded = np.pad(mask, by)
    h, w = mask.shape
    n = 2 * by + 1
    return np.logical_or.reduce(
        [padded[dy : dy + h, dx : dx + w] for dy in range(n) for dx in range(n)]
    )


def _display(mask: np.ndarray) -> np.ndarray:
    """A frame mask at the page's display scale for this clip (6x)."""
    return np.kron(mask, np.ones((6, 6), dtype=bool))


def _display_rgb(image: np.ndarray) -> np.ndarray:
    """A frame at the page's display scale for this clip (6x, nearest pixel)."""
    return np.repeat(np.repeat(image, 6, axis=0), 6, axis=1)


def test_a_click_adds_object_1_and_shows_its_mask(ctx, user, clip, double_engine):
    """With the predictor double a click's mask is known: the disc of radius
    ``DISC_RADIUS`` around the click. The page holds exactly that mask, and the frame it
    shows is tinted by the overlay's rule (rint(pixel / 2 + colour / 2)) over the mask
    less its edge, where the outline is drawn (the click marker's strokes cover part of
    it); outside the mask and its outline only the label, drawn above the mask's top row,
    changes the frame.

    Recorded runs of wrong variants of the display: each mask drawn 3 pixels to the right
    (``np.roll`` in ``render_frame``) failed the tinted-interior check; each mask drawn
    grown by 3 pixels failed the check of the pixels outside.
    """
    p = ctx.page
    h.upload(ctx, user, str(clip))
    before = np.asarray(user.view_frame(0))  # no mask yet
    frame = user.frame_rgb(0)
    out = h.click_frame(ctx, user, 0, "positive", select(user, RED.x0, RED.y0))
    assert out[p.status] == (
        "Positive click added to object 1 at x=40, y=60. 1 object(s); 1 of 8 frames have masks."
    )
    assert out[p.active]["choices"] == [("1: object 1", 1)] and out[p.active]["value"] == 1
    assert set(out) == {p.frame_view, p.status, p.active}  # nothing else changes
    expected = points_mask([(RED.x0, RED.y0)], [1], None, (120, 160))
    assert_nontrivial([expected])
    assert np.array_equal(user.mask_on(0, 1), expected)
    assert np.array_equal(user.tracking.result(0).masks[1], expected)

    shown = np.asarray(out[p.frame_view])
    assert shown.shape == (720, 960, 3)
    colour = np.array(user.objects[0].color, dtype=np.float64)
    tinted = _display_rgb(np.rint(frame * 0.5 + colour * 0.5).astype(np.uint8))
    # Frame pixels by their 6x6 display blocks: tinted in all of the block, in part of it
    # (a marker stroke over the rest), or nowhere (under the marker's centre, the frame
    # pixels within 2 of the click).
    exact = (shown == tinted).all(axis=2).reshape(120, 6, 160, 6)
    inner = ~_grow(~expected, 2)  # the mask less its edge
    centre = _grow(np.pad(np.ones((1, 1), bool), ((60, 59), (40, 119))), 2)
    assert (inner & ~centre).sum() >= 8
    assert exact.any(axis=(1, 3))[inner & ~centre].all()
    # Outside the mask and its outline (and the marker, which lies within both) nothing
    # changes from the mask's top row down; above it the label is drawn.
    changed = (shown != before).any(axis=2)
    outside = ~_display(_grow(expected, 2))
    top = 6 * int(np.flatnonzero(expected.any(axis=1))[0])
    assert not changed[top:][outside[top:]].any()
    assert changed[:top].any()


def test_track_yields_progress_then_the_video_downloads_and_table(ctx, user, clip):
    p = ctx.page
    h.upload(ctx, user, str(clip))
    h.add_object(ctx, user, "red disc", 0)
    h.add_point(ctx, user, 0, 1, RED.x0, RED.y0, True)
    steps = list(h.track(ctx, user, *TRACK))
    *during, final = steps
    assert during and all(step[p.status].startswith("Tracking…") for step in during)
    assert during[-1][p.frame_slider] == 7  # the last tracked frame is shown
    assert final[p.status].startswith("Tracked 8 frames in ")
    assert final[p.status].endswith("1 object(s); 8 of 8 frames have masks.")
    assert Path(final[p.video]).suffix == ".mp4" and Path(final[p.video]).is_file()
    names = {Path(f).name for f in final[p.files]}
    assert {"sam2web_tracks.csv", "sam2web_masks.zip", "sam2web_summary.csv"} <= names
    tracks = next(f for f in final[p.files] if f.endswith("sam2web_tracks.csv"))
    with open(tracks, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["object_name"] for r in rows} == {"red disc"}
    summary = final[p.summary]
    assert summary["headers"][:3] == ["id", "name", "frames present"]
    assert "distance (px)" in summary["headers"]  # no scale given: pixels
    assert [row[:2] for row in summary["value"]] == [[1, "red disc"]]
    assert len(final[p.gallery]) == 8 and final[p.gallery][3][1] == "frame 3"
    assert Path(final[p.trajectories]).is_file() and Path(final[p.confidence]).is_file()
    # Updating the measurements with a scale converts the table to that unit.
    out = h.export(ctx, user, 2, 0.5, True, True, 0, "2.5", "mm", "")
    assert "distance (mm)" in out[p.summary]["headers"]
    assert any(f.endswith("sam2web_tracks_calibrated.csv") for f in out[p.files])
    assert out[p.frame_view].shape == (720, 960, 3)


def test_api_click_with_object_0_creates_object_1_as_the_page_does(ctx, user, clip):
    p = ctx.page
    h.upload(ctx, user, str(clip))
    with pytest.raises(gr.Error) as err:
        h.add_point(ctx, user, 0, 5, RED.x0, RED.y0, True)
    assert err.value.message.startswith("Object 5 does not exist yet; add an object first")
    assert user.objects == []  # the refused click added nothing
    out = h.add_point(ctx, user, 0, 0, RED.x0, RED.y0, True)
    assert out[p.active]["choices"] == [("1: object 1", 1)]
    assert "1 object(s); 1 of 8 frames have masks." in out[p.status]


@pytest.mark.parametrize(
    "call",
    [
        lambda ctx, u: list(h.track(ctx, u, *TRACK)),
        lambda ctx, u: h.add_object(ctx, u, "x", 0),
        lambda ctx, u: h.compare_quality(ctx, u, 3),
    ],
    ids=["track", "add_object", "compare_quality"],
)
def test_actions_before_an_upload_say_what_to_do_first(ctx, user, call):
    with pytest.raises(gr.Error) as err:
        call(ctx, user)
    assert err.value.message == "Upload a video or image sequence first."


def test_user_errors_become_one_sentence(ctx, user, clip):
    h.upload(ctx, user, str(clip))
    h.add_object(ctx, user, "disc", 0)
    with pytest.raises(gr.Error) as err:
        h.add_point(ctx, user, 0, 1, 500, 10, True)
    assert "outside the 160x120 image" in err.value.message
    assert err.value.message.count(". ") == 0 and err.value.message.endswith(".")
    with pytest.raises(gr.Error) as err:
        list(h.track(ctx, user, "forward", "two", "", 0, 0.5, True, True, 0, "", "mm", ""))
    assert err.value.message == "The start frame must be a frame number (0 or more) or empty."
    with pytest.raises(gr.Error) as err:
        h.save_project(ctx, user, "-3", "mm", "")
    assert err.value.message == "The pixels per unit must be a positive number or empty."


@pytest.mark.parametrize(
    ("done", "total", "expected"),
    [
        (0, 10, "yours has not tracked a frame yet (10 to track), about 10 s left"),
        (3, 10, "yours has tracked 3 of 10 frames, about 7 s left"),
        (0, 1, "yours has not tracked a frame yet (1 to track), about 1 s left"),
    ],
)
def test_the_shared_model_sentence_counts_frames_and_does_not_call_them_a_frame(
    done, total, expected
):
    """A run from frame 40 that has tracked 3 frames stands at frame 42: the sentence
    counts the 3 frames, it does not say "at frame 3". One frame of this run takes 0.5 s
    and the model is shared by two runs, so each frame left costs 1 s."""
    from sam2web.tracking.scheduler import Policy, Snapshot
    from sam2web.ui import views

    standing = Snapshot("me", Policy.FAIR, 1, 0, 0, 0, 1, {}, run_unit_s=0.5)
    sentence = views.tracking_progress(standing, 40 + done, done, total, plain_eta_s=None)
    assert sentence == f"The model is shared with 1 other user tracking; {expected}"


def test_upload_v2_reads_every_nth_frame_and_refuses_a_bad_step(ctx, user, clip):
    p = ctx.page
    out = h.upload_v2(ctx, user, str(clip), 3)
    assert out[p.info]["num_frames"] == 3 and out[p.info]["frame_step"] == 3
    assert out[p.info]["source_frames"] == 8
    assert "3 frames (frame step 3: one in every 3 of 8)" in out[p.facts]
    assert out[p.frame_slider]["maximum"] == 2
    before = user.info
    # The endpoint speaks in a gr.Error, like every handler (the page's own upload says
    # it in the status line: tests/ui/test_upload_events.py).
    with pytest.raises(gr.Error) as err:
        h.upload_v2(ctx, user, str(clip), 2.5)
    assert err.value.message.startswith("The frame step must be a whole number")
    assert user.info == before  # the video read with step 3 stays
    notes = clip.with_name("holiday.mp4")
    notes.write_bytes(b"not a video, only notes\n" * 50)
    with pytest.raises(gr.Error) as err:
        h.upload_v2(ctx, user, str(notes), 1)
    assert err.value.message.startswith("The file 'holiday.mp4' is not a video")
    assert user.info == before
