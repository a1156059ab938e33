"""Comparing a quality with the exact one: cases whose answer is known by construction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sam2web.history import prompt_actions
from sam2web.session.quality import QualityAgreement, Side, agreement_per_object, compare
from sam2web.tracking.tracker import TrackingSession
from sam2web.types import Click, FrameResult
from tests.masks import assert_nontrivial


def _agreement(mean: float, low: float) -> QualityAgreement:
    return QualityAgreement(
        0, 4, "the preview", "full quality", {1: (mean, low)}, {1: "a"}, 2.0, 0.5
    )


@pytest.mark.parametrize(
    ("mean", "low", "verdict", "words"),
    [
        (1.0, 1.0, "close", "agrees closely with full quality"),
        (0.97, 0.92, "close", "agrees closely"),
        (0.97, 0.5, "rough", "agrees only roughly"),
        (0.85, 0.8, "rough", "check the frames"),
        (0.5, 0.2, "differs", "differs from full quality"),
        (0.0, 0.0, "differs", "use full quality for this video"),
    ],
)
def test_the_sentence_follows_the_measured_iou(mean, low, verdict, words):
    report = _agreement(mean, low)
    assert report.verdict() == verdict
    sentence = report.sentence()
    assert words in sentence and f"{mean:.3f}" in sentence and f"{low:.3f}" in sentence
    assert "4.0× as fast" in sentence
    if verdict != "close":
        assert "agrees closely" not in sentence


def test_known_overlaps_give_known_iou():
    """Half-overlapping squares: IoU 1/3 on every frame; identical ones: 1."""
    a = np.zeros((20, 20), bool)
    a[0:10, 0:10] = True
    b = np.zeros((20, 20), bool)
    b[0:10, 5:15] = True
    ref = {f: {1: a, 2: a} for f in range(3)}
    cand = {f: {1: b, 2: a} for f in range(3)}
    iou = agreement_per_object(ref, cand, [1, 2])
    assert iou[1] == pytest.approx((1 / 3, 1 / 3)) and iou[2] == (1.0, 1.0)
    report = QualityAgreement(0, 2, "x", "full quality", iou, {1: "a", 2: "b"}, 1.0, 1.0)
    assert report.verdict() == "differs" and "differs from full quality" in report.sentence()


def test_the_same_resolution_on_both_sides_agrees_exactly(make_session, clip_mp4):
    """Both sides run the same model at the same resolution on the same clicks: every mask
    is identical (IoU exactly 1.0) and neither side is much faster."""
    user = make_session(clip_mp4)
    obj = user.add_object("red")
    user.add_click(0, obj.obj_id, Click(40, 60, True))
    actions = prompt_actions(user.history)
    # The first tracking run in a process builds oneDNN kernels for every new memory size;
    # run once so that neither timed side pays for that.
    list(user.propagate("forward", 0, 4))
    sides = [Side(f"side {i}", make_session(clip_mp4)) for i in range(2)]
    report = compare(sides[0], sides[1], actions, 0, 4, {obj.obj_id: "red"})
    assert_nontrivial(stored_masks_of(sides[0].session))
    assert report.iou == {obj.obj_id: (1.0, 1.0)}
    assert report.verdict() == "close" and "agrees closely" in report.sentence()
    assert 0.2 < report.speedup < 5.0  # the same work; the margin is for a loaded machine


def stored_masks_of(session) -> list[np.ndarray]:
    return [m for f in session.store.frames() for m in session.store.read(f).masks.values()]


class _Inverted(TrackingSession):
    """A candidate whose every tracked mask is the reference's complement (IoU 0)."""

    def propagate(self, *args, **kwargs):
        for step in super().propagate(*args, **kwargs):
            masks = {k: ~v for k, v in step.result.masks.items()}
            result = FrameResult(step.result.frame_idx, masks, step.result.scores)
            yield dataclasses.replace(step, result=result)


def test_a_candidate_with_complementary_masks_must_disagree(make_session, clip_mp4):
    ref, cand = make_session(clip_mp4), make_session(clip_mp4)
    cand.__class__ = _Inverted
    ref.add_object("red")
    ref.add_click(0, 1, Click(40, 60, True))
    actions = prompt_actions(ref.history)
    ref.reset()
    report = compare(Side("full quality", ref), Side("x", cand), actions, 0, 3, {1: "red"})
    assert_nontrivial(stored_masks_of(ref))
    assert report.iou == {1: (0.0, 0.0)}
    assert report.verdict() == "differs"
    assert "x differs from full quality, at a mask IoU of 0.000" in report.sentence()
