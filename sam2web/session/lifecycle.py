"""One user's workspace and the rules for using it, and the records the parts of the user
session share.

:class:`Lifecycle` is the part that keeps files safe while the session is used from several
threads and closed at any moment, and that runs the session's model work on the shared model:
each click, undo or object change is one unit of the engine's
:class:`~sam2web.tracking.scheduler.Scheduler`, each tracked frame another, so users take turns on the
model while their uploads, frames and exports never wait for anyone else. :func:`writes_files`
marks the methods that write into the session's folder; :class:`Exports` and
:class:`TrackingRun` are the last export's files and the last run's summary.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SessionClosedError, TrackingError
from ..history import Action, Propagate
from ..tracking.scheduler import Scheduler, Snapshot, UnitCancelled, UnitKind
from ..tracking.tracker import TrackingSession, replay
from ..types import WaitCallback
from .engine import Engine, Workspace

TRACKING_RUNS = "Tracking is running; wait for it to finish or press Cancel first."


@dataclass
class Exports:
    video: Path | None = None
    csv: Path | None = None
    masks: Path | None = None

    def files(self) -> list[Path]:
        return [p for p in (self.video, self.csv, self.masks) if p is not None]


@dataclass
class TrackingRun:
    """Summary of the last propagation."""

    frames: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)  # sentences for the page (the cluster)
    # After runs on the cluster, a run here first replays the history on this server's
    # model: the steps of that replay (actions and tracked frames), and how many are done.
    to_replay: int = 0
    replayed: int = 0

    @property
    def replaying(self) -> bool:
        return self.replayed < self.to_replay


def writes_files(method):
    """Mark a method that writes into the session's folder: it refuses to start once the
    session is closed, and a close() while it runs removes the folder only after it
    returned (so nothing is ever written into, or re-created in, a removed folder)."""

    @functools.wraps(method)
    def wrapper(self: Lifecycle, *args, **kwargs):
        with self.writing():
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class Lifecycle:
    """A user's workspace and the rules for using it from several threads: one long action
    at a time (:meth:`busy`), no file written after :meth:`close`, and the folder removed
    once nothing writes into it any more."""

    engine: Engine
    workspace: Workspace | None = None
    last_used: float = field(default_factory=time.time)
    closed: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _writers: int = 0  # methods writing into the folder right now (see writes_files)
    _busy: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # This session's key in the model schedulers (see sam2web.tracking.scheduler).
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    # True once a SessionKeeper keeps it (sam2web.session.keeper): then its idle expiry
    # closes it, not its tab closing.
    kept: bool = False

    def __deepcopy__(self, memo):
        # A user session is owned, never duplicated: Gradio deep-copies the value a state
        # factory returns, and a copy would share the workspace folder anyway.
        return self

    def touch(self) -> None:
        self.last_used = time.time()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Hold this session for one long action: an upload, tracking with its exports, an
        export, loading a project. A second long action of the same user while one runs is
        refused with one sentence, so two runs never interleave their results. A session
        closed meanwhile loses its files when the action ends (see :meth:`close`)."""
        if not self._busy.acquire(blocking=False):
            raise TrackingError(
                "This video is busy with another action (tracking, exporting or loading); "
                "wait for it to finish or press Cancel first."
            )
        try:
            yield
        finally:
            try:
                with self._guard:
                    drop = self.closed and self._writers == 0
                if drop:
                    self.drop_workspace()
            finally:
                self._busy.release()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around writing into the session's folder (see :func:`writes_files`)."""
        with self._guard:
            if self.closed:
                raise SessionClosedError()
            self._writers += 1
        try:
            yield
        finally:
            with self._guard:
                self._writers -= 1
                last = self.closed and self._writers == 0
            if last:
                self.drop_workspace()

    def close(self) -> None:
        """Stop tracking and remove every file of this session.

        Safe to call from another thread while the session works (the page's unload comes
        whenever the tab closes): tracking is asked to stop, a frame being tracked finishes
        first and no further one starts; while a long action holds the session
        (:meth:`busy`) or a method writes files, the folder is removed when that ends, so
        nothing recreates it afterwards. Calling it again is harmless.
        """
        with self._guard:
            if self.closed:
                return
            self.closed = True
            writing = self._writers > 0
        self.cancel_event.set()
        self.stop_model_work()
        if not writing and self._busy.acquire(blocking=False):
            try:
                self.drop_workspace()
            finally:
                self._busy.release()

    def stop_model_work(self) -> None:
        """No model step may run after this returns (see :meth:`close`)."""
        self.engine.schedulers.cancel_owner(self.owner)

    # ------------------------------------------------------------------ the shared model
    def on_model(self, tracking: TrackingSession, fn, kind: UnitKind = UnitKind.INTERACTIVE):
        """Run ``fn`` (model work on ``tracking``) as one unit on the shared model and return
        its value. Refused in one sentence while this session tracks."""
        if tracking.propagating:
            raise TrackingError(TRACKING_RUNS)
        return self._scheduler(tracking).run(fn, self.owner, kind)

    def model_steps(
        self,
        tracking: TrackingSession,
        steps: Iterator,
        kind: UnitKind = UnitKind.TRACKING,
        on_wait: WaitCallback | None = None,
        wait_s: float = 1.0,
    ) -> Iterator:
        """``steps`` with each item computed as one unit on the shared model, which is given
        back between items; while an item waits, ``on_wait()`` runs about every ``wait_s``
        seconds (in the caller's thread, never holding the model). Once this session is
        closed the iteration ends quietly, as a cancelled one does."""
        with self._scheduler(tracking).iterate(steps, self.owner, kind) as shared:
            while True:
                try:
                    item = shared.next_within(wait_s)
                except TimeoutError:
                    if on_wait is not None:
                        on_wait()
                    continue
                except StopIteration:
                    return
                except UnitCancelled:
                    if self.closed:
                        return
                    raise
                yield item

    def replay_on_model(
        self, tracking: TrackingSession, action: Action, on_frame: Callable[[], None] | None = None
    ) -> None:
        """Apply a recorded action again on the shared model: a tracking run one unit per
        frame (``on_frame()`` after each), anything else as one unit."""
        if isinstance(action, Propagate):
            for _ in self.model_steps(tracking, tracking.replay_run(action)):
                if on_frame is not None:
                    on_frame()
        else:
            self.on_model(tracking, lambda: replay(tracking, action))

    def model_standing(self, tracking: TrackingSession | None) -> Snapshot | None:
        """Where this session stands with the shared model (None before it was used)."""
        if tracking is None:
            return None
        return self.engine.schedulers.standing(self.owner, str(tracking.predictor.device))

    def _scheduler(self, tracking: TrackingSession) -> Scheduler:
        return self.engine.schedulers.get(str(tracking.predictor.device))

    def drop_workspace(self) -> None:
        """Forget the video and remove the workspace folder."""
        if self.workspace is not None:
            self.workspace.remove()
            self.workspace = None
