"""A model for the CPU on a CUDA host (faked: torch.cuda.is_available answers True and every
question to it is recorded): its whole build sees no CUDA, other threads asking during the
build hear the truth, and its cached position encodings live on the CPU."""

from __future__ import annotations

import threading
import warnings

import sam2.build_sam
import torch

from sam2web.tracking.checkpoints import get_spec
from sam2web.tracking.model import build_predictor, settle_caches


def test_cpu_build_on_a_cuda_host_hides_cuda_from_the_build_only(monkeypatch, random_checkpoint):
    asked: list[tuple[str, bool]] = []
    real_build = sam2.build_sam.build_sam2_video_predictor

    def host_has_cuda() -> bool:
        return True

    monkeypatch.setattr(torch.cuda, "is_available", host_has_cuda)

    def build(*args, **kwargs):
        # What the building thread and another thread hear in the middle of the build.
        asked.append(("builder", torch.cuda.is_available()))
        other = threading.Thread(target=lambda: asked.append(("other", torch.cuda.is_available())))
        other.start()
        other.join()
        return real_build(*args, **kwargs)

    monkeypatch.setattr(sam2.build_sam, "build_sam2_video_predictor", build)
    loaded = []
    real_load = torch.nn.Module.load_state_dict

    def load(self, *args, **kwargs):
        loaded.append(torch.cuda.is_available())
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", load)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = build_predictor(
            get_spec("sam2.1-tiny"), random_checkpoint, device="cpu", image_size=256
        )
    assert asked == [("builder", False), ("other", True)]
    assert loaded and not any(loaded)  # loading the weights is part of the hidden build
    assert torch.cuda.is_available is host_has_cuda  # given back afterwards
    tensors = [
        t
        for m in predictor.modules()
        for t in list(getattr(m, "cache", {}).values()) + [getattr(m, "freqs_cis", None)]
        if isinstance(t, torch.Tensor)
    ]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}
    assert settle_caches(predictor, "cpu") == 0


def test_settle_caches_moves_what_lives_elsewhere():
    class Encoding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cache = {(4, 4): torch.zeros(2, 4, 4, dtype=torch.float64)}
            self.freqs_cis = torch.zeros(3)

    model = torch.nn.Sequential(Encoding())
    # "meta" stands in for another device: nothing is computed, only moved.
    assert settle_caches(model, "meta") == 2
    assert model[0].cache[(4, 4)].device.type == "meta"
    assert model[0].freqs_cis.device.type == "meta"
