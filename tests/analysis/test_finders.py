"""The finders against synthetic truth: moving discs and ellipses over a textured still
background (noise, a lighting drift, two discs touching for a few frames), and bright
touching blobs on a dark noisy field."""

from __future__ import annotations

import numpy as np
import pytest

from sam2web.analysis.finders import FinderSettings, find_contrast, find_moving
from sam2web.errors import PromptError
from tests import synth

H, W, T = 240, 320, 40
TOUCH = range(7, 14)  # frames where the two discs touch


def _gap(t: int) -> float:
    return max(0.0, abs(t - 10) - 3) * 1.5


def arena() -> tuple[synth.Shape, ...]:
    """Two discs side by side (touching on :data:`TOUCH`), an ellipse and a small disc."""
    ra, rb = 13.0, 11.0
    a = tuple((60 + 4 * t, 70.0) for t in range(T))
    b = tuple((60 + 4 * t, 70 + ra + rb + _gap(t)) for t in range(T))
    ellipse = tuple((280 - 4 * t, 150 + 0.5 * t) for t in range(T))
    small = tuple((40 + 3 * t, 200.0) for t in range(T))
    return (
        synth.Shape(a, ra, ra, (230, 60, 40)),
        synth.Shape(b, rb, rb, (40, 90, 230)),
        synth.Shape(ellipse, 18, 9, (240, 220, 40), angle=30),
        synth.Shape(small, 8, 8, (30, 200, 60)),
    )


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synth.arena_frames(arena(), H, W, noise=3.0, drift=0.5)


def _truth(frame: int) -> list[tuple[float, float]]:
    return [s.centers[frame] for s in arena()]


def _match(found: list[tuple[float, float]], truth: list[tuple[float, float]]) -> float:
    """The largest distance (px) from each true centre to its nearest found one."""
    return max(min(np.hypot(fx - tx, fy - ty) for fx, fy in found) for tx, ty in truth)


@pytest.mark.parametrize("frame", [2, 8, 10, 12, 25])
def test_moving_objects_found_with_and_without_contact(clip, frame):
    settings = FinderSettings(count=4, min_area=50)
    found = find_moving(lambda i: clip[i], T, frame, settings)
    assert len(found) == 4
    assert _match([p.centroid for p in found], _truth(frame)) <= 2.0
    assert [p.number for p in found] == [1, 2, 3, 4]
    assert [p.area for p in found] == sorted((p.area for p in found), reverse=True)
    for p in found:  # the box encloses the blob
        rows, cols = np.nonzero(p.mask)
        assert p.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    if frame in TOUCH:  # the two discs form one blob of foreground, split in two
        a, b = (synth.shape_mask(H, W, s, frame) for s in arena()[:2])
        assert np.logical_and(np.roll(a, 1, axis=0), b).any()


def test_count_keeps_the_largest_and_area_limits_drop(clip):
    two = find_moving(lambda i: clip[i], T, 25, FinderSettings(count=2, min_area=50))
    assert _match([p.centroid for p in two], _truth(25)[:1] + _truth(25)[2:3]) <= 2.0
    capped = FinderSettings(count=4, min_area=50, max_area=450)  # only the two small discs
    found = find_moving(lambda i: clip[i], T, 25, capped)
    assert _match([p.centroid for p in found], [_truth(25)[1], _truth(25)[3]]) <= 2.0
    assert len(found) == 2


def test_refusals_change_nothing(clip):
    still = np.repeat(clip[:1], T, axis=0)
    with pytest.raises(PromptError, match="Nothing moves in this video"):
        find_moving(lambda i: still[i], T, 5, FinderSettings())
    # A frame whose objects stand where the background model has them: nothing moves there.
    parked = clip.copy()
    parked[20] = synth.background(H, W) + np.uint8(10)  # no object, a lighting change only
    with pytest.raises(PromptError, match="Nothing moves on frame 20"):
        find_moving(lambda i: parked[i], T, 20, FinderSettings(min_area=50))
    with pytest.raises(PromptError, match="more than the 2 allowed"):
        find_moving(lambda i: clip[i], T, 25, FinderSettings(count=2, min_area=50, max_blobs=2))


# ---------------------------------------------------------------------------- contrast
def cells(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A dark noisy field with bright discs of known labels, two pairs touching."""
    h, w = 200, 260
    discs = [
        ((50, 50), 14),
        ((50 + 28, 50), 14),  # touches the first
        ((160, 60), 18),
        ((160, 60 + 18 + 12), 12),  # touches the third
        ((90, 150), 10),
        ((210, 150), 16),
        ((130, 110), 9),
    ]
    truth = np.zeros((h, w), dtype=np.uint16)
    yy, xx = np.mgrid[0:h, 0:w]
    for label, ((cx, cy), r) in enumerate(discs, start=1):
        truth[(xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r] = label
    rng = np.random.default_rng(seed)
    image = np.where(truth > 0, 190.0, 30.0) + rng.normal(0, 12, size=(h, w))
    image[3:7, 3:7] = 255  # a speck, smaller than the minimum area
    return np.clip(image, 0, 255).astype(np.uint8), truth


def _ious(found: np.ndarray, truth: np.ndarray) -> list[float]:
    out = []
    for t in range(1, truth.max() + 1):
        want = truth == t
        best = max(
            (np.logical_and(want, found == f).sum() / np.logical_or(want, found == f).sum())
            for f in range(1, found.max() + 1)
        )
        out.append(float(best))
    return out


@pytest.mark.parametrize("threshold", [None, 110.0])
def test_contrast_finder_matches_the_truth(threshold):
    image, truth = cells()
    found = find_contrast(image, FinderSettings(count=20, min_area=40, threshold=threshold))
    assert found.dtype == np.uint16
    assert found.max() == truth.max() == len(np.unique(found)) - 1
    assert min(_ious(found, truth)) >= 0.9


def test_dark_objects_and_the_count():
    image, truth = cells()
    dark = 255 - image
    found = find_contrast(dark, FinderSettings(count=2, min_area=40, polarity="dark"))
    assert found.max() == 2  # the two largest, largest first
    for label, want in ((1, truth == 3), (2, truth == 6)):
        got = found == label
        assert np.logical_and(got, want).sum() / np.logical_or(got, want).sum() >= 0.9
    with pytest.raises(PromptError, match="one flat grey"):
        find_contrast(np.full((20, 20), 7, np.uint8), FinderSettings())
