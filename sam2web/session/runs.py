"""Where a user's tracking run goes and how it is followed: on the shared model here, as a job
on ZeroGPU (:mod:`sam2web.compute.zerogpu`) or on a Ray cluster (:mod:`sam2web.compute.remote`),
with this process's state rebuilt after runs on the cluster (as part of the run: scheduled
units that Cancel and closing stop), and the run's steps passed on
while its summary and the exports beside tracking are fed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from ..compute import remote
from ..compute.zerogpu import TrackingJob, propagate_in_job
from ..history import Propagate
from ..outputs.exports import LiveExports
from ..tracking.tracker import PropagationStep, TrackingSession
from ..types import WaitCallback
from .lifecycle import TrackingRun
from .prompts import PromptSession

log = logging.getLogger(__name__)


def run_steps(
    user: PromptSession,
    tracking: TrackingSession,
    cluster: remote.Cluster | None,
    plan: tuple[str, int | None, int | None],
    notes: list[str],
    on_wait: WaitCallback | None,
) -> Iterator[PropagationStep]:
    """The steps of a run (``plan``: direction, start and end frame): on the shared model
    here, as a job on ZeroGPU, or on the Ray cluster ``cluster``. A run here after runs
    on the cluster first replays the history on this server's model (see
    :func:`_replay_here`)."""
    if user.engine.gpu_jobs or cluster is not None:
        assert user.workspace is not None
        job = user.engine.tracking_job(
            user.workspace, tracking, user.model_key, *plan, quality=user.quality
        )
        if cluster is None:
            return propagate_in_job(job, tracking, user.cancel_event)
        return _remote_steps(user, cluster, job, tracking, notes)
    if user.remote_state_stale:
        return _here_after_cluster(user, tracking, plan, on_wait)
    run = tracking.propagate(*plan, cancel=user.cancel_event)
    return user.model_steps(tracking, run, on_wait=on_wait)


def cluster_for_run(user: PromptSession, notes: list[str]) -> remote.Cluster | None:
    """The Ray cluster this run goes to (SAM2WEB_RAY_ADDRESS), or None to track here;
    when it cannot be used, one sentence in ``notes`` (or, with
    SAM2WEB_RAY_FALLBACK=refuse, a refusal)."""
    settings = user.engine.settings
    if not settings.ray_address or user.engine.gpu_jobs:
        return None
    try:
        return remote.connect(settings.ray_address)
    except remote.ClusterUnavailable as reason:
        log.warning("tracking here: %s", reason)
        if settings.ray_fallback == "refuse":
            raise remote.refuse(reason) from None
        notes.append(remote.unavailable_sentence(reason, "local"))
        return None


def _remote_steps(
    user: PromptSession,
    cluster: remote.Cluster,
    job: TrackingJob,
    tracking: TrackingSession,
    notes: list[str],
) -> Iterator[PropagationStep]:
    """``job`` on the cluster, with the session's frames put in its object store once."""
    assert user.workspace is not None
    frames_dir = user.workspace.frames_dir

    def frames():
        key = (str(frames_dir), cluster.generation)
        if user.remote_frames is None or user.remote_frames[:2] != key:
            user.remote_frames = (*key, cluster.put_frames(frames_dir))
        return user.remote_frames[2]

    user.remote_state_stale = True
    job = remote.remote_job(job, user.engine.settings.device)
    return remote.propagate_remote(
        cluster, job, frames, tracking, user.cancel_event, notes, user.remote_stops
    )


def _here_after_cluster(
    user: PromptSession,
    tracking: TrackingSession,
    plan: tuple[str, int | None, int | None],
    on_wait: WaitCallback | None,
) -> Iterator[PropagationStep]:
    """A run here after runs on the cluster: the replay, then the run on its result."""
    fresh = _replay_here(user, tracking, on_wait)
    if fresh is None:  # cancelled, or the session closed
        return
    run = fresh.propagate(*plan, cancel=user.cancel_event)
    yield from user.model_steps(fresh, run, on_wait=on_wait)


def replay_units(history) -> int:
    """The units a replay of ``history`` takes: one per action, one per tracked frame."""
    return sum(sum(p.frames for p in a.passes) if isinstance(a, Propagate) else 1 for a in history)


def _replay_here(
    user: PromptSession, tracking: TrackingSession, on_wait: WaitCallback | None
) -> TrackingSession | None:
    """After runs on the cluster, this process's SAM2 state lacks their frames: the
    history is replayed into a fresh session, unit by unit on the shared model (counted in
    the run's ``replayed``, with ``on_wait()`` after each), so tracking here continues
    exactly. Its masks go to a scratch folder: the session's own store, which already holds
    every frame, is untouched until the replay is complete. Cancel and closing the session
    stop it between units (None); clicks wait for it as for any run."""
    run = user.last_run
    run.to_replay = replay_units(tracking.history)

    def counted() -> None:
        run.replayed += 1
        if on_wait is not None:
            on_wait()

    tracking.propagating = True  # the session is busy until the replay is done
    try:
        fresh = user.replay_history(
            tracking, "replay-masks", stop=user.cancel_event.is_set, on_unit=counted
        )
    finally:
        tracking.propagating = False
    if fresh is None:
        return None
    fresh.store = tracking.store
    for obj in tracking.objects.values():
        if obj.obj_id in fresh.objects:
            fresh.objects[obj.obj_id].name = obj.name
            fresh.objects[obj.obj_id].color = obj.color
    user.tracking, user.remote_state_stale = fresh, False
    return fresh


def follow_run(
    user: PromptSession,
    steps: Iterator[PropagationStep],
    live: LiveExports,
    notes: list[str] | None = None,
) -> Iterator[PropagationStep]:
    """Pass a run's steps on, feeding the pass beside tracking and the run's summary
    (``notes``: sentences about where the run went, filled in as it goes)."""
    started = time.perf_counter()
    run = user.last_run = TrackingRun(notes=[] if notes is None else notes)
    total = None
    try:
        for step in steps:
            live.frame_done(step.result.frame_idx, step.result)
            run.frames, total = step.done, step.total
            run.seconds = time.perf_counter() - started
            user.touch()
            yield step
    except BaseException:
        user.forget_results()
        raise
    finally:
        run.cancelled = user.cancel_event.is_set()
        log.info(
            "tracking %s after %d of %s frames in %.1f s",
            "cancelled" if run.cancelled else "ended",
            run.frames,
            "?" if total is None else total,
            time.perf_counter() - started,
        )
