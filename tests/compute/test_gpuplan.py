"""What a GPU job asks for: durations from the work in it, chunks that fit, a bounded replay."""

from __future__ import annotations

from sam2web.compute import gpuplan
from sam2web.history import AddClick, AddObject, Pass, Propagate
from sam2web.tracking.tracker import pass_frames

KEY = gpuplan.SpeedKey("sam2.1-tiny", 1024, bf16=False)


def test_the_duration_grows_with_the_work_and_stops_at_the_cap():
    speed = gpuplan.Speed()
    one = gpuplan.job_seconds(speed, KEY, objects=1, replay_frames=0, track_frames=100)
    three = gpuplan.job_seconds(speed, KEY, objects=3, replay_frames=0, track_frames=100)
    replaying = gpuplan.job_seconds(speed, KEY, objects=1, replay_frames=100, track_frames=100)
    large = gpuplan.job_seconds(speed, gpuplan.SpeedKey("sam2.1-large", 1024, False), 1, 0, 100)
    bf16 = gpuplan.job_seconds(speed, gpuplan.SpeedKey("sam2.1-tiny", 1024, True), 1, 0, 100)
    assert one < three and one < replaying and one < large and bf16 < one
    assert one > gpuplan.START_S["tiny"]  # the worker's start is paid too
    assert gpuplan.job_seconds(speed, KEY, 5, 0, 100_000) == gpuplan.JOB_CAP_S


def test_measured_speed_replaces_the_guess():
    speed = gpuplan.Speed()
    guess = speed.per_frame_object(KEY)
    speed.record(KEY, frame_objects=200, seconds=200 * guess * 0.8)
    assert speed.per_frame_object(KEY) < guess
    speed.record(KEY, frame_objects=200, seconds=200 * guess * 3)  # a slower GPU than guessed
    assert speed.per_frame_object(KEY) > 2 * guess
    speed.record(KEY, frame_objects=200, seconds=0.001)  # never below half the guess
    assert speed.per_frame_object(KEY) == guess / 2


def test_a_fitting_chunk_fits_under_the_cap():
    speed = gpuplan.Speed()
    sizes = [
        gpuplan.fitting_frames(speed, KEY, objects, replay_frames=40) for objects in (1, 4, 20)
    ]
    for objects, n in zip((1, 4, 20), sizes, strict=True):
        need = gpuplan.START_S["tiny"] + gpuplan.MARGIN * (40 + n) * objects * (
            speed.per_frame_object(KEY)
        )
        assert need <= gpuplan.JOB_CAP_S
    assert sizes[0] > sizes[1] > sizes[2] >= 1


def test_chunks_cover_each_pass_once_in_order():
    passes = [Pass(10, False, 25), Pass(10, True, 11)]
    chunks = gpuplan.chunk_plans(passes, per_chunk=10)
    frames = [f for c in chunks for f in pass_frames(gpuplan.chunk_passes(c, 40))]
    assert frames == pass_frames(passes)
    assert all(c.frames <= 10 for c in chunks)
    assert [c.direction for c in chunks] == ["forward"] * 3 + ["backward"] * 2


def test_truncated_keeps_what_a_stopped_run_tracked():
    passes = [Pass(5, False, 4), Pass(5, True, 6)]
    assert gpuplan.truncated(passes, 0) == ()
    assert gpuplan.truncated(passes, 3) == (Pass(5, False, 3),)
    assert gpuplan.truncated(passes, 6) == (Pass(5, False, 4), Pass(5, True, 2))


def test_the_replay_keeps_only_frames_near_the_new_start_and_later_prompts():
    history = [
        AddObject(1, "a"),
        AddClick(0, 1, 5.0, 5.0, True),
        Propagate((Pass(0, False, 1000),)),
        AddClick(400, 1, 6.0, 6.0, False),  # a correction on a tracked frame
    ]
    bounded = gpuplan.bounded_history(history, starts=[900], window=32)
    (run,) = [a for a in bounded if isinstance(a, Propagate)]
    kept = pass_frames(list(run.passes))
    assert kept == [*range(368, 433), *range(868, 933)]
    assert [a for a in bounded if not isinstance(a, Propagate)] == [
        a for a in history if not isinstance(a, Propagate)
    ]
    short = [*history[:2], Propagate((Pass(0, False, 30),))]
    assert gpuplan.bounded_history(short, starts=[10]) == tuple(short)  # exact when near
