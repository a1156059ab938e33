"""The example clip's drawing: the same pixels on every run, and animals that are where
their poses say, apart from each other and inside the frame on every frame."""

from __future__ import annotations

import math

import numpy as np

from sam2web.media import example as ex


def test_the_clip_is_the_same_on_every_run_and_has_the_stated_size():
    first, second = list(ex.example_frames()), list(ex.example_frames())
    assert len(first) == 60
    assert all(f.shape == (270, 480, 3) and f.dtype == np.uint8 for f in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])  # the animals move


def test_each_animal_is_dark_where_its_pose_says_and_the_floor_light_elsewhere():
    frames = list(ex.example_frames())
    for index in (0, 17, 59):
        grey = frames[index].astype(float).mean(axis=2)
        masks = [ex.animal_mask(a.pose(index)) for a in ex.ANIMALS]
        animals = np.logical_or.reduce(masks)
        assert grey[animals].max() < 60
        assert grey[~animals].min() > 120  # light floor, however textured
        for pose, mask in zip((a.pose(index) for a in ex.ANIMALS), masks, strict=True):
            # The ellipse's area, counted in pixels, is pi * a * b within a few percent.
            area = math.pi * pose.half_length * pose.half_width
            assert abs(mask.sum() - area) < 0.05 * area


def test_animals_never_touch_and_stay_inside_the_frame():
    for frame in range(ex.NUM_FRAMES):
        masks = [ex.animal_mask(a.pose(frame)) for a in ex.ANIMALS]
        assert sum(m.sum() for m in masks) == np.logical_or.reduce(masks).sum()
        for mask in masks:
            rows, cols = np.nonzero(mask)
            assert rows.min() > 0 and cols.min() > 0
            assert rows.max() < ex.HEIGHT - 1 and cols.max() < ex.WIDTH - 1


def test_the_hint_points_lie_well_inside_their_animals():
    for (x, y), animal in zip(ex.hint_points(0), ex.ANIMALS, strict=True):
        mask = ex.animal_mask(animal.pose(0))
        assert mask[y - 3 : y + 4, x - 3 : x + 4].all()
