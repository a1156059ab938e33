"""A bounded load test on loopback: four users track their own clips at once while a fifth
drags the frame slider. Every user must get their own, correct results; Track events run one
after another (SAM2WEB_CONCURRENCY=1); the slider must answer while the model is busy.

Prints the queue order and the slider's latency (run with ``-s``); benchmarks/bench_load.py
runs the same scenario with options.
"""

from __future__ import annotations

import statistics

import pytest

from tests.appserver import start_app
from tests.loadrun import check, run_load, user_clips

pytest.importorskip("gradio_client")

SESSIONS = 4
FRAMES = 6  # the i-th user's clip has FRAMES + i frames
RESOLUTION = 128


def test_four_users_at_once_and_a_responsive_slider(tmp_path, random_checkpoint, record_property):
    server = start_app(tmp_path / "app", random_checkpoint, resolution=RESOLUTION)
    try:
        run = run_load(
            server.url,
            user_clips(SESSIONS, FRAMES),
            tmp_path / "clips",
            server.log,
            pid=server.process.pid,
        )
    finally:
        server.stop()
    print("\n" + run.table())
    assert not run.errors(), run.errors()

    # Each user got their own clip's results: frame count, object names, video size.
    for user in run.users:
        assert not check(user), (user.clip.key, check(user))
    folders = [user.export_folders for user in run.users]
    assert sum(map(len, folders)) == len(set().union(*folders))  # no file shared

    # The model queue tracks one video at a time: in start order, none starts before the
    # previous one ended (0.15 s for the log's rounding).
    order = run.track_order()
    assert all(user.track_start is not None for user in order), run.table()
    for earlier, later in zip(order, order[1:], strict=False):
        assert later.track_start >= earlier.track_end - 0.15, run.table()

    # The slider is not stuck behind the model queue: its slowest answer is far shorter than
    # the last user's Track, from pressing it to the answer (behind the queue it would wait
    # as long), and than the whole load.
    latencies = run.frame_latencies
    last = order[-1]
    assert len(latencies) >= 10
    assert max(latencies) < 0.25 * (last.answered - last.track_sent), run.table()
    assert max(latencies) < 0.1 * run.seconds, run.table()
    record_property("load_seconds", round(run.seconds, 1))
    record_property("frame_latency_median_ms", round(1000 * statistics.median(latencies)))
    record_property("frame_latency_max_ms", round(1000 * max(latencies)))
