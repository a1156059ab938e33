"""Which precision each device gets, decided from a faked CUDA compute capability: bfloat16
(with TF32 for what autocast keeps in float32) from capability 8.0, float16 on GPUs with
float16 tensor cores and no bf16 (T4 7.5, V100 7.0), float32 on older GPUs and on MPS;
exact float32 stays selectable everywhere. The GPU's arithmetic itself is not exercised
here (benchmarks/gpu_check.sh measures it on a GPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sam2web.session.engine import Engine, click_precision
from sam2web.settings import Settings
from sam2web.tracking import accel
from sam2web.tracking.model import autocast_context, autocast_dtype, tf32_allowed


def settings(**values) -> Settings:
    base = Settings.from_env({})
    return dataclasses.replace(base, resolution=1024, fast_resolution=448, **values)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Make torch report one CUDA GPU of a given compute capability."""

    def install(capability: tuple[int, int], name: str = "Fake GPU") -> None:
        accel.reset_bf16_probe()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: capability)
        # torch.autocast("cuda", bfloat16) asks this when it is made.
        native = capability >= (8, 0)
        monkeypatch.setattr(
            torch.cuda, "is_bf16_supported", lambda including_emulation=True: native
        )

    yield install
    accel.reset_bf16_probe()


# capability -> (offered qualities, default, precision of the fast preview)
TABLE = {
    (9, 0): (["full", "full-bf16", "fast"], "full-bf16", "bfloat16"),  # H100, H200
    (8, 0): (["full", "full-bf16", "fast"], "full-bf16", "bfloat16"),  # A100
    (8, 6): (["full", "full-bf16", "fast"], "full-bf16", "bfloat16"),  # A10, RTX 30xx
    (7, 5): (["full", "full-fp16", "fast"], "full", "float16"),  # T4
    (7, 0): (["full", "full-fp16", "fast"], "full", "float16"),  # V100
    (6, 1): (["full", "fast"], "full", "float32"),  # GTX 10xx
}


@pytest.mark.parametrize("capability", sorted(TABLE))
def test_qualities_follow_the_gpus_capability(fake_gpu, capability):
    fake_gpu(capability)
    offered, default, fast = TABLE[capability]
    s = settings()
    assert accel.available_qualities("cuda", s) == offered
    assert accel.default_quality("cuda", s) == default
    assert accel.quality("fast", "cuda", s).precision == fast
    # The same answers where the capability is known without asking the GPU.
    assert accel.available_qualities("cuda", s, capability) == offered
    # Exact float32 is always there and first.
    full = accel.quality("full", "cuda", s)
    assert offered[0] == "full" and full.exact and full.precision == "float32"
    assert autocast_dtype("cuda", quality="full") is None
    # Without a quality, SAM2WEB_BF16=auto gives the fast preview's precision.
    assert (autocast_dtype("cuda", "auto") or "float32") == fast


def test_bf16_setting_off_offers_float32_only(fake_gpu):
    for capability in ((9, 0), (7, 5)):
        fake_gpu(capability)
        s = settings(bf16="0")
        assert accel.available_qualities("cuda", s) == ["full", "fast"]
        assert accel.quality("fast", "cuda", s).precision == "float32"
        assert autocast_dtype("cuda", "0") is None


def test_autocast_per_quality_on_cuda(fake_gpu):
    fake_gpu((7, 5))
    assert autocast_dtype("cuda", quality="full-fp16") == "float16"
    assert autocast_dtype("cuda", quality="full-bf16") == "bfloat16"
    fp16 = accel.quality("full-fp16", "cuda", settings())
    assert fp16.label == "Full resolution, faster (float16)" and not fp16.bf16
    ctx = autocast_context("cuda", quality=fp16)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16
    # float16 and bfloat16 exist only where they are native; elsewhere float32.
    assert autocast_dtype("cpu", quality="full-fp16") is None
    assert autocast_dtype("mps", quality="full-bf16") is None
    assert autocast_dtype("mps", "1") is None


def test_bf16_on_cuda_turns_tf32_on_only_while_inside(fake_gpu):
    fake_gpu((9, 0))
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        seen = []
        with autocast_context("cuda", quality="full-bf16"):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        with tf32_allowed():
            with tf32_allowed():
                pass
            # Still on: another unit is inside.
            assert torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
        assert seen == [(True, True)]
        with autocast_context("cuda", quality="full"):
            assert not torch.backends.cuda.matmul.allow_tf32
        with autocast_context("cuda", quality="full-fp16"):
            assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_mps_offers_float32_only(monkeypatch):
    accel.reset_bf16_probe()
    s = settings(bf16_probe="auto")
    assert accel.available_qualities("mps", s) == ["full", "fast"]
    assert accel.default_quality("mps", s) == "full"
    assert accel.quality("fast", "mps", settings(bf16="1")).precision == "float32"


def test_zerogpu_qualities_come_from_the_lent_gpu_not_the_web_processs_cpu(monkeypatch, tmp_path):
    """On ZeroGPU clicks run on the web process's CPU (here: no fast bf16) and tracking on
    the lent GPU, which the web process must not initialise. Recorded run before the
    tracking device decided: the offer was ["full", "fast"], the CPU's."""

    def no_cuda_here(*args, **kwargs):
        raise AssertionError("the web process asked CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda_here)
    monkeypatch.setattr(torch.cuda, "current_device", no_cuda_here)
    engine = Engine(settings(bf16_probe="auto", data_dir=tmp_path), gpu_jobs=True)
    monkeypatch.setattr(accel, "cpu_bf16_flags", lambda: ())  # a CPU without native bf16
    accel.reset_bf16_probe()
    try:
        assert [q.key for q in engine.qualities()] == ["full", "full-bf16", "fast"]
        assert engine.default_quality() == "full-bf16"
        # Clicks on the CPU run float32 for a quality the CPU does not offer.
        assert click_precision(engine, "full-bf16") == "full"
        assert click_precision(engine, "fast") == "fast"
        assert accel.ZEROGPU_CAPABILITY >= accel.BF16_CAPABILITY
    finally:
        accel.reset_bf16_probe()
