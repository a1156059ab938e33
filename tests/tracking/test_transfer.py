"""Each tracked frame's masks and scores reach the CPU in one batched copy: on a CPU the
stored masks are exactly the per-object ``logits > 0`` of sam2's output, and where the copy
runs asynchronously (a GPU, stood in for here by CPU tensors) the values are read only
after the copy's event was waited for."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sam2web.tracking import transfer
from sam2web.types import Click


def two_object_session(make_session, clip_mp4):
    session = make_session(clip_mp4)
    a, b = session.add_object("a"), session.add_object("b")
    session.add_click(0, a.obj_id, Click(40, 60, True))  # the discs of tests/synth.py
    session.add_click(0, b.obj_id, Click(120, 60, True))
    return session


def record_outputs(session, monkeypatch) -> dict[int, tuple[list[int], torch.Tensor]]:
    """What sam2's propagation gave per frame: object ids and a copy of the logits."""
    seen: dict[int, tuple[list[int], torch.Tensor]] = {}
    real = session.predictor.propagate_in_video

    def recording(*args, **kwargs):
        for frame_idx, obj_ids, logits in real(*args, **kwargs):
            seen[frame_idx] = (list(obj_ids), logits.clone())
            yield frame_idx, obj_ids, logits

    monkeypatch.setattr(session.predictor, "propagate_in_video", recording)
    return seen


def state_score(state, frame_idx: int, obj_id: int) -> float:
    outputs = state["output_dict_per_obj"][state["obj_id_to_idx"][obj_id]]
    for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
        if frame_idx in outputs[key]:
            return float(outputs[key][frame_idx]["object_score_logits"].reshape(-1)[0])
    return math.nan


def test_cpu_masks_are_the_per_object_threshold_of_sam2s_logits(
    make_session, clip_mp4, monkeypatch
):
    session = two_object_session(make_session, clip_mp4)
    seen = record_outputs(session, monkeypatch)
    steps = list(session.propagate("forward", end_frame=3))
    assert [s.result.frame_idx for s in steps] == list(range(4)) == sorted(seen)
    for step in steps:
        obj_ids, logits = seen[step.result.frame_idx]
        assert sorted(step.result.masks) == sorted(obj_ids) == [1, 2]
        stored = session.store.read(step.result.frame_idx)
        for i, oid in enumerate(obj_ids):
            expected = (logits[i, 0] > 0.0).numpy()
            assert np.array_equal(step.result.masks[oid], expected)
            assert np.array_equal(stored.masks[oid], expected)
            want = state_score(session.state, step.result.frame_idx, oid)
            assert step.result.scores[oid] == want


class FakeGpu:
    """Stands in for CUDA: "pinned" buffers start filled with wrong values, copies happen
    only when the event they were recorded before is waited for."""

    def __init__(self):
        self.queued: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.copies: list[tuple[tuple[int, ...], torch.dtype]] = []
        self.events = 0
        self.waits = 0

    def pinned_empty(self, shape, dtype):
        return torch.full(tuple(shape), 7, dtype=dtype)  # True for masks, 7.0 for scores

    def copy_async(self, dst, src):
        self.copies.append((tuple(src.shape), src.dtype))
        self.queued.append((dst, src.clone()))

    def record_event(self, device):
        gpu, pending = self, self.queued
        self.queued = []
        gpu.events += 1

        class Event:
            def synchronize(self):
                gpu.waits += 1
                for dst, src in pending:
                    dst.copy_(src)
                pending.clear()

        return Event()


@pytest.fixture
def fake_gpu(monkeypatch):
    gpu = FakeGpu()
    monkeypatch.setattr(transfer, "copies_async", lambda device: True)
    monkeypatch.setattr(transfer, "pinned_empty", gpu.pinned_empty)
    monkeypatch.setattr(transfer, "copy_async", gpu.copy_async)
    monkeypatch.setattr(transfer, "record_event", gpu.record_event)
    return gpu


def test_an_asynchronous_copy_is_one_per_frame_and_waited_for(
    make_session, clip_mp4, monkeypatch, fake_gpu
):
    session = two_object_session(make_session, clip_mp4)
    seen = record_outputs(session, monkeypatch)
    steps = list(session.propagate("forward", end_frame=3))
    assert len(steps) == 4
    # Per frame: the masks of both objects in one copy, their scores in another, one event.
    assert fake_gpu.copies == [((2, 120, 160), torch.bool), ((2,), torch.float32)] * 4
    assert fake_gpu.events == fake_gpu.waits == 4
    for step in steps:
        obj_ids, logits = seen[step.result.frame_idx]
        for i, oid in enumerate(obj_ids):
            assert np.array_equal(step.result.masks[oid], (logits[i, 0] > 0.0).numpy())
            want = state_score(session.state, step.result.frame_idx, oid)
            assert step.result.scores[oid] == want


def test_a_frame_copy_reads_nothing_before_the_wait(fake_gpu):
    logits = torch.tensor([[[[1.0, -1.0]]], [[[-2.0, 3.0]]]])  # (2, 1, 1, 2)
    copy = transfer.start_copy([5, 9], logits, [torch.tensor([[0.5]]), None])
    assert fake_gpu.waits == 0 and len(fake_gpu.queued) == 0  # handed to the event
    masks, scores = copy.result()
    assert fake_gpu.waits == 1
    assert masks[5].tolist() == [[True, False]] and masks[9].tolist() == [[False, True]]
    assert scores[5] == 0.5 and math.isnan(scores[9])
    # The arrays handed out are not the staging buffers.
    assert not np.shares_memory(masks[5], copy._masks.numpy())


def test_a_cpu_frame_copy_makes_no_copy():
    logits = torch.tensor([[[[1.0, -1.0]]]])
    copy = transfer.start_copy([3], logits, [torch.tensor([[-0.25]])])
    masks, scores = copy.result()
    assert masks[3].tolist() == [[True, False]] and scores == {3: -0.25}
    with pytest.raises(ValueError):
        transfer.start_copy([3, 4], logits, [None])
