"""A tracking run that belongs to the session, not to the page that started it.

:func:`start_run` runs :meth:`~sam2web.session.user.UserSession.propagate` and then the
exports in a thread of the session's own (the session is held, :meth:`busy`, from the
start until the files are written), so a run goes on while the tab that started it is
reloaded, closed or offline. Any page showing the session reads its progress
(:meth:`BackgroundRun.wait`) and, once it ended, its results; a run fails, is cancelled
(:meth:`~sam2web.session.user.UserSession.cancel`) or ends with the session's close as it
would in the request itself. The thread runs in a copy of the starting request's context
(contextvars), so what the request set up for it (a lent GPU on ZeroGPU) still applies.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..analysis.tables import Calibration
from ..errors import TrackingError
from ..outputs.render import OverlayStyle
from ..tracking.tracker import PropagationStep
from .lifecycle import Exports
from .user import UserSession

log = logging.getLogger(__name__)


@dataclass
class RunProgress:
    """Where a background run stands, as any page reads it."""

    phase: str = "starting"  # starting | tracking | exporting | done | failed | cancelled
    frame: int | None = None  # the frame tracked last
    done: int = 0
    total: int = 0
    export_done: int = 0
    export_total: int = 0
    error: BaseException | None = None
    exports: Exports | None = None
    science: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "failed", "cancelled")


class BackgroundRun:
    """One tracking run of ``user`` in a thread the session owns (see :func:`start_run`)."""

    def __init__(self, user: UserSession, plan: tuple[str, int | None, int | None]):
        self.user = user
        self.plan = plan
        self.progress = RunProgress()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        # Called once the run ended (the keeper releases the state of a session no tab shows).
        self.on_end: Callable[[BackgroundRun], None] | None = None

    def _update(self, **changes) -> None:
        with self._changed:
            for key, value in changes.items():
                setattr(self.progress, key, value)
            self._changed.notify_all()

    def wait(self, timeout: float, seen: tuple | None = None) -> RunProgress:
        """The progress, once it differs from ``seen`` (a :meth:`mark`) or after
        ``timeout`` seconds, whichever comes first."""
        with self._changed:
            self._changed.wait_for(lambda: self.mark() != seen, timeout)
            return self.progress

    def mark(self) -> tuple:
        p = self.progress
        return (p.phase, p.done, p.export_done)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _track(self, step: PropagationStep) -> None:
        self._update(
            phase="tracking", frame=step.result.frame_idx, done=step.done, total=step.total
        )

    def _exported(self, done: int, total: int) -> None:
        self._update(phase="exporting", export_done=done, export_total=total)

    def _work(self, release_busy: Callable[[], None]) -> None:
        user = self.user
        try:
            total = len(user.ensure_tracking().planned_frames(*self.plan))
            self._update(phase="tracking", total=total)
            for step in user.propagate(*self.plan, on_wait=self._poke):
                self._track(step)
            if user.closed:
                self._update(phase="cancelled")
                return
            self._update(phase="exporting")
            exports = user.export(progress=self._exported)
            science = user.export_science(user.calibration)
            cancelled = user.last_run.cancelled
            self._update(
                phase="cancelled" if cancelled else "done", exports=exports, science=science
            )
        except BaseException as err:  # told to whichever page follows the run
            if not user.closed:
                log.info("a background run ended with %s: %s", type(err).__name__, err)
            self._update(phase="failed", error=err)
        finally:
            release_busy()
            if self.on_end is not None:
                try:
                    self.on_end(self)
                except Exception:
                    log.exception("after a background run")

    def _poke(self) -> None:
        with self._changed:
            self._changed.notify_all()


def start_run(
    user: UserSession,
    direction: str,
    start: int | None,
    end: int | None,
    style: OverlayStyle | None = None,
    calibration: Calibration | None = None,
    on_end: Callable[[BackgroundRun], None] | None = None,
) -> BackgroundRun:
    """Start tracking ``user``'s objects in the session's own thread and return the run
    (also ``user.background``). Refused in one sentence while the session is busy with
    another long action; the checks of :meth:`UserSession.propagate` (objects, frames) are
    made before the thread starts, so a bad request changes nothing."""
    busy = user.busy()
    busy.__enter__()  # held until the thread ends (a Lock may be released by any thread)
    try:
        if style is not None:
            user.style = style
        if calibration is not None:
            user.calibration = calibration
        tracking = user.ensure_tracking()
        tracking.planned_frames(direction, start, end)  # raises the run's refusals now
    except BaseException as err:
        busy.__exit__(type(err), err, err.__traceback__)
        raise
    run = BackgroundRun(user, (direction, start, end))
    run.on_end = on_end
    user.background = run

    def release() -> None:
        busy.__exit__(None, None, None)

    context = contextvars.copy_context()
    run._thread = threading.Thread(
        target=context.run, args=(run._work, release), name="sam2web-run", daemon=True
    )
    run._thread.start()
    return run


def running(user: UserSession) -> BackgroundRun | None:
    """The session's background run while it has not ended, else None."""
    run = user.background
    return run if run is not None and not run.progress.finished else None


def result_of(run: BackgroundRun) -> RunProgress:
    """The ended run's progress, raising its error (a :class:`UserError` stays one)."""
    progress = run.progress
    if progress.phase == "failed" and progress.error is not None:
        raise progress.error
    if not progress.finished:
        raise TrackingError("Tracking is still running.")
    return progress
