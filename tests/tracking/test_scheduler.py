"""The model scheduler: priorities, fair shares between sessions, click latency during
tracking, the serial policy, errors, cancellation, closing and status."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from sam2web.errors import SessionClosedError
from sam2web.tracking.scheduler import (
    Policy,
    Scheduler,
    SchedulerClosed,
    UnitCancelled,
    UnitKind,
)

INTERACTIVE = UnitKind.INTERACTIVE
TRACKING = UnitKind.TRACKING
BACKGROUND = UnitKind.BACKGROUND

WAIT = 10.0  # seconds; only reached when something is broken


@pytest.fixture(autouse=True)
def no_thread_leaks():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + WAIT
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


@pytest.fixture
def sched():
    scheduler = Scheduler()
    yield scheduler
    assert scheduler.close(WAIT)


class Gate:
    """Keeps the single worker busy until opened, so that units queue up behind it."""

    def __init__(self, scheduler: Scheduler, owner: str = "blocker"):
        self.started = threading.Event()
        self.opened = threading.Event()
        self.future = scheduler.submit(self._hold, owner, INTERACTIVE)
        assert self.started.wait(WAIT)

    def _hold(self) -> str:
        self.started.set()
        assert self.opened.wait(WAIT)
        return "gate"

    def open(self) -> None:
        self.opened.set()
        assert self.future.result(WAIT) == "gate"


def in_thread(target, *args):
    result: dict = {}

    def run():
        try:
            result["value"] = target(*args)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


# -- priorities and fairness -----------------------------------------------------------------


def test_interactive_first_background_last(sched):
    order: list[str] = []
    gate = Gate(sched)
    futures = [
        sched.submit(lambda: order.append("background"), "c", BACKGROUND),
        sched.submit(lambda: order.append("track-a"), "a", TRACKING),
        sched.submit(lambda: order.append("track-b"), "b", TRACKING),
        sched.submit(lambda: order.append("click"), "d", INTERACTIVE),
    ]
    gate.open()
    for future in futures:
        future.result(WAIT)
    assert order == ["click", "track-a", "track-b", "background"]


def test_tracking_units_alternate_between_owners_while_both_wait(sched):
    order: list[str] = []
    gate = Gate(sched)
    futures = [sched.submit(lambda: order.append("a"), "a", TRACKING) for _ in range(5)]
    futures += [sched.submit(lambda: order.append("b"), "b", TRACKING) for _ in range(3)]
    futures += [sched.submit(lambda: order.append("c"), "c", TRACKING)]
    gate.open()
    for future in futures:
        future.result(WAIT)
    assert "".join(order) == "abcababaa"


def test_interactive_units_run_in_arrival_order(sched):
    order: list[int] = []
    gate = Gate(sched)
    futures = [
        sched.submit(lambda i=i: order.append(i), owner, INTERACTIVE)
        for i, owner in enumerate("abab")
    ]
    gate.open()
    for future in futures:
        future.result(WAIT)
    assert order == [0, 1, 2, 3]


def test_two_iterations_share_the_model_fairly(sched):
    items = 40
    log: list[tuple[str, float, bool]] = []  # (owner, time, the other's next frame was queued)
    start = threading.Barrier(2)

    def frames(owner: str, other: str):
        for _ in range(items):
            time.sleep(0.01)  # long enough for the other caller to ask for its next frame
            other_left = sum(1 for o, _, _ in log if o == other) < items
            other_waiting = other_left and sched.snapshot(other).queued > 0
            log.append((owner, time.monotonic(), other_waiting))
            yield owner

    def track(owner: str, other: str) -> list[str]:
        start.wait(WAIT)
        return list(sched.iterate(frames(owner, other), owner))

    runs = {owner: in_thread(track, owner, other) for owner, other in ["ab", "ba"]}
    for owner, (thread, result) in runs.items():
        thread.join(WAIT)
        assert result["value"] == [owner] * items

    times = {owner: [t for o, t, _ in log if o == owner] for owner in "ab"}
    overlap_start = max(times["a"][0], times["b"][0])
    overlap_end = min(times["a"][-1], times["b"][-1])
    in_overlap = [o for o, t, _ in log if overlap_start <= t <= overlap_end]
    assert len(in_overlap) >= items  # they tracked at the same time for most of their runs
    share_a = in_overlap.count("a") / len(in_overlap)
    assert 0.35 <= share_a <= 0.65, share_a
    # Strict alternation: whenever the other owner had a frame waiting, it ran next.
    alternations = 0
    for (owner, _, other_waiting), (next_owner, _, _) in zip(log, log[1:], strict=False):
        if other_waiting:
            assert next_owner != owner
            alternations += 1
    assert alternations >= items // 2


# -- click latency ------------------------------------------------------------------------------


def slow_frames(count: int, seconds: float, log: list):
    for i in range(count):
        time.sleep(seconds)
        log.append(("a", i))
        yield i
    log.append(("a", "end"))


def click_during_tracking(sched: Scheduler, count: int, log: list) -> tuple[float, bool, list]:
    """Owner a tracks ``count`` 50 ms frames; after its third frame, owner b clicks. Returns
    the click's wait, whether a was still tracking when the click returned, and a's items."""
    third = threading.Event()
    finished = threading.Event()

    def track() -> list[int]:
        out = []
        for item in sched.iterate(slow_frames(count, 0.05, log), "a"):
            out.append(item)
            if item == 2:
                third.set()
        finished.set()
        return out

    thread, result = in_thread(track)
    assert third.wait(WAIT)
    started = time.monotonic()
    assert sched.run(lambda: log.append(("b", "click")) or "clicked", "b", timeout=WAIT)
    waited = time.monotonic() - started
    still_tracking = not finished.is_set()
    thread.join(WAIT)
    return waited, still_tracking, result["value"]


def test_click_waits_at_most_one_frame_while_another_session_tracks(sched):
    """Owner a's fourth tracked frame is held on the model thread until owner b's click is
    queued; once that one frame is released, the click runs before a's next frame.

    Recorded run of a wrong variant: with ``Scheduler(policy="serial")`` in place of the fair
    scheduler the click ran only after a's last frame and the generator's end, and the log
    assertion failed."""
    log: list = []
    holding = threading.Event()
    release = threading.Event()

    def frames():
        for i in range(30):
            if i == 3:
                holding.set()
                assert release.wait(WAIT)
            log.append(("a", i))
            yield i
        log.append(("a", "end"))

    thread, result = in_thread(lambda: list(sched.iterate(frames(), "a")))
    assert holding.wait(WAIT)  # frame 3 is running and holds the only model thread
    click = sched.submit(lambda: log.append(("b", "click")) or "clicked", "b", INTERACTIVE)
    assert not click.done()
    assert log == [("a", i) for i in range(3)]
    release.set()
    assert click.result(WAIT) == "clicked"
    thread.join(WAIT)
    assert result["value"] == list(range(30))
    # Exactly one tracking unit (the one running when the click arrived) ran before it.
    assert log[:5] == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", "click")]
    assert log[5:] == [("a", i) for i in range(4, 30)] + [("a", "end")]


def test_serial_policy_makes_a_click_wait_for_the_whole_run():
    with Scheduler(policy="serial") as sched:
        assert sched.policy is Policy.SERIAL
        log: list = []
        _, _, items = click_during_tracking(sched, 10, log)
    assert items == list(range(10))
    # Submitted after the third frame, the click ran only once the generator had ended.
    assert log == [("a", i) for i in range(10)] + [("a", "end"), ("b", "click")]


def test_serial_policy_runs_units_in_arrival_order_regardless_of_kind():
    order: list[str] = []
    with Scheduler(policy=Policy.SERIAL) as sched:
        gate = Gate(sched)
        futures = [
            sched.submit(lambda k=kind: order.append(k.value), owner, kind)
            for owner, kind in [
                ("c", BACKGROUND),
                ("a", TRACKING),
                ("a", TRACKING),
                ("b", INTERACTIVE),
            ]
        ]
        gate.open()
        for future in futures:
            future.result(WAIT)
    assert order == ["background", "tracking", "tracking", "interactive"]


# -- errors -----------------------------------------------------------------------------------


def test_a_units_exception_reaches_the_caller_and_the_worker_goes_on(sched):
    with pytest.raises(ZeroDivisionError):
        sched.run(lambda: 1 / 0, "a")
    future = sched.submit(lambda: [][1], "a", BACKGROUND)
    assert isinstance(future.exception(WAIT), IndexError)
    assert sched.run(lambda: 42, "a") == 42


def test_iterate_reraises_the_generators_exception_in_the_caller(sched):
    def frames():
        yield 0
        yield 1
        raise ValueError("frame 2 is broken")

    got = []
    it = sched.iterate(frames(), "a")
    with pytest.raises(ValueError, match="frame 2"):
        for item in it:
            got.append(item)
    assert got == [0, 1]
    with pytest.raises(StopIteration):
        next(it)
    assert sched.run(lambda: "still serving", "b") == "still serving"
    assert sched.snapshot("b").other_tracking_owners == 0


def test_waiting_from_inside_a_unit_is_refused(sched):
    with pytest.raises(RuntimeError, match="inside a unit"):
        sched.run(lambda: sched.run(lambda: 1, "a"), "a")


def test_run_timeout_withdraws_a_unit_that_did_not_start(sched):
    ran = threading.Event()
    gate = Gate(sched)
    with pytest.raises(TimeoutError):
        sched.run(ran.set, "a", timeout=0.05)
    gate.open()
    assert sched.run(lambda: "after", "a") == "after"
    assert not ran.is_set()


# -- closing iterations -----------------------------------------------------------------------


class Frames:
    """A generator that records the threads it ran and was closed on."""

    def __init__(self, count: int = 100):
        self.count = count
        self.ran_on: set[int] = set()
        self.closed_on: int | None = None
        self.closed = threading.Event()

    def __call__(self):
        try:
            for i in range(self.count):
                self.ran_on.add(threading.get_ident())
                yield i
        finally:
            self.closed_on = threading.get_ident()
            self.closed.set()


def test_closing_the_iterator_closes_the_generator_on_the_model_thread(sched):
    frames = Frames()
    it = sched.iterate(frames(), "a")
    assert [next(it), next(it)] == [0, 1]
    it.close()
    assert frames.closed.is_set()  # close() waited for it
    assert frames.closed_on in frames.ran_on
    assert frames.closed_on != threading.get_ident()
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # idempotent
    assert sched.snapshot("b").other_tracking_owners == 0


def test_with_block_closes_the_generator(sched):
    frames = Frames()
    with sched.iterate(frames(), "a") as it:
        assert next(it) == 0
    assert frames.closed.is_set()
    assert frames.closed_on in frames.ran_on


def test_a_dropped_iterator_closes_its_generator_on_the_model_thread(sched):
    frames = Frames()
    for item in sched.iterate(frames(), "a"):
        if item == 3:
            break
    gc.collect()
    assert frames.closed.wait(WAIT)
    assert frames.closed_on in frames.ran_on
    deadline = time.monotonic() + WAIT
    while sched.snapshot("b").other_tracking_owners and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sched.snapshot("b").other_tracking_owners == 0


def test_close_from_another_thread_cancels_a_waiting_next(sched):
    frames = Frames()
    it = sched.iterate(frames(), "a")
    assert next(it) == 0
    gate = Gate(sched)
    thread, result = in_thread(next, it)
    deadline = time.monotonic() + WAIT
    while sched.snapshot("a").queued == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    closer, _ = in_thread(it.close)
    thread.join(WAIT)
    assert isinstance(result["error"], UnitCancelled)
    gate.open()
    closer.join(WAIT)
    assert frames.closed.is_set() and frames.closed_on in frames.ran_on


# -- cancelling an owner ------------------------------------------------------------------------


def test_cancel_owner_drops_its_queued_units_and_lets_a_running_one_finish(sched):
    ran: list[str] = []
    gate = Gate(sched, owner="x")
    dropped = [sched.submit(lambda: ran.append("x"), "x", kind) for kind in UnitKind]
    kept = sched.submit(lambda: ran.append("y") or "y", "y", TRACKING)
    assert sched.cancel_owner("x") == 3
    for future in dropped:
        with pytest.raises(UnitCancelled):
            future.result(WAIT)
    assert issubclass(UnitCancelled, SessionClosedError)
    gate.open()  # the running unit of x finished normally
    assert kept.result(WAIT) == "y"
    assert ran == ["y"]
    assert sched.run(lambda: "again", "x") == "again"


def test_cancel_owner_ends_its_iteration_and_closes_the_generator(sched):
    frames = Frames()
    got: list[int] = []
    second = threading.Event()

    def track() -> None:
        for item in sched.iterate(frames(), "a"):
            got.append(item)
            if item == 1:
                second.set()
                time.sleep(0.05)  # cancelled while between frames

    thread, result = in_thread(track)
    assert second.wait(WAIT)
    sched.cancel_owner("a")
    thread.join(WAIT)
    assert isinstance(result["error"], UnitCancelled)
    assert got == [0, 1]
    assert frames.closed.wait(WAIT) and frames.closed_on in frames.ran_on


def test_a_withdrawn_future_never_runs(sched):
    ran = threading.Event()
    gate = Gate(sched)
    future = sched.submit(ran.set, "a", TRACKING)
    assert future.cancel()
    assert sched.snapshot("a").queued == 0
    gate.open()
    sched.run(lambda: None, "a", TRACKING)
    assert not ran.is_set()
    with pytest.raises(CancelledError):
        future.result()


# -- several workers ----------------------------------------------------------------------------


def test_units_of_one_owner_never_run_at_once_with_several_workers():
    with Scheduler(concurrency=2) as sched:
        gate = Gate(sched, owner="a")
        second_a_started = threading.Event()
        second_a = sched.submit(second_a_started.set, "a", INTERACTIVE)
        assert sched.run(lambda: "b ran beside a", "b", TRACKING, timeout=WAIT)
        assert not second_a_started.is_set()
        gate.open()
        second_a.result(WAIT)


# -- closing the scheduler ----------------------------------------------------------------------


def test_close_cancels_queued_work_refuses_new_work_and_stops_the_threads():
    before = set(threading.enumerate())
    sched = Scheduler(concurrency=3, name="cpu")
    assert {t.name for t in set(threading.enumerate()) - before} == {
        "sam2web-cpu-0",
        "sam2web-cpu-1",
        "sam2web-cpu-2",
    }
    frames = Frames()
    it = sched.iterate(frames(), "a")
    assert next(it) == 0
    gate = Gate(sched)
    queued = sched.submit(lambda: "never", "blocker", BACKGROUND)
    workers = {t.ident for t in threading.enumerate() if t.name.startswith("sam2web-cpu")}
    closer, result = in_thread(sched.close, WAIT)
    with pytest.raises(UnitCancelled):
        queued.result(WAIT)
    gate.open()
    closer.join(WAIT)
    assert result["value"] is True
    assert frames.closed.is_set() and frames.closed_on in workers
    with pytest.raises(UnitCancelled):
        next(it)
    with pytest.raises(SchedulerClosed):
        sched.submit(lambda: None, "a")
    with pytest.raises(SchedulerClosed):
        sched.iterate(iter([1]), "a")
    assert sched.closed and sched.close(WAIT)
    assert set(threading.enumerate()) == before


def test_close_gives_up_on_a_unit_that_does_not_return():
    sched = Scheduler()
    gate = Gate(sched)
    started = time.monotonic()
    assert sched.close(0.1) is False
    assert time.monotonic() - started < 2.0
    gate.open()
    assert sched.close(WAIT) is True


# -- status -------------------------------------------------------------------------------------


def test_snapshot_counts_units_ahead(sched):
    gate = Gate(sched)
    futures = [
        sched.submit(lambda: None, "a", TRACKING),
        sched.submit(lambda: None, "a", TRACKING),
        sched.submit(lambda: None, "b", TRACKING),
        sched.submit(lambda: None, "c", INTERACTIVE),
        sched.submit(lambda: None, "d", BACKGROUND),
    ]
    snap_b = sched.snapshot("b")
    assert (snap_b.queued, snap_b.running) == (1, 0)
    assert snap_b.units_ahead == 3  # the gate, c's click, one frame of a
    assert snap_b.other_tracking_owners == 1
    assert sched.snapshot("c").units_ahead == 1
    assert sched.snapshot("d").units_ahead == 5
    assert sched.snapshot("blocker").running == 1
    gate.open()
    for future in futures:
        future.result(WAIT)
    assert sched.snapshot("b").units_ahead == 0


class ModelClock:
    """The scheduler's clock, moved only by the units themselves: a unit that adds 0.5
    took 0.5 s on the model thread, whatever the machine's load."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def frames(self, count: int, seconds: float):
        for i in range(count):
            self.now += seconds
            yield i


def test_the_eta_counts_the_run_own_frames_and_doubles_when_shared(monkeypatch):
    """A run's ETA is its own frames' time: another user's run of big frames (8 s each,
    a large video with many objects) before it or beside it does not change how long one of
    its frames (0.5 s) takes; sharing the model with that run doubles the time left, and a
    new run starts unmeasured. Expected values are the clock's steps, not the formula."""
    clock = ModelClock()
    monkeypatch.setattr("sam2web.tracking.scheduler.time", clock)
    sched = Scheduler(concurrency=1)
    try:
        assert list(sched.iterate(clock.frames(4, 8.0), "big")) == [0, 1, 2, 3]
        small = sched.iterate(clock.frames(10, 0.5), "small")
        assert [next(small), next(small)] == [0, 1]
        alone = sched.snapshot("small")
        assert alone.other_tracking_owners == 0
        assert alone.eta_s(8) == 8 * 0.5
        big = sched.iterate(clock.frames(3, 8.0), "big")
        assert next(big) == 0
        shared = sched.snapshot("small")
        assert shared.other_tracking_owners == 1
        assert shared.eta_s(8) == 8 * 0.5 * 2
        assert sched.snapshot("big").eta_s(2) == 2 * 8.0 * 2
        assert shared.eta_s(0) == 0
        small.close()
        big.close()
        again = sched.iterate(clock.frames(5, 0.5), "small")
        assert sched.snapshot("small").eta_s(5) is None  # not one frame of this run yet
        again.close()
    finally:
        assert sched.close(WAIT)


def test_eta_is_unknown_before_a_frame_was_measured(sched):
    sched.run(lambda: None, "a", INTERACTIVE)
    snap = sched.snapshot("a")
    assert INTERACTIVE in snap.mean_unit_s and TRACKING not in snap.mean_unit_s
    assert snap.eta_s(10) is None


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        Scheduler(concurrency=0)
    with pytest.raises(ValueError):
        Scheduler(policy="fastest")
    with pytest.raises(ValueError):
        Scheduler(ewma_alpha=0)


def test_importing_the_scheduler_pulls_in_no_web_or_model_library():
    check = (
        "import sys, sam2web.tracking.scheduler; "
        "print(sorted(m for m in ('gradio', 'torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_next_within_times_out_and_goes_on_waiting_for_the_same_item(sched):
    release = threading.Event()

    def frames():
        release.wait(5)
        yield "first"
        yield "second"

    it = sched.iterate(frames(), "a")
    with pytest.raises(TimeoutError):
        it.next_within(0.05)
    with pytest.raises(TimeoutError):
        it.next_within(0.05)
    release.set()
    assert it.next_within(5) == "first"
    assert next(it) == "second"
    with pytest.raises(StopIteration):
        it.next_within(5)


def test_a_step_that_finishes_just_after_its_wait_timed_out_is_still_returned(sched, monkeypatch):
    """The window between a wait's timeout and its bookkeeping, forced with events: the
    future's ``result`` lets the step finish and only then reports the timeout. The item
    must come back on the next call; a lost item would make the caller skip a frame."""
    from sam2web.tracking import scheduler as scheduler_module

    release = threading.Event()

    def frames():
        for index in range(3):
            assert release.wait(WAIT)
            yield index

    class LateFuture(scheduler_module.Future):
        forced = False

        def result(self, timeout=None):
            if timeout is not None and not LateFuture.forced:
                LateFuture.forced = True
                release.set()  # the step finishes inside the timeout's window ...
                super().result(WAIT)  # ... and is done before the caller's bookkeeping
                raise scheduler_module.FutureTimeout()
            return super().result(timeout)

    monkeypatch.setattr(scheduler_module, "Future", LateFuture)
    iterator = sched.iterate(frames(), "tracker")
    with pytest.raises(scheduler_module.FutureTimeout):
        iterator.next_within(0.01)
    assert LateFuture.forced
    assert [next(iterator), next(iterator), next(iterator, "end")] == [0, 1, 2]
    iterator.close()
