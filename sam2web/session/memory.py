"""The RAM of a session's SAM 2 state: given back while the session is not used, and
rebuilt exactly when it is used again (:class:`ModelMemory`, a part of the user session
between :class:`~sam2web.session.lifecycle.Lifecycle` and
:class:`~sam2web.session.video.VideoSession`).

Releasing drops SAM 2's inference state and the frame cache
(:meth:`~sam2web.tracking.tracker.TrackingSession.release_state`); objects, prompts,
history, masks on disk, results and files stay. The next model step replays the history
into a scratch session, unit by unit on the shared model, and the session adopts that
state (:meth:`~sam2web.tracking.tracker.TrackingSession.adopt`): the same history on the
same frames and model gives the same state, so later clicks and runs give the same masks
as if the state had never been released.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import TrackingError
from ..history import Action, Propagate
from ..tracking.scheduler import UnitCancelled, UnitKind
from ..tracking.tracker import StateReleased, TrackingSession, replay
from .lifecycle import Lifecycle

log = logging.getLogger(__name__)


@dataclass
class ModelMemory(Lifecycle):
    """Releasing and rebuilding the session's SAM 2 state (``tracking``, ``model_key``
    and ``quality`` are :class:`~sam2web.session.video.VideoSession`'s)."""

    # Held while a released SAM 2 state is rebuilt (see rebuild_if_released).
    _rebuilding: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release_model(self) -> bool:
        """Give back the RAM of SAM 2's inference state (and the frame cache) while this
        session is not used: objects, prompts, history, masks on disk, results and files
        stay, and the state is rebuilt exactly, by replaying the history, when the model
        is next needed. Refused (False) while the session tracks, exports or loads."""
        tracking = self.tracking
        if tracking is None or self.closed or not self._busy.acquire(blocking=False):
            return False
        try:
            released = tracking.release_state()
        finally:
            self._busy.release()
        if released:
            log.info("released the model state of a session (%d actions)", len(tracking.history))
        return released

    @property
    def model_released(self) -> bool:
        return self.tracking is not None and self.tracking.state_released

    def model_bytes(self) -> int:
        """Bytes of model state and cached frames this session holds now."""
        return 0 if self.tracking is None else sum(self.tracking.held_bytes().values())

    def rebuild_if_released(self, tracking: TrackingSession) -> None:
        """Give ``tracking`` back its SAM 2 state, when it was released, by replaying its
        history on the shared model into a scratch session and adopting that state (the
        masks on disk are untouched). Clicks wait for it as for a run."""
        if not tracking.state_released:
            return
        with self._rebuilding:
            if not tracking.state_released:
                return
            tracking.propagating = True  # refuses other model work and a release meanwhile
            try:
                fresh = self.replay_history(tracking, "rebuild-masks", stop=lambda: self.closed)
            finally:
                tracking.propagating = False
            if fresh is None:
                raise TrackingError("This session was closed while its model state was rebuilt.")
            tracking.adopt(fresh)
            log.info("rebuilt a released model state (%d actions)", len(tracking.history))

    def replay_history(
        self,
        tracking: TrackingSession,
        scratch_name: str,
        stop: Callable[[], bool],
        on_unit: Callable[[], None] | None = None,
    ) -> TrackingSession | None:
        """A new tracking session on this video that replayed ``tracking``'s history, unit
        by unit on the shared model (``on_unit()`` after each), with its masks in a scratch
        folder that is removed afterwards; None when ``stop()`` became true between units
        or the session closed."""
        assert self.workspace is not None
        scratch = self.workspace.root / scratch_name
        shutil.rmtree(scratch, ignore_errors=True)
        fresh = None
        try:
            fresh = self.engine.start_session(
                self.workspace, self.model_key, quality=self.quality, masks_dir=scratch
            )
            for action in list(tracking.history):
                for _ in self._replay_units(fresh, action, stop):
                    if on_unit is not None:
                        on_unit()
                if stop():
                    return None
        except UnitCancelled:
            if self.closed:
                return None
            raise
        finally:
            if fresh is not None:  # its writes behind end before the folder goes
                fresh.store.close()
            shutil.rmtree(scratch, ignore_errors=True)
        return fresh

    def _replay_units(
        self, fresh: TrackingSession, action: Action, stop: Callable[[], bool]
    ) -> Iterator[None]:
        if stop():
            return
        if isinstance(action, Propagate):
            halt = _StopFlag(stop)
            for _ in self.model_steps(fresh, fresh.replay_run(action, halt)):
                yield None
        else:
            self.on_model(fresh, lambda: replay(fresh, action))
            yield None

    def on_model(self, tracking: TrackingSession, fn, kind: UnitKind = UnitKind.INTERACTIVE):
        """As :meth:`Lifecycle.on_model`, rebuilding a released state first."""
        self.rebuild_if_released(tracking)
        try:
            return super().on_model(tracking, fn, kind)
        except StateReleased:  # released between the check and the unit: once more
            self.rebuild_if_released(tracking)
            return super().on_model(tracking, fn, kind)


class _StopFlag:
    """``stop()`` as the event a replayed run checks between frames."""

    def __init__(self, stop: Callable[[], bool]):
        self._stop = stop

    def is_set(self) -> bool:
        return bool(self._stop())
