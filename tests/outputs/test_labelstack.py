"""Label TIFF stacks and the Cell Tracking Challenge layout, checked against the rules."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from sam2web.outputs.labelstack import (
    ctc_tracks,
    draw_labels,
    read_label_tiff,
    write_ctc,
    write_label_tiff,
)
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import VideoInfo
from tests import synth

H, W, N = 30, 40, 8
DISCS = {
    1: synth.Disc(x0=8, y0=8, vx=2, vy=0, radius=4, color=(0, 0, 0)),
    2: synth.Disc(x0=30, y0=20, vx=-2, vy=0, radius=3, color=(0, 0, 0)),
    5: synth.Disc(x0=20, y0=25, vx=0, vy=0, radius=2, color=(0, 0, 0)),
}
# Object 2 has no result on frames 2-3 and a negative score (absent) on frame 6, so its
# presence is 0-1, 4-5, 7; object 5 is there on frames 0-2 only.
ABSENT = {2: {2, 3}, 5: set(range(3, N))}


@pytest.fixture
def store(tmp_path) -> MaskStore:
    s = MaskStore(tmp_path / "masks", H, W)
    for f in range(N):
        masks, scores = {}, {}
        for obj_id, disc in DISCS.items():
            if f in ABSENT.get(obj_id, ()):
                continue
            masks[obj_id] = synth.disc_mask(H, W, disc, f)
            scores[obj_id] = -2.0 if (obj_id, f) == (2, 6) else 3.0
        s.write(f, masks, scores)
    return s


def present(obj_id: int, f: int) -> bool:
    return f not in ABSENT.get(obj_id, ()) and (obj_id, f) != (2, 6)


def test_label_tiff_round_trip(tmp_path, store):
    info = VideoInfo(N, W, H, 2.0, "cells.tif", "tiff", pixel_size=0.65, pixel_unit="µm")
    path = write_label_tiff(store, info, tmp_path / "labels.tif")
    stack = read_label_tiff(path)
    assert stack.labels.shape == (N, H, W) and stack.labels.dtype == np.uint16
    assert stack.frame_interval_s == pytest.approx(0.5)
    assert stack.pixel_size == pytest.approx(0.65, rel=1e-6) and stack.pixel_unit == "µm"
    for f in range(N):
        ids = {int(i) for i in np.unique(stack.labels[f]) if i}
        assert ids == {i for i in DISCS if present(i, f)}
        assert np.array_equal(stack.labels[f], draw_labels(store.read(f), H, W))
        assert np.array_equal(stack.labels[f] == 1, synth.disc_mask(H, W, DISCS[1], f))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX"
        assert tif.imagej_metadata["frames"] == N


def test_label_tiff_without_rate_or_scale(tmp_path, store):
    info = VideoInfo(N, W, H, 1.0, "frames.zip", "images", fps_is_nominal=True)
    stack = read_label_tiff(write_label_tiff(store, info, tmp_path / "l.tif", object_ids=[2, 1]))
    assert stack.frame_interval_s is None and stack.pixel_size is None
    assert not (stack.labels == 5).any()  # only the listed objects


def read_ctc(dest: Path) -> tuple[dict[str, np.ndarray], list[tuple[int, int, int, int]]]:
    if dest.suffix == ".zip":
        with zipfile.ZipFile(dest) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    else:
        files = {p.name: p.read_bytes() for p in dest.iterdir()}
    text = files.pop("res_track.txt").decode("ascii")
    tracks = [tuple(int(v) for v in line.split()) for line in text.splitlines()]
    masks = {n: tifffile.imread(io.BytesIO(d)) for n, d in files.items()}
    return masks, tracks


def check_ctc_rules(masks: dict[str, np.ndarray], tracks, num_frames: int) -> None:
    """The CTC result format, checked from the files alone."""
    digits = max(3, len(str(num_frames - 1)))
    assert sorted(masks) == [f"mask{f:0{digits}d}.tif" for f in range(num_frames)]
    by_frame = {int(re.fullmatch(r"mask(\d+)\.tif", n).group(1)): m for n, m in masks.items()}
    labels = {L: (B, E, P) for L, B, E, P in tracks}
    assert len(labels) == len(tracks), "labels must be unique"
    seen: dict[int, list[int]] = {}
    for f, m in by_frame.items():
        assert m.dtype == np.uint16 and m.ndim == 2
        for v in np.unique(m):
            if v:
                seen.setdefault(int(v), []).append(f)
    assert set(seen) == set(labels), "labels in the masks = labels in res_track.txt"
    for L, (B, E, P) in labels.items():
        assert 0 <= B <= E < num_frames
        assert sorted(seen[L]) == list(range(B, E + 1)), f"label {L} is not continuous"
        if P:
            assert P in labels and labels[P][1] < B, f"parent {P} of {L} must end before it"


@pytest.mark.parametrize("as_zip", [False, True])
def test_ctc_layout_follows_the_rules(tmp_path, store, as_zip):
    info = VideoInfo(N, W, H, 1.0, "x", "tiff")
    dest = tmp_path / ("res.zip" if as_zip else "01_RES")
    tracks = write_ctc(store, info, dest)
    masks, lines = read_ctc(dest)
    check_ctc_rules(masks, lines, N)
    # Object 2 splits at its gaps: label 2 on 0-1, then new labels with parent chains.
    assert lines == [(1, 0, 7, 0), (2, 0, 1, 0), (5, 0, 2, 0), (6, 4, 5, 2), (7, 7, 7, 6)]
    assert [(t.label, t.object_id) for t in tracks] == [(1, 1), (2, 2), (5, 5), (6, 2), (7, 2)]
    # The pixels are the objects' masks under their track labels.
    m4 = masks["mask004.tif"]
    assert np.array_equal(m4 == 6, synth.disc_mask(H, W, DISCS[2], 4))  # larger id on top
    assert not (m4 == 2).any()


def test_ctc_tracks_split_at_gaps_with_parents():
    tracks = ctc_tracks({3: [0, 1, 2, 5, 9, 10], 1: [4]})
    assert [(t.label, t.begin, t.end, t.parent) for t in tracks] == [
        (1, 4, 4, 0),
        (3, 0, 2, 0),
        (4, 5, 5, 3),
        (5, 9, 10, 4),
    ]


def test_ctc_digits_for_long_videos(tmp_path):
    s = MaskStore(tmp_path / "m", 4, 4)
    s.write(1000, {1: np.ones((4, 4), bool)}, {1: 1.0})
    masks_dir = tmp_path / "long"
    write_ctc(s, VideoInfo(1001, 4, 4, 1.0, "x", "tiff"), masks_dir)
    names = sorted(p.name for p in masks_dir.iterdir())
    assert names[0] == "mask0000.tif" and "mask1000.tif" in names
    assert (masks_dir / "res_track.txt").read_text() == "1 1000 1000 0\n"


def test_the_stacks_of_a_fixed_view_carry_the_fixed_identities_and_fixed_bytes(tmp_path, store):
    """A view with a swap (objects 1 and 5 from frame 1) gives the stacks of the store in
    which the swap was written; the same masks give the same bytes, whenever written."""
    import time

    from sam2web.analysis.identity import FixedStore, Swap

    info = VideoInfo(N, W, H, 1.0, "x", "tiff")
    fix = Swap(1, 5, 1)
    view = FixedStore(store, [fix])
    tiff_view = write_label_tiff(view, info, tmp_path / "view.tif").read_bytes()
    ctc_view = write_ctc(view, info, tmp_path / "view.zip")
    time.sleep(2.1)  # a zip's timestamps count in steps of 2 s
    write_ctc(view, info, tmp_path / "again.zip")
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "view.zip").read_bytes()
    fix.apply(store)  # the same masks, written into the store
    assert write_label_tiff(store, info, tmp_path / "s.tif").read_bytes() == tiff_view
    assert write_ctc(store, info, tmp_path / "s.zip") == ctc_view
    assert (tmp_path / "s.zip").read_bytes() == (tmp_path / "view.zip").read_bytes()
    labels = read_label_tiff(tmp_path / "view.tif").labels
    assert not (labels[4] == 1).any()  # object 5 had no result there: now object 1 has none
    assert np.array_equal(labels[1] == 5, synth.disc_mask(H, W, DISCS[1], 1))
