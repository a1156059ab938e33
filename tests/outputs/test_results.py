"""Results computed once: one Track press hands each tracked frame's masks to every export
without reading them back (a pass after tracking reads each stored mask once); the files
equal those the single-purpose writers give; later calls reuse the results."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import sys

import numpy as np
import pytest

from sam2web.outputs.maskfiles import (
    read_coco_rle,
    read_npz,
    write_coco_rle,
    write_masks_zip,
    write_npz,
)
from sam2web.outputs.video import LiveOverlayVideo
from sam2web.session.user import UserSession
from sam2web.tracking.maskstore import MaskStore
from tests import synth
from tests.masks import assert_nontrivial, stored_masks

FRAMES = 6


@pytest.fixture
def reads(monkeypatch):
    """Counts MaskStore.read calls per frame made by the export passes (the overlay
    video's pass and results.walk), not by tracking itself or the page's frame view."""
    counts: collections.Counter = collections.Counter()
    original = MaskStore.read

    def counting(self, frame_idx):
        caller = sys._getframe(1).f_code.co_name
        if caller in ("render_overlay_video", "walk", "_read"):
            counts[frame_idx] += 1
        return original(self, frame_idx)

    monkeypatch.setattr(MaskStore, "read", counting)
    return counts


@pytest.fixture
def served(monkeypatch):
    """Counts the frames the pass beside tracking gave its outputs, read or handed over."""
    counts: collections.Counter = collections.Counter()
    original = LiveOverlayVideo._read

    def counting(self, frame_idx):
        counts[frame_idx] += 1
        return original(self, frame_idx)

    monkeypatch.setattr(LiveOverlayVideo, "_read", counting)
    return counts


def _tracked(engine, tmp_path) -> UserSession:
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(FRAMES, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    user.click(0, 40, 60)
    user.add_object("b")
    user.click(0, 120, 40)
    return user


def _as_the_page_does(user: UserSession) -> None:
    """What one press of Track runs: tracking, then every export and the review table."""
    list(user.propagate())
    user.export()
    user.export_science(user.calibration)
    user.review()


def test_one_track_press_hands_each_frame_over_once(engine, tmp_path, reads, served):
    user = _tracked(engine, tmp_path)
    try:
        _as_the_page_does(user)
        assert_nontrivial(stored_masks(user.tracking.store))
        assert dict(served) == {f: 1 for f in range(FRAMES)}  # every frame, once
        assert not reads  # each was tracked, so none was read back from the store
        # Measuring again with another calibration reads no mask at all.
        reads.clear()
        user.calibration = dataclasses.replace(user.calibration, pixels_per_unit=2.0, unit="mm")
        user.export()
        user.export_science(user.calibration)
        user.review()
        assert not reads
    finally:
        user.close()


def test_a_changed_style_or_a_new_click_reads_the_masks_again_once(engine, tmp_path, reads):
    user = _tracked(engine, tmp_path)
    try:
        _as_the_page_does(user)
        reads.clear()
        user.style = dataclasses.replace(user.style, opacity=0.9)
        user.export()
        assert dict(reads) == {f: 1 for f in range(FRAMES)}  # the video is drawn anew
        reads.clear()
        user.click(2, 44, 61, "negative", obj_id=1)
        user.export()
        user.export_science()
        assert dict(reads) == {f: 1 for f in range(FRAMES)}
    finally:
        user.close()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_one_pass_writes_what_each_writer_writes_alone(engine, tmp_path):
    user = _tracked(engine, tmp_path)
    try:
        _as_the_page_does(user)
        science = user.export_science()
        tracking = user.tracking
        objects = list(tracking.objects.values())
        alone = tmp_path / "alone"
        npz = write_npz(tracking.store, objects, user.info, alone / "m.npz")
        coco = write_coco_rle(tracking.store, objects, user.info, alone / "m.json")
        zipped = write_masks_zip(tracking.store, objects, user.info, alone / "m.zip")
        for a, b in zip(read_npz(science["npz"]), read_npz(npz), strict=True):
            assert np.array_equal(a, b)
        ours, theirs = read_coco_rle(science["coco"]), read_coco_rle(coco)
        assert ours.keys() == theirs.keys() and ours
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
        import zipfile

        with zipfile.ZipFile(user.exports.masks) as za, zipfile.ZipFile(zipped) as zb:
            assert za.namelist() == zb.namelist()
            assert all(za.read(n) == zb.read(n) for n in za.namelist())
    finally:
        user.close()
