"""The model scheduler: one per device, it owns the model and runs small units of model work
from every session in priority order, so that no session holds the model for long.

Units
    A unit is a callable taking no arguments that does one small piece of model work (one
    click, one undo replay, one tracked frame) and returns a value. It runs on one of the
    scheduler's worker threads (the model threads); its result, or the exception it raised,
    reaches the caller through a :class:`concurrent.futures.Future`. Every unit has an
    owner, an opaque hashable key for the session it belongs to, and a :class:`UnitKind`.
    A running unit is never interrupted: the model is handed to the next unit only between
    units, so the smaller the units, the shorter anyone waits.

Threads
    ``concurrency`` daemon worker threads (default 1) take units from one shared queue
    guarded by one lock and condition; idle workers sleep on the condition. Units of one
    owner never run at the same time, even with several workers, so a session's model state
    is only ever touched by one thread at a time. Every public method may be called from any
    thread. Methods that wait for a unit (:meth:`Scheduler.run`, ``next()`` on an iterator
    from :meth:`Scheduler.iterate`) raise :class:`RuntimeError` when called from inside a
    unit, where waiting for another unit could deadlock.

Priorities (policy ``"fair"``, the default)
    ``INTERACTIVE`` units (clicks, object changes) run first, in arrival order.
    ``TRACKING`` units (one tracked frame each) run next, one at a time round robin over the
    owners that have tracking units waiting: owners tracking at the same time get equal
    shares of the frames, and a click waits at most for the units already running.
    ``BACKGROUND`` units run, in arrival order, only when no other unit waits.

Policy ``"serial"``
    The behaviour from before the scheduler, kept for benchmarking side by side: units run
    strictly in arrival order, without kinds, and an iteration (:meth:`Scheduler.iterate`)
    holds the model from its first item to its end, so work of other sessions submitted
    meanwhile waits for the whole run.

Iterations
    :meth:`Scheduler.iterate` drives a generator (such as SAM2's propagation, one frame per
    ``next()``) one unit per item: every ``next()`` in the caller's thread runs one unit on
    a model thread and the model is given back after each item. The generator is resumed,
    and closed, only on model threads and never by two threads at once.

Cancellation and shutdown
    :meth:`Scheduler.cancel_owner` (a tab closed, a session expired) and
    :meth:`Scheduler.close` drop queued units, whose futures then raise
    :class:`UnitCancelled`, and close the owner's open iterations on a model thread. Units
    already running finish.

Batching
    Units may carry a ``batch_key``; units with equal keys do the same kind of work on the
    same model (such as one tracked frame at the same resolution) and could run in one
    forward pass. The scheduler records the key and runs units one by one; a batching worker
    would take all waiting units with the key of the unit it picked (each still answering its
    own future) and keep the priority and fairness rules above for choosing that first unit.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ..errors import SessionClosedError

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a step of an iteration returns on a model thread when its iterator is exhausted.
_DONE = object()


class UnitKind(enum.Enum):
    """The priority class of a unit (see the module docstring for the order)."""

    INTERACTIVE = "interactive"
    TRACKING = "tracking"
    BACKGROUND = "background"


class Policy(enum.Enum):
    """How the scheduler chooses the next unit; ``Policy("fair")`` and ``Policy("serial")``
    parse the values of a setting."""

    FAIR = "fair"
    SERIAL = "serial"


class UnitCancelled(SessionClosedError):
    """A unit was dropped before it ran: its owner was cancelled, its iteration was closed,
    or the scheduler closed. Raised by the unit's future, :meth:`Scheduler.run` and ``next()``
    on an iteration."""

    def __init__(self, message: str = "This session was closed; reload the page to start again."):
        super().__init__(message)


class SchedulerClosed(UnitCancelled):
    """Work was submitted after :meth:`Scheduler.close`."""

    def __init__(self, message: str = "The server is shutting down; try again in a moment."):
        super().__init__(message)


@dataclass(frozen=True)
class Snapshot:
    """Where one owner stands, at one moment, for the page to show. Counts are of units;
    times are in seconds."""

    owner: Hashable
    policy: Policy
    #: Worker threads of the scheduler.
    workers: int
    #: Units of this owner waiting to run.
    queued: int
    #: Units of this owner running now (0 or 1).
    running: int
    #: Roughly how many units run before this owner's next one: units of other owners
    #: running now plus the queued units the policy would take first (for an owner with
    #: nothing queued: first before a tracking unit submitted now).
    units_ahead: int
    #: Other owners with a tracking unit queued or running, or an open tracking iteration
    #: (between two frames an iteration has neither, but still takes its share).
    other_tracking_owners: int
    #: Per kind, an exponentially weighted moving average of the seconds one unit took on a
    #: model thread (failed units, closing units and the step that finds an iteration
    #: exhausted are left out); kinds not measured yet are absent.
    mean_unit_s: Mapping[UnitKind, float]
    #: The same moving average over the units of this owner's open tracking iteration only
    #: (its run: its video's size, its objects), None before its first unit was measured.
    run_unit_s: float | None = None

    def eta_s(self, frames_left: int) -> float | None:
        """Estimated seconds until this owner has tracked ``frames_left`` more frames, or None
        before a frame of its run was measured.

        ``frame_s`` is the run's own time per frame (:attr:`run_unit_s`): other users' frames,
        of other sizes and object counts, take other times and are not averaged in. Under the
        fair policy the owners tracking at once share the workers equally, and one owner never
        has two units running, so each owner gets ``min(1, workers / owners)`` of a worker:
        ``frames_left * frame_s * max(1, owners / workers)`` with ``owners`` counting this
        one. Under the serial policy a run holds the model, so the estimate is the run's own
        length, ``frames_left * frame_s``, from its first frame. Clicks of other sessions
        come on top of either.
        """
        mean = self.run_unit_s
        if mean is None:
            return None
        share = 1.0
        if self.policy is Policy.FAIR:
            share = max(1.0, (self.other_tracking_owners + 1) / self.workers)
        return max(0, frames_left) * mean * share


@dataclass(eq=False)
class _Unit:
    fn: Callable[[], Any]
    owner: Hashable
    kind: UnitKind
    future: Future
    batch_key: Hashable | None = None
    stream: _Stream | None = None
    # Closes an iteration: survives cancel_owner and close, and runs ahead of tracking work.
    cleanup: bool = False


class Scheduler:
    """Owns the model of one device and runs units of model work from all sessions.

    ``concurrency`` is the number of worker threads (units that may run at once);
    ``policy`` is ``"fair"`` or ``"serial"`` (see the module docstring); ``name`` names the
    threads (``sam2web-<name>-<i>``); ``ewma_alpha`` is the weight of the newest measurement
    in the per-kind mean unit time (0 < alpha <= 1). The workers start at once; call
    :meth:`close` (or use the scheduler as a context manager) to stop them.
    """

    def __init__(
        self,
        concurrency: int = 1,
        policy: Policy | str = Policy.FAIR,
        *,
        name: str = "model",
        ewma_alpha: float = 0.2,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if not 0.0 < ewma_alpha <= 1.0:
            raise ValueError(f"ewma_alpha must be in (0, 1], not {ewma_alpha}")
        self._policy = Policy(policy)
        self._concurrency = concurrency
        self._alpha = ewma_alpha
        # Reentrant: an iteration dropped by its caller is closed from a weakref finalizer,
        # which the garbage collector may run on a thread that already holds the lock.
        self._cond = threading.Condition(threading.RLock())
        self._interactive: deque[_Unit] = deque()
        self._tracking: dict[Hashable, deque[_Unit]] = {}
        self._rotation: deque[Hashable] = deque()  # owners with tracking units, next first
        self._background: deque[_Unit] = deque()
        self._fifo: deque[_Unit] = deque()  # every unit, under the serial policy
        self._running: list[_Unit] = []
        self._busy: Counter[Hashable] = Counter()  # owner -> units running
        self._streams: dict[_Stream, None] = {}  # open iterations, in creation order
        self._hold: _Stream | None = None  # serial policy: the iteration holding the model
        self._mean_s: dict[UnitKind, float] = {}
        self._accepting = True
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"sam2web-{name}-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return not self._accepting

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- submitting work -------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[[], T],
        owner: Hashable,
        kind: UnitKind = UnitKind.INTERACTIVE,
        *,
        batch_key: Hashable | None = None,
    ) -> Future[T]:
        """Queue ``fn`` as one unit of ``owner`` and return its future at once.

        The future gets ``fn``'s return value or the exception it raised; it raises
        :class:`UnitCancelled` when the unit is dropped before it ran. ``future.cancel()``
        withdraws a unit that has not started. Raises :class:`SchedulerClosed` after
        :meth:`close`.
        """
        unit = _Unit(fn, owner, UnitKind(kind), Future(), batch_key)
        self._enqueue(unit)
        return unit.future

    def run(
        self,
        fn: Callable[[], T],
        owner: Hashable,
        kind: UnitKind = UnitKind.INTERACTIVE,
        *,
        timeout: float | None = None,
        batch_key: Hashable | None = None,
    ) -> T:
        """Run ``fn`` as one unit of ``owner``, wait for it and return its value; re-raise its
        exception in the calling thread.

        ``timeout`` is in seconds, None for no limit. On timeout a unit that has not started is
        withdrawn, and the ``TimeoutError`` of :mod:`concurrent.futures` is raised (a unit that
        started runs to its end).
        """
        self._refuse_wait_on_worker("run()")
        future = self.submit(fn, owner, kind, batch_key=batch_key)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # timed out or interrupted: withdraw it unless it started
            raise

    def iterate(
        self,
        iterable: Iterable[T],
        owner: Hashable,
        kind: UnitKind = UnitKind.TRACKING,
        *,
        batch_key: Hashable | None = None,
    ) -> ScheduledIterator[T]:
        """Drive ``iterable`` (typically a generator) one unit per item.

        Returns an iterator for the caller's thread; each ``next()`` runs one ``next()`` of
        the underlying iterator as a unit of ``kind`` on a model thread and waits for it.
        Exceptions of the underlying iterator are re-raised in the caller, after which the
        iteration is over. ``close()`` on the returned iterator, its ``with`` block ending, or
        the caller dropping it closes the underlying generator on a model thread. ``iter()``
        is called on ``iterable`` in the calling thread, which for a generator runs none of
        its code.
        """
        stream = _Stream(self, iter(iterable), owner, UnitKind(kind), batch_key)
        with self._cond:
            if not self._accepting:
                raise SchedulerClosed()
            self._streams[stream] = None
        return ScheduledIterator(stream)

    # -- cancelling and closing ------------------------------------------------------------

    def cancel_owner(self, owner: Hashable) -> int:
        """Drop the queued units of ``owner`` and close its open iterations; return how many
        units were dropped.

        Dropped futures raise :class:`UnitCancelled`; a unit of ``owner`` already running
        finishes. The owner may submit new work afterwards.
        """
        with self._cond:
            dropped = self._drain_locked(lambda unit: unit.owner == owner)
            streams = [stream for stream in self._streams if stream.owner == owner]
        message = "This session was closed; reload the page to start again."
        _fail(dropped, message)
        for stream in streams:
            stream.abort(message)
        return len(dropped)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop accepting work, drop queued units, close open iterations on a model thread and
        join the workers; return True when all of them stopped.

        Waits at most ``timeout`` seconds in all (None: no limit) for running units and the
        closing of iterations; a unit that never returns keeps its daemon thread, and this
        returns False. Calling it again only waits again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            first = self._accepting
            self._accepting = False
            dropped = self._drain_locked(lambda unit: True) if first else []
            streams = list(self._streams) if first else []
        message = "The server is shutting down; try again in a moment."
        _fail(dropped, message)
        for stream in streams:
            stream.abort(message)
        with self._cond:
            # Only now may idle workers leave: the iterations' closing units are queued.
            self._stopping = True
            self._hold = None
            self._cond.notify_all()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is current:
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(thread.is_alive() for thread in self._threads if thread is not current)

    # -- status ----------------------------------------------------------------------------

    def snapshot(self, owner: Hashable) -> Snapshot:
        """Where ``owner`` stands now (see :class:`Snapshot`); cheap enough to call every
        second for every session."""
        with self._cond:
            queued = [unit for unit in self._queued_locked() if not unit.future.cancelled()]
            tracking_owners = {
                unit.owner for unit in queued + self._running if unit.kind is UnitKind.TRACKING
            }
            tracking_owners.update(
                stream.owner for stream in self._streams if stream.kind is UnitKind.TRACKING
            )
            tracking_owners.discard(owner)
            runs = [s for s in reversed(self._streams) if s.kind is UnitKind.TRACKING]
            return Snapshot(
                owner=owner,
                policy=self._policy,
                workers=self._concurrency,
                queued=sum(1 for unit in queued if unit.owner == owner),
                running=self._busy[owner],
                units_ahead=self._units_ahead_locked(owner),
                other_tracking_owners=len(tracking_owners),
                mean_unit_s=MappingProxyType(dict(self._mean_s)),
                run_unit_s=next((s.mean_s for s in runs if s.owner == owner), None),
            )

    # -- internals -------------------------------------------------------------------------

    def _refuse_wait_on_worker(self, what: str) -> None:
        if threading.current_thread() in self._threads:
            raise RuntimeError(f"{what} would wait for a unit from inside a unit")

    def _enqueue(self, unit: _Unit) -> Future:
        with self._cond:
            closing_ok = unit.cleanup and not self._stopping
            if not self._accepting and not closing_ok:
                raise SchedulerClosed()
            if self._policy is Policy.SERIAL:
                self._fifo.append(unit)
            elif unit.cleanup or unit.kind is UnitKind.INTERACTIVE:
                self._interactive.append(unit)
            elif unit.kind is UnitKind.TRACKING:
                queue = self._tracking.get(unit.owner)
                if queue is None:
                    queue = self._tracking[unit.owner] = deque()
                    self._rotation.append(unit.owner)
                queue.append(unit)
            else:
                self._background.append(unit)
            self._cond.notify()
        return unit.future

    def _queued_locked(self) -> list[_Unit]:
        """All queued units in the order the policy would run them if no owner were busy."""
        if self._policy is Policy.SERIAL:
            return list(self._fifo)
        units = list(self._interactive)
        queues = [list(self._tracking[owner]) for owner in self._rotation]
        for depth in range(max((len(queue) for queue in queues), default=0)):
            units.extend(queue[depth] for queue in queues if depth < len(queue))
        return units + list(self._background)

    def _units_ahead_locked(self, owner: Hashable) -> int:
        ahead = sum(1 for unit in self._running if unit.owner != owner)
        queued = [unit for unit in self._queued_locked() if not unit.future.cancelled()]
        for index, unit in enumerate(queued):
            if unit.owner == owner:
                return ahead + index
        if self._policy is Policy.SERIAL:
            return ahead + len(queued)
        return ahead + len(self._interactive) + len(self._rotation)

    def _drain_locked(self, match: Callable[[_Unit], bool]) -> list[_Unit]:
        """Remove the queued units that ``match`` and are not cleanup units; return them."""
        dropped: list[_Unit] = []
        for queue in (self._interactive, self._background, self._fifo):
            keep = [unit for unit in queue if unit.cleanup or not match(unit)]
            dropped.extend(unit for unit in queue if not unit.cleanup and match(unit))
            queue.clear()
            queue.extend(keep)
        for owner in list(self._rotation):
            queue = self._tracking[owner]
            dropped.extend(unit for unit in queue if match(unit))
            remaining = deque(unit for unit in queue if not match(unit))
            if remaining:
                self._tracking[owner] = remaining
            else:
                del self._tracking[owner]
                self._rotation.remove(owner)
        return dropped

    def _take_first(
        self, queue: deque[_Unit], accept: Callable[[_Unit], bool] | None = None
    ) -> _Unit | None:
        """Remove and start the first unit of ``queue`` whose owner is idle (and that
        ``accept`` allows); forget withdrawn units on the way."""
        for unit in list(queue):
            if unit.future.cancelled():
                queue.remove(unit)
            elif not self._busy[unit.owner] and (accept is None or accept(unit)):
                queue.remove(unit)
                if unit.future.set_running_or_notify_cancel():
                    return unit
        return None

    def _take_tracking(self) -> _Unit | None:
        for owner in list(self._rotation):
            if self._busy[owner]:
                continue  # keeps its place in the rotation
            queue = self._tracking[owner]
            unit = None
            while queue and unit is None:
                candidate = queue.popleft()
                if candidate.future.set_running_or_notify_cancel():
                    unit = candidate
            self._rotation.remove(owner)
            if queue:
                self._rotation.append(owner)
            else:
                del self._tracking[owner]
            if unit is not None:
                return unit
        return None

    def _pick_locked(self) -> _Unit | None:
        if self._policy is Policy.SERIAL:
            hold = self._hold
            unit = self._take_first(
                self._fifo, None if hold is None else (lambda unit: unit.stream is hold)
            )
            if unit is not None and unit.stream is not None and not self._stopping:
                self._hold = unit.stream
            return unit
        return (
            self._take_first(self._interactive)
            or self._take_tracking()
            or self._take_first(self._background)
        )

    def _end_stream_locked(self, stream: _Stream) -> None:
        self._streams.pop(stream, None)
        if self._hold is stream:
            self._hold = None

    def _end_stream(self, stream: _Stream) -> None:
        with self._cond:
            self._end_stream_locked(stream)
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                unit = self._pick_locked()
                while unit is None:
                    if self._stopping and not any(u.cleanup for u in self._queued_locked()):
                        return
                    self._cond.wait()
                    unit = self._pick_locked()
                self._busy[unit.owner] += 1
                self._running.append(unit)
            started = time.monotonic()
            error: BaseException | None = None
            result: Any = None
            try:
                result = unit.fn()
            except BaseException as exc:  # the caller gets it; the worker goes on
                error = exc
            elapsed = time.monotonic() - started
            with self._cond:
                self._busy[unit.owner] -= 1
                if not self._busy[unit.owner]:
                    del self._busy[unit.owner]
                self._running.remove(unit)
                if error is None and not unit.cleanup and result is not _DONE:
                    self._mean_s[unit.kind] = _average(
                        self._mean_s.get(unit.kind), elapsed, self._alpha
                    )
                    if unit.stream is not None:
                        unit.stream.mean_s = _average(unit.stream.mean_s, elapsed, self._alpha)
                if unit.stream is not None and unit.stream.finished:
                    self._end_stream_locked(unit.stream)
                self._cond.notify_all()
            # Outside the lock: done-callbacks may submit more work.
            if error is None:
                unit.future.set_result(result)
            else:
                unit.future.set_exception(error)
            # Idle workers must not keep results, exceptions or generators alive.
            unit = result = error = None


def _average(previous: float | None, elapsed: float, alpha: float) -> float:
    return elapsed if previous is None else previous + alpha * (elapsed - previous)


def _fail(units: list[_Unit], message: str) -> None:
    for unit in units:
        if unit.future.set_running_or_notify_cancel():
            unit.future.set_exception(UnitCancelled(message))


class _Stream:
    """The state of one iteration, shared by the caller's iterator and the model threads.

    The scheduler refers to this object, never to the :class:`ScheduledIterator`, so that
    a caller dropping its iterator lets it be collected and its finalizer close the stream.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        iterator: Iterator[Any],
        owner: Hashable,
        kind: UnitKind,
        batch_key: Hashable | None,
    ):
        self.scheduler = scheduler
        self.iterator: Iterator[Any] | None = iterator
        self.owner = owner
        self.kind = kind
        self.batch_key = batch_key
        self.lock = threading.RLock()  # reentrant for the same reason as the scheduler's
        self.pending: Future | None = None  # the step a caller waits, or waited, for
        self.waiting = False  # a caller waits for ``pending`` now
        self.closed = False  # no step will be submitted any more
        self.reason: str | None = None  # why it was closed, when not by its caller
        self.close_future: Future | None = None
        self.close_logged = False
        # Set on a model thread once the underlying iterator is exhausted, failed or closed;
        # read by the scheduler under its lock and by the caller after a step's future.
        self.finished = False
        # Seconds one step took on a model thread (moving average), written under the
        # scheduler's lock; None before the first step was measured.
        self.mean_s: float | None = None

    # Model thread side.

    def step(self) -> Any:
        try:
            return next(self.iterator)
        except StopIteration:
            self.finished = True
            self.iterator = None
            return _DONE
        except BaseException:
            self.finished = True
            self.iterator = None
            raise

    def shut(self) -> None:
        iterator, self.iterator = self.iterator, None
        try:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        finally:
            self.finished = True

    # Caller side.

    def next(self, timeout: float | None = None) -> Any:
        self.scheduler._refuse_wait_on_worker("next()")
        with self.lock:
            if self.closed:
                if self.reason is not None:
                    raise UnitCancelled(self.reason)
                raise StopIteration
            if self.waiting:
                raise RuntimeError("another thread is already waiting for this iteration")
            future = self.pending
            if future is None:  # else: a step whose wait timed out is still on its way
                unit = _Unit(self.step, self.owner, self.kind, Future(), self.batch_key, self)
                try:
                    future = self.pending = self.scheduler._enqueue(unit)
                except SchedulerClosed as exc:
                    self.abort(str(exc))
                    raise
            self.waiting = True
        delivered = True  # False while the step's value has not reached this caller
        try:
            value = future.result(timeout)
        except FutureTimeout:
            # The step stays pending (see ScheduledIterator.next_within), even when it
            # completes before the bookkeeping below: the next call returns its value.
            delivered = False
            raise
        except CancelledError:
            raise UnitCancelled(self.reason or "The iteration was closed.") from None
        except UnitCancelled as exc:
            self.abort(str(exc))
            raise
        except BaseException:
            self.abort(None)
            raise
        finally:
            with self.lock:
                self.waiting = False
                if delivered and self.pending is future:
                    self.pending = None
        if value is _DONE:
            self.abort(None)
            raise StopIteration
        return value

    def abort(self, reason: str | None, wait: bool = False) -> None:
        """Close the iteration: withdraw a step not started, and close the underlying
        iterator on a model thread unless it already finished. ``reason`` is None when the
        caller closes it, else the message later ``next()`` calls raise. With ``wait``,
        wait for the closing and re-raise what the iterator's ``close()`` raised."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.reason = reason
                if self.pending is not None:
                    self.pending.cancel()
                if self.finished:
                    self.scheduler._end_stream(self)
                else:
                    self._submit_close()
            future = self.close_future
        if future is None:
            return
        if wait and threading.current_thread() not in self.scheduler._threads:
            future.result()
        elif not self.close_logged:
            self.close_logged = True  # nobody waits for it: an error would go unseen
            future.add_done_callback(_log_close_error)

    def _submit_close(self) -> None:
        unit = _Unit(self.shut, self.owner, self.kind, Future(), self.batch_key, self, True)
        try:
            self.close_future = self.scheduler._enqueue(unit)
        except SchedulerClosed:
            # No model thread is left; the garbage collector closes the generator instead.
            self.iterator = None
            self.finished = True
            self.scheduler._end_stream(self)


def _log_close_error(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("closing an iteration failed", exc_info=future.exception())


class ScheduledIterator(Iterator[T], Generic[T]):
    """The caller's side of :meth:`Scheduler.iterate`.

    Each ``next()`` waits for one unit; after the underlying iterator is exhausted, raised or
    was closed by ``close()``, ``next()`` raises StopIteration. When the iteration was closed
    by :meth:`Scheduler.cancel_owner` or :meth:`Scheduler.close` (or by ``close()`` from
    another thread while ``next()`` waited), ``next()`` raises :class:`UnitCancelled`.
    """

    def __init__(self, stream: _Stream):
        self._stream = stream
        self._finalizer = weakref.finalize(self, stream.abort, None)
        self._finalizer.atexit = False

    @property
    def owner(self) -> Hashable:
        return self._stream.owner

    @property
    def kind(self) -> UnitKind:
        return self._stream.kind

    def __iter__(self) -> ScheduledIterator[T]:
        return self

    def __next__(self) -> T:
        return self._stream.next()

    def next_within(self, timeout: float) -> T:
        """``next()`` that waits at most ``timeout`` seconds: on timeout it raises the
        ``TimeoutError`` of :mod:`concurrent.futures` and the step stays queued, so the next
        call (``next()`` or this) goes on waiting for the same item rather than asking for
        another; a caller may so report progress while it waits."""
        return self._stream.next(timeout)

    def close(self) -> None:
        """Close the underlying generator on a model thread and wait until it is closed,
        re-raising what its ``close()`` raised. Idempotent. From inside a unit it does not
        wait."""
        self._finalizer.detach()
        self._stream.abort(None, wait=True)

    def __enter__(self) -> ScheduledIterator[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
