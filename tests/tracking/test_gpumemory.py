"""The GPU memory check of a many-object start, with a faked torch.cuda.mem_get_info."""

from __future__ import annotations

import pytest
import torch

from sam2web.errors import TrackingError
from sam2web.tracking import gpumemory


def test_estimate_per_object_frame_at_1024():
    # 64 channels at 64 x 64 in bfloat16 plus 256 x 256 float32 logits.
    assert gpumemory.bytes_per_object_frame(1024) == 64 * 64 * 64 * 2 + 256 * 256 * 4
    assert gpumemory.bytes_per_object_frame(1024) == 768 * 1024


def test_many_objects_are_refused_in_a_sentence(monkeypatch):
    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (free, 16 * 2**30))
    per = 768 * 1024 * 300  # one object over 300 frames: 225 MiB
    fits = int(free / 1.5 // per)  # 24 objects
    gpumemory.check_memory("cuda", fits, 300, 1024)
    with pytest.raises(TrackingError) as refused:
        gpumemory.check_memory("cuda", fits + 1, 300, 1024)
    message = str(refused.value)
    assert message.startswith(f"{fits + 1} objects over 300 frames need about")
    assert f"at most {fits} objects" in message and message.endswith("shorter clip.")
    gpumemory.check_memory("cpu", 10_000, 300, 1024)  # no check off CUDA


def test_a_label_start_is_checked_before_any_object_is_added(monkeypatch):
    from types import SimpleNamespace

    import numpy as np

    from sam2web.session.corrections import start_from_labels

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (2**30, 2**31))
    added = []
    tracking = SimpleNamespace(
        info=SimpleNamespace(num_frames=300),
        trim=False,
        objects={},
        predictor=SimpleNamespace(device=torch.device("cuda"), image_size=1024),
        add_object=lambda name: added.append(name),
    )
    labels = {i: np.ones((4, 4), bool) for i in range(1, 11)}  # 10 objects: 2.2 GiB
    with pytest.raises(TrackingError, match="10 objects over 300 frames"):
        start_from_labels(tracking, labels, 0)
    assert added == []
