"""The one identity rule through the user session: after a swap or a merge, an edit names an
object as the page shows it and reaches the tracker object shown as it
(:func:`sam2web.analysis.identity.tracker_object`), and every file reads the masks with
the fixes in force.

Masks are known by construction. In the edit tests every object is prompted with a disc
as its mask on every frame: a mask prompt on a frame yields that frame's mask, random
weights or not, exactly so for these discs centred on pixel corners (the fixture checks
it). Each shown mask is then a known disc, and an edit changes exactly one of them. In the file tests the discs are written straight into the session's store,
on paths that keep each disc wholly inside or wholly outside each zone.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile

import numpy as np
import pytest
import tifffile

from sam2web.analysis.identity import fixed_view
from sam2web.analysis.zones import Rect
from sam2web.errors import UserError
from sam2web.outputs import display
from sam2web.outputs.maskfiles import read_npz
from sam2web.session.behaviour import BehaviourSetup
from sam2web.session.user import UserSession
from tests import synth
from tests.masks import assert_nontrivial

SIZE, N = 128, 4
DISCS = (
    synth.Disc(x0=28, y0=30, vx=2.0, vy=1.0, radius=10, color=(230, 60, 40)),
    synth.Disc(x0=96, y0=34, vx=-2.0, vy=2.0, radius=9, color=(40, 90, 230)),
    synth.Disc(x0=40, y0=96, vx=2.0, vy=-1.0, radius=11, color=(60, 200, 80)),
)
K = 2  # the fixes start on this frame
EDIT = 3  # the frame edited, after K


def disc(i: int, t: int) -> np.ndarray:
    return synth.disc_mask(SIZE, SIZE, DISCS[i], t)


# A small disc far from every other: what the brush adds.
EXTRA = synth.disc_mask(SIZE, SIZE, synth.Disc(104, 112, 0, 0, 6, (0, 0, 0)), 0)


@pytest.fixture
def user(engine, tmp_path):
    """Objects 1 ("a") and 2 ("b") prompted with discs 0 and 1 as their masks on every
    frame."""
    frames = synth.make_frames(num_frames=N, height=SIZE, width=SIZE, discs=DISCS)
    clip = synth.write_image_zip(tmp_path / "cells.zip", frames)
    user = UserSession(engine)
    user.upload(clip, source_name="cells.zip")
    for i, name in enumerate(("a", "b")):
        obj = user.add_object(name)
        for t in range(N):
            user.paint(t, disc(i, t), obj.obj_id)
    masks = shown(user)
    assert masks.keys() == {(t, o) for t in range(N) for o in (1, 2)}
    assert all(np.array_equal(masks[(t, o)], disc(o - 1, t)) for t, o in masks)
    assert_nontrivial(masks.values(), "prompted discs")
    yield user
    user.close()


def shown(user: UserSession) -> dict[tuple[int, int], np.ndarray]:
    """{(frame, object): mask} as the page shows them (the fixes in force applied)."""
    view = fixed_view(user.tracking.store, user.tracking.history)
    out = {}
    for t in range(N):
        result = view.read(t)
        for obj_id, mask in ({} if result is None else result.masks).items():
            out[(t, obj_id)] = mask
    return out


def changed(before: dict, after: dict) -> set:
    keys = before.keys() | after.keys()
    return {
        k
        for k in keys
        if k not in before or k not in after or not np.array_equal(before[k], after[k])
    }


def centre(user: UserSession, obj_id: int, frame: int) -> tuple[float, float]:
    """The centre (x, y) of the object's shown mask on the frame."""
    rows, cols = np.nonzero(shown(user)[(frame, obj_id)])
    return float(cols.mean()) + 0.5, float(rows.mean()) + 0.5


def _click(user, obj_id, frame):
    user.click(frame, *centre(user, obj_id, frame), "positive", obj_id=obj_id)


def _negative_click(user, obj_id, frame):
    user.click(frame, *centre(user, obj_id, frame), "negative", obj_id=obj_id)


def _box_by_two_clicks(user, obj_id, frame):
    x, y = centre(user, obj_id, frame)
    user.click(frame, x - 14, y - 14, "box", obj_id=obj_id)
    user.click(frame, x + 14, y + 14, "box", obj_id=obj_id)


def _add_box(user, obj_id, frame):
    x, y = centre(user, obj_id, frame)
    user.add_box(frame, x - 14, y - 14, x + 14, y + 14, obj_id=obj_id)


def _brush(user, obj_id, frame):
    user.select_object(obj_id)
    loaded = user.mask_on(frame, obj_id)  # what the brush starts from
    assert np.array_equal(loaded, shown(user)[(frame, obj_id)])
    user.paint(frame, loaded | EXTRA)


def _clear(user, obj_id, frame):
    user.select_object(obj_id)
    user.clear_frame(frame)


EDITS = {
    "click": _click,
    "negative click": _negative_click,
    "box by two clicks": _box_by_two_clicks,
    "box": _add_box,
    "brush": _brush,
    "clear the frame": _clear,
}


# ---------------------------------------------------------------------- swaps
@pytest.mark.parametrize("edit", EDITS)
def test_after_a_swap_an_edit_of_the_shown_object_changes_only_its_masks(user, edit):
    user.fix_identity("swap", 1, 2, K)
    before = shown(user)
    assert np.array_equal(before[(EDIT, 1)], disc(1, EDIT))  # a shows b's tracker object
    EDITS[edit](user, 1, EDIT)
    after = shown(user)
    assert changed(before, after) == {(EDIT, 1)}, edit
    assert user.tracking.history[-1].obj == 2  # the tracker object shown as a there
    if edit == "brush":
        assert np.array_equal(after[(EDIT, 1)], disc(1, EDIT) | EXTRA)
    # Before the swap's first frame the object is itself.
    EDITS[edit](user, 1, K - 1)
    assert changed(after, shown(user)) == {(K - 1, 1)}, edit
    assert user.tracking.history[-1].obj == 1


def test_after_a_swap_undo_takes_back_the_shown_objects_prompt(user):
    user.fix_identity("swap", 1, 2, K)
    before = shown(user)
    _click(user, 1, EDIT)
    assert changed(before, shown(user)) == {(EDIT, 1)}
    user.undo(EDIT, 1)  # the click: the disc is back
    assert changed(before, shown(user)) == set()
    assert user.tracking.history[-1].obj == 2


def test_after_a_swap_a_box_is_drawn_in_the_shown_objects_colour(user):
    user.fix_identity("swap", 1, 2, K)
    _add_box(user, 1, EDIT)
    args = (user.frame_rgb, user.tracking, user.style, EDIT)
    drawn = display.render_frame(*args)
    plain = display.render_frame(*args, show_prompts=False)
    colours = {tuple(int(c) for c in px) for px in drawn[(drawn != plain).any(axis=2)]}
    a, b = (tuple(o.color) for o in user.objects)
    assert a in colours and b not in colours


def test_after_a_swap_removing_either_object_is_refused_until_the_fix_is_undone(user):
    user.fix_identity("swap", 1, 2, K)
    before, history = shown(user), list(user.tracking.history)
    for obj_id in (1, 2):
        with pytest.raises(UserError) as err:
            user.remove_object(obj_id)
        assert err.value.message == (
            f"Object {obj_id} is part of a swap from frame {K}; undo that fix first, then "
            "remove it."
        )
    assert changed(before, shown(user)) == set()
    assert user.tracking.history == history and [o.obj_id for o in user.objects] == [1, 2]

    user.undo_fix()
    user.remove_object(1)
    assert [o.obj_id for o in user.objects] == [2]
    masks = shown(user)
    assert masks.keys() == {(t, 2) for t in range(N)}
    assert all(np.array_equal(masks[(t, 2)], disc(1, t)) for t in range(N))


def test_an_object_outside_every_fix_can_be_removed_while_a_fix_is_in_force(user):
    third = user.add_object("c")
    user.paint(EDIT, disc(2, EDIT), third.obj_id)
    user.fix_identity("swap", 1, 2, K)
    user.fix_identity("swap", 1, 2, EDIT)
    with pytest.raises(UserError) as err:
        user.remove_object(2)
    assert err.value.message == (
        f"Object 2 is part of a swap from frame {K}; undo the last 2 fixes first, then remove it."
    )
    before = shown(user)
    user.remove_object(third.obj_id)
    assert changed(before, shown(user)) == {(EDIT, third.obj_id)}


def test_a_rename_after_a_swap_names_the_object_as_shown_on_every_frame(user):
    user.fix_identity("swap", 1, 2, K)
    user.rename_object(1, "queen")
    with open(user.export(video=False).csv, newline="", encoding="utf-8") as fh:
        rows = {(int(r["frame"]), int(r["object_id"])): r for r in csv.DictReader(fh)}
    for t in range(N):
        assert rows[(t, 1)]["object_name"] == "queen" and rows[(t, 2)]["object_name"] == "b"
        x = float(rows[(t, 1)]["centroid_x"])
        assert x == pytest.approx(DISCS[1 if t >= K else 0].center(t)[0], abs=0.5)


def test_objects_started_from_labels_on_a_later_frame_keep_the_fixed_ones(user):
    from PIL import Image

    user.fix_identity("swap", 1, 2, K)
    before = shown(user)
    labels = disc(2, EDIT).astype(np.uint8) * 7
    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG")
    (added,) = user.start_from_labels(buf.getvalue(), EDIT, name="labels.png")
    after = shown(user)
    assert changed(before, after) == {(EDIT, added.obj_id)}
    assert np.array_equal(after[(EDIT, added.obj_id)], disc(2, EDIT))


# ---------------------------------------------------------------------- merges
def test_after_a_merge_edits_of_the_kept_object_go_to_it_and_of_the_merged_one_are_refused(
    user,
):
    user.fix_identity("merge", 1, 2, K)
    before = shown(user)
    assert (EDIT, 2) not in before
    assert np.array_equal(before[(EDIT, 1)], disc(0, EDIT) | disc(1, EDIT))
    sentence = (
        f"Object 2 is merged into object 1 from frame {K}, so it is not shown on frame "
        f"{EDIT}; edit object 1 there, or undo that fix first."
    )
    refused = [
        lambda: user.click(EDIT, 96, 38, obj_id=2),
        lambda: user.add_box(EDIT, 80, 20, 110, 50, obj_id=2),
        lambda: user.paint(EDIT, disc(1, EDIT), obj_id=2),
        lambda: user.mask_on(EDIT, 2),
        lambda: user.undo(EDIT, 2),
        lambda: user.clear_frame(EDIT, 2),
    ]
    for edit in refused:
        with pytest.raises(UserError) as err:
            edit()
        assert err.value.message == sentence
    assert changed(before, shown(user)) == set()
    with pytest.raises(UserError, match=f"^Object 2 is part of a merge from frame {K}; "):
        user.remove_object(2)
    with pytest.raises(UserError, match=f"^Object 1 is part of a merge from frame {K}; "):
        user.remove_object(1)

    # The kept object's edit goes to its own tracker object: its mask is the union again.
    user.paint(EDIT, disc(0, EDIT) | EXTRA, obj_id=1)
    assert user.tracking.history[-1].obj == 1
    after = shown(user)
    assert changed(before, after) == {(EDIT, 1)}
    assert np.array_equal(after[(EDIT, 1)], disc(0, EDIT) | disc(1, EDIT) | EXTRA)
    # Before the merge starts, the merged object is itself.
    user.paint(K - 1, disc(1, K - 1) | EXTRA, obj_id=2)
    assert np.array_equal(shown(user)[(K - 1, 2)], disc(1, K - 1) | EXTRA)


# ---------------------------------------------------------------------- the files
H, W, T, FPS = 120, 160, 7, 10.0
# The mover jumps 20 px a frame, so its disc (radius 6) is wholly inside MIDDLE on frames
# 2 and 3 and wholly outside it on the others; the still disc is always wholly in CORNER.
MOVER = synth.Disc(x0=10, y0=60, vx=20, vy=0, radius=6, color=(230, 60, 40))
STILL = synth.Disc(x0=150, y0=60, vx=0, vy=0, radius=6, color=(40, 90, 230))
MIDDLE = Rect("middle", 40, 20, 80, 100)
CORNER = Rect("corner", 140, 40, 160, 80)
SWAP_AT = 3


def _scripted(engine, tmp_path) -> UserSession:
    frames = synth.make_frames(T, H, W, discs=(MOVER, STILL))
    clip = synth.write_image_zip(tmp_path / "discs.zip", frames, shuffle_names=False)
    user = UserSession(engine)
    user.upload(clip, source_name="discs.zip", fps=FPS)
    user.click(0, 10, 60)  # object 1
    user.add_object("still")
    user.click(0, 150, 60)  # object 2
    store = user.tracking.store
    for t in range(T):
        masks = {1: synth.disc_mask(H, W, MOVER, t), 2: synth.disc_mask(H, W, STILL, t)}
        store.write(t, masks, {1: 1.0 + t, 2: 2.0})
    return user


def _stats(user: UserSession, min_overlap: float | None) -> dict:
    user.behaviour.setup = BehaviourSetup(zones=(MIDDLE, CORNER), min_overlap=min_overlap)
    out = user.export_behaviour()
    return {(s.object_id, s.zone): dataclasses.replace(s, membership="") for s in out.zone_stats}


def _files(user: UserSession) -> dict[str, bytes]:
    user.behaviour.setup = BehaviourSetup(zones=(MIDDLE, CORNER), min_overlap=1.0)
    out = user.export_behaviour()
    stacks = user.export_label_stacks()
    npz = user.export_science()["npz"]
    paths = {
        "zones": out.files["zones"],
        "occupancy 1": out.files["occupancy 1"],
        "heatmap 1": out.files["heatmap 1"],
        "labels": stacks["labels_tiff"],
        "ctc": stacks["ctc"],
        "npz": npz,
    }
    return {key: path.read_bytes() for key, path in paths.items()}


def test_after_a_swap_overlap_membership_equals_centroid_membership(engine, tmp_path):
    user = _scripted(engine, tmp_path)
    try:
        user.fix_identity("swap", 1, 2, SWAP_AT)
        by_centroid, by_overlap = _stats(user, None), _stats(user, 1.0)
        assert by_overlap == by_centroid
        # Frames inside, by construction: object 1 is the mover before the swap.
        inside = {(o, z): s.frames_inside for (o, z), s in by_overlap.items()}
        assert inside == {
            (1, "middle"): 1,  # frame 2
            (1, "corner"): T - SWAP_AT,
            (2, "middle"): 1,  # frame 3
            (2, "corner"): SWAP_AT,
        }
    finally:
        user.close()


def test_after_a_swap_the_label_stacks_equal_the_npz_and_undo_restores_every_file(engine, tmp_path):
    user = _scripted(engine, tmp_path)
    try:
        before = _files(user)
        user.fix_identity("swap", 1, 2, SWAP_AT)
        swapped = _files(user)
        frames, ids, masks = read_npz(user.export_science()["npz"])
        assert list(frames) == list(range(T)) and list(ids) == [1, 2]
        for t in range(T):  # the NPZ has the fixed identities
            first, second = (STILL, MOVER) if t >= SWAP_AT else (MOVER, STILL)
            assert np.array_equal(masks[t, 0], synth.disc_mask(H, W, first, t))
            assert np.array_equal(masks[t, 1], synth.disc_mask(H, W, second, t))
        expected = np.zeros((T, H, W), np.uint16)
        for k, obj_id in enumerate(ids):
            expected[masks[:, k]] = obj_id
        assert_nontrivial(list(masks.reshape(-1, H, W)), "fixed masks")

        stacks = user.export_label_stacks()
        with tifffile.TiffFile(stacks["labels_tiff"]) as tf:
            labels = tf.asarray()
        assert np.array_equal(labels, expected)
        with zipfile.ZipFile(stacks["ctc"]) as zf:
            ctc = np.stack(
                [tifffile.imread(io.BytesIO(zf.read(f"mask{t:03d}.tif"))) for t in range(T)]
            )
            tracks = zf.read("res_track.txt").decode().splitlines()
        assert np.array_equal(ctc, expected)
        assert tracks == [f"1 0 {T - 1} 0", f"2 0 {T - 1} 0"]

        assert all(swapped[key] != before[key] for key in before), [
            key for key in before if swapped[key] == before[key]
        ]
        user.undo_fix()
        undone = _files(user)
        assert [key for key in before if undone[key] != before[key]] == []
    finally:
        user.close()
