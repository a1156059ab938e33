"""Identity fixes on a MaskStore and on tables, and gap filling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sam2web.analysis.identity import (
    FixedStore,
    Merge,
    Swap,
    check_removal,
    fill_gaps,
    fix_from_json,
    shown_object,
    tracker_object,
)
from sam2web.analysis.results import measurements
from sam2web.errors import PromptError
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import TrackedObject, VideoInfo
from tests import synth
from tests.tables import make_rows

H, W, N = 40, 60, 6
DISCS = (
    synth.Disc(x0=10, y0=10, vx=4, vy=0, radius=4, color=(255, 0, 0)),
    synth.Disc(x0=50, y0=30, vx=-4, vy=0, radius=3, color=(0, 0, 255)),
)
OBJECTS = [TrackedObject(1, "a", (255, 0, 0)), TrackedObject(2, "b", (0, 0, 255))]
INFO = VideoInfo(N, W, H, 10.0, "discs", "video")


@pytest.fixture
def store(tmp_path) -> MaskStore:
    """Object 1 = disc 0 and object 2 = disc 1 on every frame, except object 2 has no
    result on frame 4; scores 1.0 + frame / 10 and 2.0 + frame / 10."""
    s = MaskStore(tmp_path / "masks", H, W)
    for f in range(N):
        masks = {1: synth.disc_mask(H, W, DISCS[0], f)}
        scores = {1: 1.0 + f / 10}
        if f != 4:
            masks[2] = synth.disc_mask(H, W, DISCS[1], f)
            scores[2] = 2.0 + f / 10
        s.write(f, masks, scores)
    return s


def snapshot(store: MaskStore) -> dict:
    out = {}
    for f in range(N):
        r = store.read(f)
        out[f] = {} if r is None else {i: (r.masks[i].copy(), r.scores[i]) for i in r.masks}
    return out


def same(x: dict, y: dict) -> bool:
    return x.keys() == y.keys() and all(
        x[f].keys() == y[f].keys()
        and all(np.array_equal(x[f][i][0], y[f][i][0]) and x[f][i][1] == y[f][i][1] for i in x[f])
        for f in x
    )


def test_swap_from_a_frame_and_its_inverse(store):
    before = snapshot(store)
    fix = Swap(1, 2, from_frame=3)
    fix.apply(store)
    after = snapshot(store)
    for f in range(3):
        assert np.array_equal(after[f][1][0], before[f][1][0])
    for f in (3, 5):
        assert np.array_equal(after[f][1][0], before[f][2][0]) and after[f][1][1] == before[f][2][1]
        assert np.array_equal(after[f][2][0], before[f][1][0]) and after[f][2][1] == before[f][1][1]
    assert set(after[4]) == {2}  # only object 1 had a result: it moves to object 2
    fix.inverse().apply(store)
    assert same(snapshot(store), before)


def test_swap_on_a_range_of_frames(store):
    before = snapshot(store)
    Swap(2, 1, from_frame=1, stop=3).apply(store)
    after = snapshot(store)
    assert np.array_equal(after[1][1][0], before[1][2][0])
    assert np.array_equal(after[2][2][0], before[2][1][0])
    assert np.array_equal(after[3][1][0], before[3][1][0])


def test_swap_on_rows_matches_remeasuring(store):
    rows = measurements(store, OBJECTS, INFO)
    fix = Swap(1, 2, from_frame=2)
    predicted = fix.apply_to_rows(rows)
    fix.apply(store)
    assert _same_rows(predicted, measurements(store, OBJECTS, INFO))
    assert _same_rows(fix.apply_to_rows(predicted), rows)


def _same_rows(x, y) -> bool:
    """Equal rows, NaN scores counting as equal."""

    def key(r):
        return tuple(
            "nan" if isinstance(v, float) and math.isnan(v) else v for v in r.__dict__.values()
        )

    return [key(r) for r in x] == [key(r) for r in y]


def test_merge_unions_masks_and_keeps_the_larger_score(store):
    before = snapshot(store)
    Merge(target=1, source=2, from_frame=2).apply(store)
    after = snapshot(store)
    assert set(after[1]) == {1, 2}
    for f in (2, 3, 5):
        assert set(after[f]) == {1}
        assert np.array_equal(after[f][1][0], before[f][1][0] | before[f][2][0])
        assert after[f][1][1] == before[f][2][1]  # 2.x > 1.x
    assert np.array_equal(after[4][1][0], before[4][1][0]) and after[4][1][1] == before[4][1][1]


def test_merge_on_rows_matches_remeasuring_for_disjoint_masks(store):
    rows = measurements(store, OBJECTS, INFO)
    fix = Merge(1, 2, from_frame=2)
    predicted = fix.apply_to_rows(rows)
    fix.apply(store)
    actual = measurements(store, OBJECTS, INFO)
    for p, a in zip(predicted, actual, strict=True):
        assert (p.frame, p.object_id, p.present, p.area_px) == (
            a.frame,
            a.object_id,
            a.present,
            a.area_px,
        )
        assert (p.bbox_x, p.bbox_y, p.bbox_w, p.bbox_h) == (a.bbox_x, a.bbox_y, a.bbox_w, a.bbox_h)
        if p.present:
            assert p.centroid_x == pytest.approx(a.centroid_x)
            assert p.centroid_y == pytest.approx(a.centroid_y)
            assert p.score == a.score


def test_fixes_round_trip_through_json_and_refuse_bad_input():
    for fix in (Swap(1, 2, 3), Swap(2, 5, 0, stop=9), Merge(1, 2, 7)):
        assert fix_from_json(json.loads(json.dumps(fix.to_json()))) == fix
    with pytest.raises(PromptError) as err:
        Swap(1, 1, 0)
    assert str(err.value) == "Choose two different objects to swap."
    for bad in (lambda: Swap(0, 1, 0), lambda: Merge(1, 2, -1), lambda: Swap(1, 2, 5, stop=5)):
        with pytest.raises(PromptError):
            bad()
    for data in ({"op": "rename"}, {"op": "swap", "a": 1}, {"op": "merge", "target": "x"}):
        with pytest.raises(PromptError):
            fix_from_json(data)


def test_fill_gaps_interpolates_short_absences_only():
    path = [(0, 0), None, None, (30, 60), None, None, None, (30, 0), None]
    rows = make_rows({1: path, 2: [(5, 5)] * 9})
    filled, flags = fill_gaps(rows, max_gap=2)
    mine = [(r, f) for r, f in zip(filled, flags, strict=True) if r.object_id == 1]
    assert [f for _, f in mine] == [False, True, True, False, False, False, False, False, False]
    assert (mine[1][0].centroid_x, mine[1][0].centroid_y) == (10, 20)
    assert (mine[2][0].centroid_x, mine[2][0].centroid_y) == (20, 40)
    assert mine[1][0].present and math.isnan(mine[1][0].score) and mine[1][0].area_px is None
    assert not mine[4][0].present and not mine[8][0].present
    filled3, flags3 = fill_gaps(rows, max_gap=3)
    assert sum(flags3) == 5
    assert filled3[2 * 4].centroid_y == pytest.approx(45)  # object 1 on frame 4
    assert filled3[2 * 5].centroid_y == pytest.approx(30)
    assert fill_gaps(rows, 0)[0] == rows
    with pytest.raises(PromptError):
        fill_gaps(rows, -1)


def test_a_filled_row_lies_halfway_between_the_present_frames_around_it():
    # Present at frame 2 on (10, 40) and at frame 4 on (30, 20): frame 3 is halfway,
    # (10 + 30) / 2 = 20 and (40 + 20) / 2 = 30.
    rows = make_rows({1: [None, None, (10, 40), None, (30, 20), None]})
    filled, flags = fill_gaps(rows, max_gap=1)
    assert flags == [False, False, False, True, False, False]
    assert (filled[3].frame, filled[3].centroid_x, filled[3].centroid_y) == (3, 20.0, 30.0)
    assert filled[3].present and filled[3].area_px is None and math.isnan(filled[3].score)
    assert [r.present for r in filled] == [False, False, True, True, True, False]


def test_after_a_merge_the_gap_between_the_two_objects_tracks_is_filled():
    # Object 1 is seen until frame 3 on (6, 0), object 2 from frame 5 on (10, 20); merged
    # from frame 4, object 1's frame 4 lies halfway: ((6 + 10) / 2, (0 + 20) / 2) = (8, 10).
    one = [(0, 0), (2, 0), (4, 0), (6, 0), None, None, None]
    two = [None] * 5 + [(10, 20), (10, 22)]
    merged = Merge(1, 2, from_frame=4).apply_to_rows(make_rows({1: one, 2: two}))
    filled, flags = fill_gaps(merged, max_gap=1)
    ones = [(r, f) for r, f in zip(filled, flags, strict=True) if r.object_id == 1]
    assert [f for _, f in ones] == [False, False, False, False, True, False, False]
    assert (ones[4][0].centroid_x, ones[4][0].centroid_y) == (8.0, 10.0)
    assert [(r.centroid_x, r.centroid_y) for r, _ in ones[5:]] == [(10.0, 20.0), (10.0, 22.0)]
    assert not any(f for r, f in zip(filled, flags, strict=True) if r.object_id == 2)


def _flickering(n_frames: int) -> list:
    return make_rows({1: [(f, 2 * f) if f % 2 == 0 else None for f in range(n_frames)]})


def test_gap_filling_of_many_flickering_rows():
    """8,000 rows that flicker every frame (1.6 s before gap filling was one numpy.interp
    pass per object; the time itself is not asserted here)."""
    filled, flags = fill_gaps(_flickering(8_000), max_gap=1)
    assert sum(flags) == 3_999 and filled[7_999].present is False
    assert (filled[1].centroid_x, filled[1].centroid_y) == (1.0, 2.0)


# ---------------------------------------------------------------------- the identity rule
FIX_LISTS = (
    [Swap(1, 2, 2)],
    [Swap(1, 2, 2), Swap(2, 3, 4)],
    [Swap(1, 2, 2), Swap(1, 2, 3)],
    [Swap(3, 1, 1), Merge(2, 3, 3)],
    [Merge(1, 2, 2), Swap(1, 3, 1)],
    [Swap(1, 2, 1, stop=3), Merge(3, 1, 4)],
    # 2 folded into 3 from frame 4, then 3 into 2 from frame 2: 2 shows both from frame 2
    [Merge(3, 2, 4), Merge(2, 3, 2)],
    # 2 and 3 folded into 1, then 2 into 3: 3 stays folded away
    [Merge(1, 2, 1), Merge(1, 3, 1), Merge(3, 2, 2)],
)


@pytest.fixture
def three(tmp_path) -> MaskStore:
    """Objects 1, 2 and 3 as three disjoint squares on every frame."""
    s = MaskStore(tmp_path / "three", H, W)
    for f in range(N):
        masks = {}
        for obj_id in (1, 2, 3):
            m = np.zeros((H, W), bool)
            m[5:15, 5 + 18 * (obj_id - 1) : 15 + 18 * (obj_id - 1)] = True
            masks[obj_id] = m
        s.write(f, masks, {1: 1.0, 2: 2.0, 3: 3.0})
    return s


@pytest.mark.parametrize("fixes", FIX_LISTS, ids=str)
def test_an_edit_goes_to_the_tracker_object_shown_as_the_object(three, fixes):
    """Under any list of fixes, on every frame: the shown mask of an object contains its
    tracker object's own mask (equals it where no merge adds to it), shown_object takes
    the tracker object back, and exactly the objects the view does not show are refused."""
    view = FixedStore(three, fixes)
    for f in range(N):
        result = view.read(f)
        for obj_id in (1, 2, 3):
            try:
                tracker = tracker_object(fixes, obj_id, f)
            except PromptError as err:
                assert obj_id not in result.masks, (f, obj_id)
                assert str(err).startswith(f"Object {obj_id} is merged into object ")
                continue
            own = three.mask(f, tracker)
            assert (result.masks[obj_id] | own == result.masks[obj_id]).all(), (f, obj_id)
            if not any(isinstance(x, Merge) and x.covers(f) for x in fixes):
                assert np.array_equal(result.masks[obj_id], own), (f, obj_id)
            assert shown_object(fixes, tracker, f) == obj_id


def test_the_refusals_say_where_to_edit_and_what_to_undo():
    fixes = [Merge(1, 2, 2), Swap(1, 3, 1)]
    assert tracker_object(fixes, 3, 3) == 1  # 3 shows 1's tracker object, 2 folded in
    assert tracker_object(fixes, 2, 1) == 2  # before the merge: itself
    with pytest.raises(PromptError) as err:
        tracker_object(fixes, 2, 3)
    assert str(err.value) == (
        "Object 2 is merged into object 3 from frame 2, so it is not shown on frame 3; "
        "edit object 3 there, or undo the last 2 fixes first."
    )
    with pytest.raises(PromptError) as err:
        check_removal(fixes, 1)
    assert str(err.value) == (
        "Object 1 is part of a merge from frame 2; undo the last 2 fixes first, then remove it."
    )
    with pytest.raises(PromptError) as err:
        check_removal(fixes, 3)
    assert str(err.value) == (
        "Object 3 is part of a swap from frame 1; undo that fix first, then remove it."
    )
    check_removal(fixes, 4)  # no fix involves it
    assert tracker_object([], 5, 0) == shown_object([], 5, 0) == 5
