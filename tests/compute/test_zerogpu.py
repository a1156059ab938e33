"""ZeroGPU: the decorator is a no-op elsewhere, and a propagation run as a picklable job in
another process (as ZeroGPU runs it) gives exactly the masks of an in-process run."""

from __future__ import annotations

import contextvars
import dataclasses
import importlib.machinery
import multiprocessing
import pickle
import sys
import threading
import time
import types

import numpy as np
import pytest

from sam2web.compute import zerogpu
from sam2web.errors import TrackingError
from sam2web.session.engine import Engine
from sam2web.session.user import UserSession
from sam2web.settings import Settings
from sam2web.tracking.maskstore import MaskStore
from tests import synth
from tests.masks import assert_nontrivial


def test_the_decorator_changes_nothing_without_zerogpu(monkeypatch):
    def track(job):
        return job

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert zerogpu.gpu(duration=30)(track) is track
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # set, but no spaces package installed
    monkeypatch.setitem(sys.modules, "spaces", None)
    assert not zerogpu.zerogpu_enabled()
    assert zerogpu.gpu(duration=30)(track) is track


def test_on_zerogpu_the_function_is_wrapped_with_spaces_gpu(monkeypatch):
    calls = []
    fake = types.ModuleType("spaces")
    fake.__spec__ = importlib.machinery.ModuleSpec("spaces", None)

    def gpu_decorator(duration):
        def wrap(fn):
            calls.append((fn.__name__, duration))
            return lambda *a: ("on gpu", fn(*a))

        return wrap

    fake.GPU = gpu_decorator
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert zerogpu.zerogpu_enabled()

    def track(job):
        return job * 2

    wrapped = zerogpu.gpu(duration=zerogpu.job_duration)(track)
    assert calls == [("track", zerogpu.job_duration)] and wrapped(4) == ("on gpu", 8)


@pytest.fixture
def engine(tmp_path, random_checkpoint):
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=256,
        device="cpu",
        checkpoint=random_checkpoint,
        offline=True,
        data_dir=tmp_path / "sessions",
        # A ZeroGPU engine would start sessions in bfloat16 (the lent GPU has it); these tests
        # compare the job's masks with a float32 session on this CPU, so both run float32.
        bf16="0",
    )
    return Engine(settings)


def _in_a_forked_process(job):
    """Run the job the way ZeroGPU does: in a forked worker, arguments and result pickled."""
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        return pool.apply(zerogpu._run_tracking_job, (job,))


def _masks(user: UserSession) -> dict:
    store = user.tracking.store
    return {f: {k: v.tolist() for k, v in store.read(f).masks.items()} for f in store.frames()}


def test_a_job_in_another_process_tracks_exactly_like_the_session(engine, tmp_path, monkeypatch):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(6, 120, 160), fps=6)

    def scenario(user: UserSession) -> list[dict]:
        user.upload(clip)
        user.add_object("a")
        user.click(0, 40, 60)
        user.add_object("b")
        user.click(0, 120, 40)
        first = list(user.propagate("forward"))
        user.click(3, 60, 90, "negative", obj_id=1)  # a correction on a tracked frame
        second = list(user.propagate("both", start_frame=3))
        assert [s.done for s in second][-1] == 7  # 3 frames forward, 4 backward
        assert first and not user.last_run.cancelled
        return [_masks(user)]

    expected = scenario(UserSession(engine))

    jobs = []

    def run_job(job):
        jobs.append(job)
        assert pickle.loads(pickle.dumps(job)) == job
        outcome = _in_a_forked_process(job)
        assert pickle.loads(pickle.dumps(outcome)) == outcome
        return outcome

    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", run_job)
    remote = Engine(engine.settings, gpu_jobs=True)
    user = UserSession(remote)
    got = scenario(user)
    assert len(jobs) == 2 and jobs[1].replay_frames() == 6
    assert_nontrivial(
        [np.array(m) for run in expected for masks in run.values() for m in masks.values()]
    )
    assert got == expected
    ops = [action.op for action in user.tracking.history]
    assert ops.count("propagate") == 2 and user.tracking.propagating is False
    # The overlay video and the exports read the job's masks like any others.
    exports = user.export()
    assert exports.video.exists() and exports.csv.exists()
    assert not (user.workspace.root / zerogpu.CANCEL_FILE).exists()


def test_cancel_reaches_the_job(engine, tmp_path):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(8, 120, 160))
    user = UserSession(Engine(engine.settings, gpu_jobs=True))
    user.upload(clip)
    user.click(0, 40, 60)
    seen = []
    for step in user.propagate("forward"):
        seen.append(step.done)
        user.cancel()
    tracked = user.tracking.history[-1].passes[0].frames
    assert user.last_run.cancelled and seen and tracked < 8
    assert user.tracking.store.frames() == list(range(tracked))  # what the job tracked


def test_a_job_stopped_midway_keeps_what_it_tracked_in_masks_and_history(
    engine, tmp_path, monkeypatch
):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(8, 120, 160))
    user = UserSession(Engine(engine.settings, gpu_jobs=True))
    user.upload(clip)
    user.click(0, 40, 60)

    def killed_after_three_frames(job):  # as ZeroGPU ends a job past its duration
        zerogpu._run_tracking_job(dataclasses.replace(job, end_frame=2))
        raise RuntimeError("GPU task aborted")

    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", killed_after_three_frames)
    with pytest.raises(TrackingError, match="the 3 frames tracked before that are kept"):
        list(user.propagate("forward"))
    run = user.tracking.history[-1]
    assert run.op == "propagate" and run.frames == 3
    assert user.tracking.store.frames() == [0, 1, 2] and not user.tracking.propagating
    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", zerogpu._run_tracking_job)
    list(user.propagate("forward", start_frame=3))  # Track again continues
    assert user.tracking.store.frames() == list(range(8))


def test_the_jobs_progress_counts_only_frames_whose_masks_are_on_disk(
    engine, tmp_path, monkeypatch
):
    """The job's masks are written behind its model steps; the progress file, which is what
    the web process keeps when a job is stopped, never names a frame without its file."""
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(8, 120, 160))
    user = UserSession(Engine(engine.settings, gpu_jobs=True))
    user.upload(clip)
    user.click(0, 40, 60)
    real_save = MaskStore._save_file

    def slow_disk(self, frame_idx, packed, scores):
        if threading.current_thread().name.startswith("mask-writer"):
            time.sleep(0.05)
        real_save(self, frame_idx, packed, scores)

    reports = []
    real_progress = zerogpu._write_progress

    def looked_at(control, step):
        files = MaskStore(user.tracking.store.root, 120, 160)  # what the web process reads
        reports.append((step.done, files.frames()))
        real_progress(control, step)

    monkeypatch.setattr(MaskStore, "_save_file", slow_disk)
    monkeypatch.setattr(zerogpu, "_write_progress", looked_at)
    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", zerogpu._run_tracking_job)
    steps = list(user.propagate("forward"))
    assert steps[-1].done == 8 and reports[-1][0] == 8
    for done, on_disk in reports:
        assert set(range(done)) <= set(on_disk), f"progress said {done} with {on_disk} on disk"


def test_a_job_stopped_before_its_progress_caught_up_records_every_frame_it_wrote(
    engine, tmp_path, monkeypatch
):
    """A job ended while its progress file lagged behind the masks it had written: the run
    recorded is what is on disk, frame for frame the masks of the same run made here."""
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(8, 120, 160))
    alone = UserSession(engine)
    alone.upload(clip)
    alone.click(0, 40, 60)
    list(alone.propagate("forward", end_frame=3))

    user = UserSession(Engine(engine.settings, gpu_jobs=True))
    user.upload(clip)
    user.click(0, 40, 60)
    real_progress = zerogpu._write_progress

    def lagging(control, step):  # frames 3 and 4 reach their files, the file says 2
        if step.done <= 2:
            real_progress(control, step)

    def killed_after_four_frames(job):
        zerogpu._run_tracking_job(dataclasses.replace(job, end_frame=3))
        raise RuntimeError("GPU task aborted")

    monkeypatch.setattr(zerogpu, "_write_progress", lagging)
    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", killed_after_four_frames)
    with pytest.raises(TrackingError, match="the 4 frames tracked before that are kept"):
        list(user.propagate("forward"))
    assert user.tracking.history[-1].frames == 4
    assert _masks(user) == _masks(alone)


def test_a_run_too_long_for_one_job_goes_in_chunks_each_recorded(engine, tmp_path, monkeypatch):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(9, 120, 160))
    user = UserSession(Engine(engine.settings, gpu_jobs=True))
    user.upload(clip)
    user.click(0, 40, 60)
    monkeypatch.setattr(zerogpu.gpuplan, "fitting_frames", lambda *a: 4)
    asked = []

    def run_job(job):
        asked.append(zerogpu.job_duration(job))
        return zerogpu._run_tracking_job(job)

    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", run_job)
    steps = [s.done for s in user.propagate("forward")]
    runs = [a for a in user.tracking.history if a.op == "propagate"]
    # progress is polled while a job runs: it rises to every frame, not always one by one
    assert [r.frames for r in runs] == [4, 4, 1] and steps[-1] == 9
    assert steps == sorted(set(steps))
    assert [r.passes[0].start for r in runs] == [0, 4, 8]
    assert user.tracking.store.frames() == list(range(9))
    assert len(asked) == 3 and max(asked) <= zerogpu.gpuplan.JOB_CAP_S


def test_the_job_runs_in_the_callers_context(engine, tmp_path, monkeypatch):
    request = contextvars.ContextVar("request", default=None)
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(3, 120, 160))
    user = UserSession(Engine(engine.settings, gpu_jobs=True))
    user.upload(clip)
    user.click(0, 40, 60)
    seen = []

    def run_job(job):  # spaces.GPU reads Gradio's request from the calling context
        seen.append(request.get())
        return zerogpu._run_tracking_job(job)

    monkeypatch.setattr("sam2web.compute.zerogpu.run_tracking_job", run_job)
    request.set("the visitor's request")
    list(user.propagate("forward"))
    assert seen == ["the visitor's request"]
