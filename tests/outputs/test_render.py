"""Overlays, prompt markers and the MP4 writer, checked on pixels and on the encoded file."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from sam2web.outputs.render import (
    OverlayStyle,
    draw_overlay,
    draw_prompts,
    gallery_indices,
    recent_centroids,
)
from sam2web.outputs.video import Mp4Writer, render_overlay_video
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import TAB10, TrackedObject, color_for
from tests import synth

H, W = 120, 160
DISC = synth.DEFAULT_DISCS[0]
PLAIN = OverlayStyle(opacity=0.5, contours=False, labels=False)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return synth.make_frames(num_frames=10, height=H, width=W)


def objects(*names: str) -> dict[int, TrackedObject]:
    return {i: TrackedObject(i, name, color_for(i)) for i, name in enumerate(names, start=1)}


def boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    inner = cv2.erode(mask.astype(np.uint8), cross).astype(bool)
    return mask & ~inner


def read_video(path: Path) -> tuple[dict, np.ndarray]:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen])
    return meta, frames


def top_level_boxes(path: Path) -> list[str]:
    """Types of the MP4's top-level boxes, in file order."""
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        boxes.append(kind.decode("latin-1"))
        pos += size
    return boxes


def test_palette_is_matplotlib_tab10():
    from matplotlib import colormaps

    expected = [tuple(round(c * 255) for c in rgb) for rgb in colormaps["tab10"].colors]
    assert expected == TAB10
    assert color_for(1) == TAB10[0] and color_for(10) == TAB10[9] and color_for(11) == TAB10[0]


def test_mask_pixels_take_the_blended_colour(frames):
    frame = frames[0]
    before = frame.copy()
    mask = synth.disc_mask(H, W, DISC, 0)
    objs = objects("disc")
    for opacity in (0.3, 0.5, 0.8):
        style = OverlayStyle(opacity=opacity, contours=False, labels=False)
        out = draw_overlay(frame, {1: mask}, objs, style)
        expected = (1 - opacity) * frame[mask].astype(float) + opacity * np.array(color_for(1))
        assert np.abs(out[mask].astype(float) - expected).max() <= 1.0
        np.testing.assert_array_equal(out[~mask], frame[~mask])
    np.testing.assert_array_equal(frame, before)  # the input is not modified


def test_tint_is_the_float32_blend_of_every_pixel_value_rounded():
    # Every value 0..255 in every channel, under a mask with holes that does not fill its
    # bounding box: inside, rint of the float32 blend computed pixel by pixel; outside
    # (holes included) the frame unchanged.
    values = np.arange(256, dtype=np.uint8)
    frame = np.zeros((40, 64, 3), dtype=np.uint8)
    frame[4:36, 0:64] = (
        np.stack([values, values[::-1], np.roll(values, 77)], -1)
        .reshape(32, 8, 3)
        .repeat(8, axis=1)[:, :64]
    )
    mask = np.zeros((40, 64), dtype=bool)
    mask[4:36, 3:61] = True
    mask[10:20, 20:30] = False  # a hole
    objs = {1: TrackedObject(1, "o", (201, 17, 96))}
    for opacity in (0.0, 0.3, 0.55, 1 / 3, 1.0):
        out = draw_overlay(frame, {1: mask}, objs, OverlayStyle(opacity, False, False))
        pixels = frame[mask].astype(np.float32)
        colour = np.asarray(objs[1].color, dtype=np.float32)
        blend = np.rint(pixels * np.float32(1 - opacity) + colour * np.float32(opacity))
        np.testing.assert_array_equal(out[mask], blend.astype(np.uint8))
        np.testing.assert_array_equal(out[~mask], frame[~mask])


def test_only_listed_objects_are_drawn_later_on_top(frames):
    a = np.zeros((H, W), bool)
    a[20:60, 20:60] = True
    b = np.zeros((H, W), bool)
    b[40:80, 40:80] = True
    style = OverlayStyle(opacity=1.0, contours=False, labels=False)
    objs = objects("a", "b")
    out = draw_overlay(frames[0], {1: a, 2: b, 9: np.ones((H, W), bool)}, objs, style)
    assert tuple(out[50, 50]) == color_for(2)
    assert tuple(out[25, 25]) == color_for(1)
    np.testing.assert_array_equal(out[100:, 100:], frames[0][100:, 100:])  # id 9 not listed
    reordered = {2: objs[2], 1: objs[1]}
    assert tuple(draw_overlay(frames[0], {1: a, 2: b}, reordered, style)[50, 50]) == color_for(1)


def test_contours_outline_the_mask(frames):
    frame = frames[0]
    mask = synth.disc_mask(H, W, DISC, 0)
    objs = objects("disc")
    out = draw_overlay(frame, {1: mask}, objs, OverlayStyle(labels=False))
    edge = boundary(mask)
    colour = np.array(color_for(1))
    on_edge = (np.abs(out[edge].astype(int) - colour).max(axis=1) <= 1).mean()
    assert on_edge > 0.95
    plain = draw_overlay(frame, {1: mask}, objs, PLAIN)
    assert (np.abs(plain[edge].astype(int) - colour).max(axis=1) <= 1).mean() < 0.05
    interior = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    np.testing.assert_array_equal(out[interior], plain[interior])


def test_label_is_drawn_above_the_mask(frames):
    frame = frames[0]
    mask = synth.disc_mask(H, W, DISC, 0)  # centre (40, 60), radius 14: top row 46
    objs = objects("cell A")
    with_label = draw_overlay(frame, {1: mask}, objs, OverlayStyle(contours=False))
    plain = draw_overlay(frame, {1: mask}, objs, PLAIN)
    changed = np.abs(with_label.astype(int) - plain.astype(int)).sum(axis=2) > 0
    rows, cols = np.nonzero(changed)
    assert rows.size > 50
    assert rows.max() <= 46 and rows.min() >= 46 - 25  # just above the disc's top
    assert abs((cols.min() + cols.max()) / 2 - 40) <= 3  # centred on the disc
    assert (np.abs(with_label[changed].astype(int) - color_for(1)).max(axis=1) <= 1).mean() > 0.3


def test_label_stays_inside_the_frame_at_the_top_edge(frames):
    mask = np.zeros((H, W), bool)
    mask[0:20, 150:160] = True
    out = draw_overlay(
        frames[0], {1: mask}, objects("a long object name"), OverlayStyle(contours=False)
    )
    assert out.shape == frames[0].shape
    assert (np.abs(out[:20, 60:150].astype(int) - frames[0][:20, 60:150]).sum(axis=2) > 0).any()


def test_trails_join_recent_centroids(tmp_path, frames):
    fast = synth.Disc(x0=20, y0=60, vx=10, vy=0, radius=8, color=(0, 0, 0))
    store = MaskStore(tmp_path / "m", H, W)
    for t in range(6):
        store.write(t, {1: synth.disc_mask(H, W, fast, t)}, {1: 1.0})
    trails = recent_centroids(store, 5, 6, [1])
    assert len(trails[1]) == 6
    assert trails[1][0] == pytest.approx(fast.center(0), abs=0.1)
    mask = synth.disc_mask(H, W, fast, 5)
    style = OverlayStyle(opacity=0.0, contours=False, labels=False, trails=6)
    out = draw_overlay(frames[5], {1: mask}, objects("disc"), style, trails)
    x, y = fast.center(1)  # on the path, outside the current disc
    assert not mask[int(y), int(x)]
    assert np.abs(out[int(y), int(x)].astype(int) - color_for(1)).max() < 60
    assert (out[:50] == frames[5][:50]).all()  # nothing away from the path
    off = OverlayStyle(opacity=0.0, contours=False, labels=False, trails=0)
    np.testing.assert_array_equal(
        draw_overlay(frames[5], {1: mask}, objects("disc"), off, trails), frames[5]
    )


def test_prompts_green_positive_red_negative_box_in_object_colour(frames):
    frame = frames[0]
    out = draw_prompts(
        frame, [(40.0, 60.0, True), (120.5, 30.5, False)], (10, 10, 70, 90), color_for(3)
    )
    r, g, b = out[60, 40].astype(int)
    assert g > 100 and r < 60 and b < 60
    r, g, b = out[30, 120].astype(int)
    assert r > 200 and g < 60 and b < 60
    edge_colour = np.abs(out[10:90, 10].astype(int) - color_for(3)).max(axis=1)
    assert (edge_colour < 40).mean() > 0.8
    assert (out != frame).any(axis=2).sum() < 0.2 * H * W
    # a white edge around each star
    ring = out[60 - 8 : 60 + 9, 40 - 8 : 40 + 9].reshape(-1, 3)
    assert (ring.min(axis=1) > 200).any()


def test_gallery_indices():
    assert gallery_indices(5) == [0, 1, 2, 3, 4]
    picks = gallery_indices(1000, 24)
    assert len(picks) == 24 and picks[0] == 0 and picks[-1] == 999
    assert picks == sorted(set(picks))
    assert gallery_indices(0) == [] and gallery_indices(10, 1) == [0]


@pytest.mark.parametrize("fps", [10.0, 29.97, 30000 / 1001])
def test_mp4_pads_odd_sizes_and_keeps_fps(tmp_path, fps):
    src = synth.make_frames(num_frames=6, height=121, width=161)
    path = tmp_path / "odd.mp4"
    with Mp4Writer(path, 161, 121, fps) as writer:
        for frame in src:
            writer.write(frame)
    meta, decoded = read_video(path)
    assert meta["size"] == (162, 122)
    assert meta["pix_fmt"].startswith("yuv420p")
    assert meta["codec"] == "h264"
    assert meta["fps"] == pytest.approx(fps, abs=0.005)
    assert len(decoded) == len(src)
    diff = np.abs(decoded[:, :121, :161].astype(float) - src.astype(float))
    assert diff.mean() < 4.0  # same picture, not rescaled or shifted
    assert decoded[:, 121, :].mean() < 20 and decoded[:, :, 161].mean() < 20  # black padding
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")  # playable while downloading
    assert [p.name for p in tmp_path.iterdir()] == ["odd.mp4"]  # no temporary files left


def test_mp4_writer_refuses_bad_frames_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.mp4"
    writer = Mp4Writer(path, 64, 48, 25.0)
    with pytest.raises(ValueError):
        writer.write(np.zeros((48, 65, 3), np.uint8))
    with pytest.raises(RuntimeError, match="no frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError), Mp4Writer(path, 64, 48, 25.0) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
        raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        Mp4Writer(path, 64, 48, 0.0)


def test_mp4_writer_reports_an_encoder_failure(tmp_path):
    writer = Mp4Writer(tmp_path / "x.mp4", 64, 48, 25.0, crf=-5)  # libx264 refuses crf -5
    with pytest.raises(RuntimeError, match="failed.*crf"):
        for _ in range(3):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_overlay_video_tints_the_tracked_disc(tmp_path, frames):
    store = MaskStore(tmp_path / "masks", H, W)
    for t in range(9):  # frame 9 has no result and must be written as it is
        store.write(t, {1: synth.disc_mask(H, W, DISC, t)}, {1: 2.0})
    objs = objects("disc")
    calls = []
    path = render_overlay_video(
        ((t, frames[t]) for t in range(10)),
        store,
        objs,
        OverlayStyle(opacity=0.6),
        tmp_path / "overlay.mp4",
        fps=10.0,
        progress=lambda d, n: calls.append(d),
        total=10,
    )
    meta, decoded = read_video(path)
    assert len(decoded) == 10 and meta["fps"] == pytest.approx(10.0)
    assert calls == list(range(1, 11))
    tinted = 0.4 * np.array(DISC.color) + 0.6 * np.array(color_for(1))
    for t in range(10):
        cx, cy = DISC.center(t)
        centre = decoded[t, int(cy), int(cx)].astype(float)
        expected = tinted if t < 9 else np.array(DISC.color, float)
        assert np.abs(centre - expected).max() < 12, t
        bg = (100, 10)  # (row, col) far from both discs
        assert np.abs(decoded[t, bg[0], bg[1]].astype(float) - frames[t][bg]).max() < 12
