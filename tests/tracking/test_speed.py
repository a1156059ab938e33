"""Speed options: the bfloat16 probe, the qualities a device offers, bf16 autocast on the
real predictor, and the compile setting.

The probe's timings and CPU flags are faked here (no timing is asserted); a real run of the
probe is exercised once for its shape only.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import torch

from sam2web.settings import Settings
from sam2web.tracking import accel
from sam2web.tracking.model import autocast_context
from tests import synth

AMX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
AMD_NO_BF16_FLAGS = ("avx2",)
AMD_ZEN4_FLAGS = ("avx2", "avx512f", "avx512_bf16")


@pytest.fixture
def fake_cpu(monkeypatch):
    """Fake the CPU's flags and the probe's timings; returns how often the workload ran."""
    calls = {"workload": 0}

    def install(flags, fp32_s=0.05, bf16_s=0.05):
        def workload():
            calls["workload"] += 1
            return fp32_s, bf16_s

        monkeypatch.setattr(accel, "cpu_bf16_flags", lambda: flags)
        monkeypatch.setattr(accel, "time_probe_workload", workload)
        accel.reset_bf16_probe()
        return calls

    yield install
    accel.reset_bf16_probe()


def settings(**env: str) -> Settings:
    return Settings.from_env({f"SAM2WEB_{k.upper()}": v for k, v in env.items()})


# ---------------------------------------------------------------------------- probe


def test_cpu_without_bf16_flags_is_not_offered_and_not_timed(fake_cpu):
    calls = fake_cpu(AMD_NO_BF16_FLAGS, fp32_s=1.0, bf16_s=0.01)
    probe = accel.bf16_probe("cpu")
    assert not probe.native and not probe.fast
    assert calls["workload"] == 0  # no flags: nothing to measure
    assert probe.fp32_s is None and probe.speedup is None
    assert "no native bf16" in probe.reason
    assert accel.available_qualities("cpu", settings()) == ["full", "fast"]


def test_flags_present_but_bf16_slower_is_not_offered(fake_cpu):
    # Some CPUs report avx512_bf16 and still run autocast ten times slower.
    calls = fake_cpu(AMD_ZEN4_FLAGS, fp32_s=0.03, bf16_s=0.30)
    probe = accel.bf16_probe("cpu")
    assert calls["workload"] == accel.PROBE_ATTEMPTS  # a "no" is measured again first
    assert probe.native and not probe.fast
    assert probe.speedup == pytest.approx(0.1)
    assert "needs 1.3x" in probe.reason
    assert not accel.bf16_is_fast("cpu")
    assert "full-bf16" not in accel.available_qualities("cpu", settings())


def test_amx_cpu_with_fast_bf16_is_offered(fake_cpu):
    fake_cpu(AMX_FLAGS, fp32_s=0.030, bf16_s=0.008)
    probe = accel.bf16_probe("cpu")
    assert probe.native and probe.fast
    assert probe.flags == AMX_FLAGS
    assert probe.fp32_s == 0.030 and probe.bf16_s == 0.008
    assert "3.8x faster" in probe.reason
    assert "amx_bf16" in probe.describe() and "30 ms fp32" in probe.describe()
    assert accel.available_qualities("cpu", settings()) == ["full", "full-bf16", "fast"]


def test_a_busy_first_attempt_is_measured_again(fake_cpu, monkeypatch):
    fake_cpu(AMX_FLAGS)
    timings = iter([(0.03, 0.04), (0.03, 0.008), (0.03, 0.5)])
    monkeypatch.setattr(accel, "time_probe_workload", lambda: next(timings))
    probe = accel.bf16_probe("cpu")
    assert probe.fast and probe.bf16_s == 0.008
    assert next(timings) == (0.03, 0.5)  # stopped at the first fast attempt


def test_decision_threshold():
    assert accel.bf16_decision(True, 1.3, 1.0)
    assert not accel.bf16_decision(True, 1.29, 1.0)
    assert not accel.bf16_decision(False, 10.0, 1.0)
    assert not accel.bf16_decision(True, None, None)


def test_probe_is_measured_once_per_process_even_from_many_threads(fake_cpu, monkeypatch):
    calls = fake_cpu(AMX_FLAGS, fp32_s=0.03, bf16_s=0.01)
    slow = accel.time_probe_workload

    def slow_workload():
        time.sleep(0.05)  # long enough for the other threads to arrive meanwhile
        return slow()

    monkeypatch.setattr(accel, "time_probe_workload", slow_workload)
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(accel.bf16_is_fast("cpu"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [True] * 8
    assert calls["workload"] == 1
    assert accel.bf16_probe(torch.device("cpu")) is accel.bf16_probe("cpu")


def test_override_answers_without_measuring(fake_cpu):
    calls = fake_cpu(AMD_NO_BF16_FLAGS)
    assert accel.bf16_probe("cpu", "yes").fast
    assert not accel.bf16_probe("cpu", "no").fast
    assert "SAM2WEB_BF16_PROBE=yes" in accel.bf16_probe("cpu", "YES").reason
    assert calls["workload"] == 0
    assert accel.available_qualities("cpu", settings(bf16_probe="yes")) == [
        "full",
        "full-bf16",
        "fast",
    ]
    fake_cpu(AMX_FLAGS, fp32_s=0.03, bf16_s=0.01)
    assert accel.available_qualities("cpu", settings(bf16_probe="no")) == ["full", "fast"]
    with pytest.raises(ValueError, match="SAM2WEB_BF16_PROBE"):
        accel.bf16_probe("cpu", "maybe")
    with pytest.raises(ValueError, match="SAM2WEB_BF16_PROBE"):
        settings(bf16_probe="maybe")


def test_without_cpuinfo_onednn_answers(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert accel.cpu_bf16_native(None) is False
    assert accel.cpu_bf16_native(("amx_bf16",)) is True
    assert accel.cpu_bf16_native(("avx2",)) is False


def test_real_probe_workload_runs_and_reports_seconds():
    fp32_s, bf16_s = accel.time_probe_workload(budget_s=0.0, max_pairs=3)
    assert 0 < fp32_s < 30 and 0 < bf16_s < 30
    assert isinstance(accel.cpu_model(), str) and accel.cpu_model()


def test_cuda_answer_comes_from_the_gpus_compute_capability(monkeypatch):
    accel.reset_bf16_probe()
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Fake GPU")
    asked = []

    def capability(dev=None):
        asked.append(dev)
        return (8, 6)

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    try:
        probe = accel.bf16_probe("cuda")
    finally:
        accel.reset_bf16_probe()
    assert probe.fast and probe.device == "cuda:0" and probe.processor == "Fake GPU"
    assert [str(d) for d in asked] == ["cuda:0"]


# ---------------------------------------------------------------------------- qualities


def test_quality_meanings(fake_cpu):
    fake_cpu(AMX_FLAGS, fp32_s=0.03, bf16_s=0.01)
    s = settings(resolution="1024", fast_resolution="448")
    full, bf16, fast = (accel.quality(k, "cpu", s) for k in ("full", "full-bf16", "fast"))
    assert (full.resolution, full.bf16, full.exact) == (1024, False, True)
    assert (bf16.resolution, bf16.bf16, bf16.exact) == (1024, True, False)
    assert bf16.label == "Full resolution, faster (bfloat16)"
    assert (fast.resolution, fast.bf16, fast.exact) == (448, False, False)
    assert "1024 px" in full.label and "448 px" in fast.label
    # The fast preview keeps the precision SAM2WEB_BF16 gives it, as before.
    assert accel.quality("fast", "cpu", settings(bf16="1")).bf16
    with pytest.raises(ValueError, match="quality must be one of"):
        accel.quality("best", "cpu", s)
    assert accel.qualities("cpu", s) == [full, bf16, fast]


def test_quality_listing_follows_settings(fake_cpu):
    fake_cpu(AMX_FLAGS, fp32_s=0.03, bf16_s=0.01)
    assert accel.available_qualities("cpu", settings(bf16="0")) == ["full", "fast"]
    same = settings(resolution="512", fast_resolution="512")
    assert accel.available_qualities("cpu", same) == ["full", "full-bf16"]
    assert accel.default_quality("cpu", settings()) == "full"
    assert accel.default_quality("cpu", settings(bf16="1")) == "full-bf16"
    fake_cpu(AMD_ZEN4_FLAGS, fp32_s=0.03, bf16_s=0.3)
    assert accel.default_quality("cpu", settings(bf16="1")) == "full"


def test_autocast_context_for_qualities(fake_cpu):
    fake_cpu(AMX_FLAGS, fp32_s=0.03, bf16_s=0.01)
    ctx = autocast_context("cpu", "auto", quality="full-bf16")
    assert isinstance(ctx, torch.autocast)
    assert ctx.device == "cpu" and ctx.fast_dtype == torch.bfloat16
    assert isinstance(autocast_context("cpu", "1", quality="full"), contextlib.nullcontext)
    assert isinstance(autocast_context("cpu", "auto", quality="fast"), contextlib.nullcontext)
    q = accel.quality("full-bf16", "cpu", settings())
    assert isinstance(autocast_context("cpu", quality=q), torch.autocast)
    # Without a quality, SAM2WEB_BF16 decides as before.
    assert isinstance(autocast_context("cpu", "auto"), contextlib.nullcontext)
    with pytest.raises(ValueError, match="quality must be one of"):
        autocast_context("cpu", quality="best")


# ---------------------------------------------------------------------------- bf16 on SAM2


PROMPTED = (0, 4)  # frames given each disc's true mask as a mask prompt; 1-3 are tracked


def _track(predictor, frames_dir, paths, info, autocast, masks_dir):
    from sam2web.tracking.tracker import TrackingSession

    session = TrackingSession(predictor, paths, info, masks_dir, autocast=autocast)
    for i, disc in enumerate(synth.DEFAULT_DISCS):
        obj = session.add_object(f"disc {i}")
        for frame in PROMPTED:
            truth = synth.disc_mask(info.height, info.width, disc, frame)
            session.add_mask(frame, obj.obj_id, truth)
    for _ in session.propagate("forward"):
        pass
    return {f: session.result(f).masks for f in range(info.num_frames)}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    assert union > 0, "two empty masks say nothing about agreement"
    return float(np.logical_and(a, b).sum() / union)


@pytest.fixture
def one_thread():
    """Run torch on one thread: on a busy 2-core machine two threads of small bf16 kernels
    wait on each other far more than they compute (see benchmarks/README.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_full_bf16_runs_the_predictor_in_bf16_and_agrees_with_fp32(
    tmp_path, predictor_cache, one_thread
):
    """Each object's bf16 mask is compared with the same object's fp32 mask, frame by frame.

    The discs' true masks are mask prompts on frames 0 and 4, so there the two objects' masks
    are known and disjoint: each bf16 mask must equal its own object's fp32 mask and be
    closer to it than to the other object's. On the tracked frames 1-3 the random weights
    give both objects nearly the same mask (IoU between the two about 0.99), so there only
    the agreement of each object with itself (IoU >= 0.9, neither mask empty) is checked;
    identity cannot be told apart on those frames.

    Recorded runs of wrong variants: swapping the two objects' bf16 masks failed on
    frame 0 (IoU with its own fp32 mask 0.0 < 0.9); replacing the bf16 masks
    of frame 2 with empty ones failed the empty-mask check.
    """
    from sam2web.media.folder import FrameFolder
    from sam2web.media.ingest import ingest
    from sam2web.media.limits import MediaLimits

    clip = synth.write_video(
        tmp_path / "discs.mp4", synth.make_frames(num_frames=5, height=120, width=160), fps=10
    )
    limits = MediaLimits(200 << 20, 2000, 3600, 4096 * 4096, 200)
    ingest(clip, tmp_path / "frames", limits=limits)
    folder = FrameFolder(tmp_path / "frames")
    predictor = predictor_cache(256)

    dtypes: set[torch.dtype] = set()
    hook = predictor.memory_attention.layers[0].linear1.register_forward_hook(
        lambda m, i, out: dtypes.add(out.dtype)
    )
    try:
        bf16 = _track(
            predictor,
            folder.folder,
            folder.frame_paths(),
            folder.info,
            lambda: autocast_context("cpu", quality="full-bf16"),
            tmp_path / "bf16",
        )
        assert dtypes == {torch.bfloat16}
        dtypes.clear()
        fp32 = _track(
            predictor,
            folder.folder,
            folder.frame_paths(),
            folder.info,
            lambda: autocast_context("cpu", quality="full"),
            tmp_path / "fp32",
        )
        assert dtypes == {torch.float32}
    finally:
        hook.remove()

    info = folder.info
    assert set(fp32) == set(bf16) == set(range(info.num_frames))
    checked_identity = 0
    for frame in range(info.num_frames):
        assert set(fp32[frame]) == set(bf16[frame]) and len(fp32[frame]) == 2
        for obj, exact in fp32[frame].items():
            fast = bf16[frame][obj]
            assert exact.any() and fast.any(), (frame, obj, "empty mask")
            own = _iou(fast, exact)
            assert own >= 0.9, (frame, obj, own)
            if frame in PROMPTED:
                (other,) = [m for o, m in fp32[frame].items() if o != obj]
                assert _iou(exact, other) == 0.0  # the two discs are apart
                assert own > _iou(fast, other), (frame, obj)
                assert own == 1.0, (frame, obj, own)
                checked_identity += 1
    assert checked_identity == 2 * len(PROMPTED)


# ---------------------------------------------------------------------------- compile


def test_compile_setting_parsing():
    assert settings().compile == "off"
    assert settings(compile="ON").compile == "on"
    with pytest.raises(ValueError, match="SAM2WEB_COMPILE"):
        settings(compile="auto")
    assert accel.compile_plan("off") == "none"
    assert accel.compile_plan(" On ") == "all"
    with pytest.raises(ValueError, match="SAM2WEB_COMPILE"):
        accel.compile_plan("sometimes")


def test_compile_off_leaves_the_predictor_as_sam2_built_it(predictor_cache):
    predictor = predictor_cache(256)  # built with the default, SAM2WEB_COMPILE=off
    assert not hasattr(predictor, "sam2web_compile")
    assert all("forward" not in vars(m) for m in predictor.modules())
    assert accel.compile_predictor(predictor, "none") is None
    assert all("forward" not in vars(m) for m in predictor.modules())


def test_compiled_encoder_is_used_for_bf16_calls_only(monkeypatch, random_checkpoint):
    """The bf16 plan routes bf16-autocast calls through torch.compile and float32 calls to
    the eager forward; the compile is paid when it is applied. torch.compile is faked (a
    real compile takes minutes)."""
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor

    calls = []

    def fake_compile(fn, **kwargs):
        assert kwargs == {"backend": "inductor", "dynamic": False}

        def run(x):
            bf16 = torch.is_autocast_enabled("cpu")
            calls.append(torch.get_autocast_dtype("cpu") if bf16 else None)
            return fn(x)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    predictor = build_predictor(
        get_spec("sam2.1-tiny"), random_checkpoint, device="cpu", image_size=128
    )
    record = accel.compile_predictor(predictor, "bf16")
    assert record["plan"] == "bf16" and record["parts"] == ["image_encoder"]
    assert record["warmed"] == ["bf16"] and record["seconds"] >= 0
    assert calls == [torch.bfloat16]  # the warm-up
    frame = torch.zeros(1, 3, 128, 128)
    with torch.inference_mode():
        predictor.image_encoder(frame)
        assert len(calls) == 1
        with autocast_context("cpu", quality="full-bf16"):
            predictor.image_encoder(frame)
    assert calls == [torch.bfloat16, torch.bfloat16]
    # The weights and their names are untouched.
    assert all(not k.startswith("_orig_mod") for k in predictor.state_dict())


def test_compile_on_is_paid_when_the_predictor_is_built(monkeypatch, random_checkpoint):
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import ModelCache

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)
    cache = ModelCache()
    predictor = cache.get(get_spec("sam2.1-tiny"), random_checkpoint, "cpu", 128, compile="on")
    assert predictor.sam2web_compile["warmed"] == ["fp32", "bf16"]
    assert cache.get(get_spec("sam2.1-tiny"), random_checkpoint, "cpu", 128, compile="on") is (
        predictor
    )
    assert len(compiled) == 1 and cache.builds == 1
    plain = cache.get(get_spec("sam2.1-tiny"), random_checkpoint, "cpu", 128)
    assert plain is not predictor and not hasattr(plain, "sam2web_compile")


def test_sam2s_own_fast_path_is_for_cuda_only(monkeypatch, random_checkpoint):
    """SAM2WEB_COMPILE=vos asks sam2 for SAM 2.1's compiled predictor; on the CPU it is
    ignored and the predictor is the plain one, with nothing compiled."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor, SAM2VideoPredictorVOS

    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import ModelCache

    assert settings(compile="vos").compile == "vos"
    assert accel.compile_plan("vos") == "none"
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)
    predictor = ModelCache().get(
        get_spec("sam2.1-tiny"), random_checkpoint, "cpu", 128, compile="vos"
    )
    assert type(predictor) is SAM2VideoPredictor
    assert not isinstance(predictor, SAM2VideoPredictorVOS) and not compiled
