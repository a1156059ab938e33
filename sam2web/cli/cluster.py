"""Batches on a Ray cluster: long-lived tracker workers, retries, one progress bar.

Each worker is a Ray actor that loads the model once and tracks videos one after another
with the same per-video step as a batch run here (passed in as ``track_one``, the command
line's :func:`sam2web.cli.track.track_video`). A video travels to a worker as its file's
bytes in Ray's object store and its results come back as the bytes of its output files, so
no disk is shared; the driver writes them where a run here would. A worker that dies while tracking (its
process killed, its node lost) is replaced and the video tried again, up to
``RayOptions.retries`` times; a video that fails for its own reasons (a damaged file) comes
back as one sentence and the others go on. Ray is optional: this module imports without
it, and :func:`require_ray` says how to install it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..compute.remote import cluster_device, wants_gpu
from ..compute.scratch import make_scratch
from ..errors import UserError
from ..session.batch import (
    Job,
    Tracked,
    check_video_file,
    failure_message,
    safe_suffix,
    sam2_progress_hidden,
)
from ..session.engine import Engine
from ..settings import Settings

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.25  # how often a worker reports its progress, at most
POLL_S = 0.25  # how often the driver redraws the bar while waiting
TRACK_PHASES = ("track", "run")  # the phases that count frames in the batch's bar
DEFAULT_CPUS_PER_WORKER = 4
REPLACE_TIMEOUT_S = 600.0  # for a replacement worker to load the model
CLOSE_TIMEOUT_S = 30.0  # for the workers to remove their scratch folders

INSTALL_HINT = (
    "Ray is not installed; install it with 'pip install -r requirements-ray.txt' to use "
    "--ray, or run without --ray."
)


@dataclass(frozen=True)
class RayOptions:
    address: str | None  # None: start Ray on this machine
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    retries: int = 2
    verbose: bool = False


def ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def require_ray():
    """The ``ray`` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


# ---------------------------------------------------------------------------- workers
class ProgressBoard:
    """Where workers report each video's progress and the driver reads it (a Ray actor)."""

    def __init__(self) -> None:
        self.state: dict[int, dict[str, tuple[int, int | None]]] = {}
        self.pids: dict[int, int] = {}

    def report(self, position: int, pid: int, phase: str, done: int, total: int | None) -> None:
        self.state.setdefault(position, {})[phase] = (done, total)
        self.pids[position] = pid

    def restart(self, position: int) -> None:
        self.state.pop(position, None)
        self.pids.pop(position, None)

    def read(self) -> tuple[dict, dict]:
        return self.state, self.pids


class _Reporter:
    """A progress sink for ``track_one`` (``phase``/``close``) that reports to the board."""

    def __init__(self, board, position: int):
        self.board, self.position, self.pid = board, position, os.getpid()
        self.last = 0.0

    def phase(self, name: str, unit: str = "frame"):
        def update(done: int, total: int | None) -> None:
            now = time.monotonic()
            if done == total or done == 0 or now - self.last >= PROGRESS_INTERVAL_S:
                self.last = now
                self.board.report.remote(self.position, self.pid, name, done, total)

        return update

    def close(self, keep: bool = True) -> None:
        pass


class Tracker:
    """One worker (a Ray actor): loads the model once, then tracks one video per call."""

    def __init__(self, settings: Settings, track_one: Callable, options: dict):
        # Removed by close(), at exit, or by the next worker if this one is killed.
        self.scratch = make_scratch()
        self.engine = Engine(dataclasses.replace(settings, data_dir=self.scratch / "sessions"))
        self.engine.predictor()
        self.track_one, self.options = track_one, options

    def pid(self) -> int:
        return os.getpid()

    def track(self, position: int, name: str, data: bytes, board) -> dict:
        """Track one video given as its file's bytes; returns {"tracked", "files"} or
        {"error"} (the failure's sentence), with "seconds"."""
        started = time.perf_counter()
        job = self.scratch / f"video{position}"
        shutil.rmtree(job, ignore_errors=True)
        job.mkdir(parents=True)
        try:
            video = job / f"input{safe_suffix(name)}"
            video.write_bytes(data)
            del data
            with sam2_progress_hidden():
                tracked = self.track_one(
                    self.engine,
                    video,
                    folder=job / "out",
                    source_name=name,
                    bar=_Reporter(board, position),
                    **self.options,
                )
            files = {p.name: p.read_bytes() for p in sorted((job / "out").iterdir())}
            result = {"tracked": tracked, "files": files}
        except Exception as err:  # the video's own failure: one sentence, the worker goes on
            log.debug("tracking %s failed", name, exc_info=True)
            result = {"error": failure_message(err)}
        finally:
            shutil.rmtree(job, ignore_errors=True)
        result["seconds"] = time.perf_counter() - started
        return result

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


# ---------------------------------------------------------------------------- sizing
@dataclass(frozen=True)
class Sizing:
    workers: int
    cpus: float
    gpus: float


def _count(n: float, noun: str) -> str:
    return f"{n:g} {noun}{'' if n == 1 else 's'}"


def plan_workers(options: RayOptions, resources: dict, videos: int, device: str) -> Sizing:
    """How many workers and what each takes, from the options and the cluster's
    resources: one per GPU by default, else one per ``DEFAULT_CPUS_PER_WORKER`` cores (all
    of a smaller cluster's); ``--workers`` alone shares the cores among that many. The
    device is chosen as for the web app's runs on a cluster (``auto``: a GPU where the
    cluster has one, see :func:`~sam2web.compute.remote.cluster_device`). Refuses workers
    that cannot all run at once (they would wait for resources forever)."""
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    per_gpu = options.gpus_per_worker
    if per_gpu is None:
        per_gpu = 1.0 if wants_gpu(cluster_device(device, gpus)) else 0.0
    per_cpu = options.cpus_per_worker
    if per_cpu is None:
        count = options.workers or (int(gpus / per_gpu) if per_gpu else 1)
        per_cpu = float(max(1, min(DEFAULT_CPUS_PER_WORKER, int(cpus / max(1, count)))))
    workers = options.workers
    if not workers:
        workers = int(gpus / per_gpu) if per_gpu else int(cpus / per_cpu)
    workers = max(1, min(workers, videos))
    if workers * per_cpu > cpus or workers * per_gpu > gpus:
        raise UserError(
            f"The cluster has {_count(cpus, 'CPU core')} and {_count(gpus, 'GPU')}, fewer "
            f"than {_count(workers, 'worker')} of {_count(per_cpu, 'core')} and "
            f"{_count(per_gpu, 'GPU')} "
            "take; lower --workers, --cpus-per-worker or --gpus-per-worker."
        )
    return Sizing(workers, per_cpu, per_gpu)


# ---------------------------------------------------------------------------- driver
@dataclass
class _Attempt:
    job: Job
    slot: int
    tries: int
    data_ref: object = None


class _Batch:
    """The driver's side of one batch: the workers, the queue of videos, the bar."""

    def __init__(self, ray, settings, options, track_one, track_options, sizing: Sizing):
        self.ray, self.options = ray, options
        self.make = lambda: (
            ray.remote(Tracker)
            .options(num_cpus=sizing.cpus, num_gpus=sizing.gpus, max_restarts=0)
            .remote(settings, track_one, track_options)
        )
        self.board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        self.workers = [self.make() for _ in range(sizing.workers)]
        self.pids = self._ready(list(range(len(self.workers))))
        self.inflight: dict = {}
        self.seen: set[int] = set()
        from tqdm import tqdm

        self.bar = tqdm(desc="batch", unit="frame", dynamic_ncols=True, file=sys.stderr)

    def _ready(self, slots: list[int], timeout: float | None = None) -> dict[int, int]:
        """Wait until the workers in ``slots`` have loaded the model; {slot: pid}."""
        try:
            pids = self.ray.get([self.workers[s].pid.remote() for s in slots], timeout=timeout)
        except self.ray.exceptions.RayError as err:
            cause = getattr(err, "cause", None) or err
            text = cause.message if isinstance(cause, UserError) else _first_line(cause)
            raise UserError(f"The workers could not start: {text}") from None
        for slot, pid in zip(slots, pids, strict=True):
            log.info("worker %d ready (pid %d)", slot + 1, pid)
        return dict(zip(slots, pids, strict=True))

    def submit(self, job: Job, slot: int, tries: int) -> None:
        data = self.ray.put(job.video.read_bytes())
        ref = self.workers[slot].track.remote(job.position, job.video.name, data, self.board)
        self.inflight[ref] = _Attempt(job, slot, tries, data)

    def replace(self, slot: int) -> None:
        self.ray.kill(self.workers[slot], no_restart=True)
        self.workers[slot] = self.make()
        self.pids.update(self._ready([slot], timeout=REPLACE_TIMEOUT_S))

    def draw(self) -> None:
        state, pids = self.ray.get(self.board.read.remote())
        done = total = 0
        for position, phases in state.items():
            for phase, (d, t) in phases.items():
                if phase in TRACK_PHASES:
                    done, total = done + d, total + (t or 0)
            if position not in self.seen and position in pids:
                self.seen.add(position)
                log.info("video %d tracking on worker pid %d", position, pids[position])
        self.bar.total = max(total, done) or None
        self.bar.n = done
        self.bar.refresh()

    def stop(self) -> None:
        """End the workers: at the end of a batch each first removes its scratch folder;
        when interrupted, the running videos are cancelled and the workers killed."""
        live = [w for w in self.workers if w is not None]
        if not self.inflight:
            with contextlib.suppress(Exception):
                self.ray.get([w.close.remote() for w in live], timeout=CLOSE_TIMEOUT_S)
        for ref in self.inflight:
            with contextlib.suppress(Exception):  # finished meanwhile, or its worker is gone
                self.ray.cancel(ref)
        for worker in self.workers:
            if worker is not None:
                self.ray.kill(worker, no_restart=True)
        self.ray.kill(self.board, no_restart=True)
        self.bar.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__)[:300]


def track_on_ray(
    jobs: list[Job],
    settings: Settings,
    options: RayOptions,
    track_one: Callable,
    track_options: dict,
    out: Path,
    write_outputs: Callable[[Path, dict[str, bytes]], None],
    report: Callable,
) -> list:
    """Track ``jobs`` on Ray and write each video's files into ``out / job.folder``
    with ``write_outputs(folder, files)``; ``report(job, out, outcome, seconds, write)``
    prints its lines and returns its summary row. Returns the rows in the order videos
    finished. Raises UserError when Ray is missing or the cluster cannot run the workers;
    Ctrl-C stops the workers and, for a Ray started here, Ray."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, options)
    batch = None
    try:
        sizing = plan_workers(options, ray.cluster_resources(), len(jobs), settings.device)
        print(
            f"Starting {sizing.workers} worker{'s' if sizing.workers != 1 else ''} on Ray "
            f"({sizing.cpus:g} cores, {sizing.gpus:g} GPUs each) ...",
            file=sys.stderr,
        )
        batch = _Batch(ray, settings, options, track_one, track_options, sizing)
        return _run(ray, batch, deque(jobs), out, write_outputs, report)
    finally:
        if batch is not None:
            batch.stop()
        if started_here:
            ray.shutdown()


def _connect(ray, options: RayOptions) -> None:
    """Start Ray here, or join the cluster at ``options.address``."""
    extra = {}
    host = (options.address or "").removeprefix("ray://").rsplit(":", 1)[0]
    if host in ("127.0.0.1", "localhost"):  # a cluster on this machine's loopback address
        extra["_node_ip_address"] = "127.0.0.1"
    try:
        ray.init(
            address=options.address,
            include_dashboard=False,
            log_to_driver=options.verbose,
            logging_level=logging.INFO if options.verbose else logging.WARNING,
            **extra,
        )
    except (ConnectionError, TimeoutError) as err:
        log.debug("connecting to Ray failed", exc_info=True)
        raise UserError(
            f"Could not join the Ray cluster at {options.address} ({_first_line(err)}); check "
            "that 'ray start --head' runs there and the address is right."
        ) from None


def _run(ray, batch: _Batch, queue: deque, out: Path, write_outputs, report) -> list:
    """Hand videos to idle workers until every one is done or has failed."""
    from tqdm import tqdm

    records: list = []
    idle = list(range(len(batch.workers)))
    tries: dict[int, int] = {}
    while queue or batch.inflight:
        while queue and idle:
            job = queue.popleft()
            try:
                check_video_file(job.video)
                batch.submit(job, idle.pop(0), tries.get(job.position, 0))
            except (UserError, OSError) as err:
                records.append(report(job, out, failure_message(err), 0.0, tqdm.write))
        if not batch.inflight:
            continue
        ready, _ = ray.wait(list(batch.inflight), num_returns=1, timeout=POLL_S)
        batch.draw()
        for ref in ready:
            attempt = batch.inflight.pop(ref)
            job = attempt.job
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                tries[job.position] = attempt.tries + 1
                retry = _worker_lost(batch, attempt, err, tqdm.write)
                if retry:
                    queue.appendleft(job)
                else:
                    message = (
                        f"its worker stopped {attempt.tries + 1} times while tracking it "
                        f"({_first_line(err)})."
                    )
                    records.append(report(job, out, message, 0.0, tqdm.write))
                if attempt.slot < len(batch.workers) and batch.workers[attempt.slot]:
                    idle.append(attempt.slot)
                continue
            except ray.exceptions.RayError as err:
                result = {"error": failure_message(err), "seconds": 0.0}
            idle.append(attempt.slot)
            records.append(_finish(job, result, out, write_outputs, report, tqdm.write))
        if not any(batch.workers) and queue:
            raise UserError("Every worker was lost and none could be started again.")
    batch.draw()
    return records


def _worker_lost(batch: _Batch, attempt: _Attempt, err: BaseException, write) -> bool:
    """A worker died while tracking ``attempt``'s video: replace it; whether to retry."""
    retries = batch.options.retries
    retry = attempt.tries < retries
    if retry:
        then = f"trying again ({attempt.tries + 1} of {retries})."
    elif retries == 0:
        then = "it is not tried again (--retries is 0)."
    else:
        then = f"it is not tried again after {retries} {'retry' if retries == 1 else 'retries'}."
    write(
        f"note: {attempt.job.video}: its worker stopped ({_first_line(err)}); {then}",
        file=sys.stderr,
    )
    batch.ray.get(batch.board.restart.remote(attempt.job.position))
    try:
        batch.replace(attempt.slot)
    except UserError as lost:
        write(f"note: a worker could not be started again: {lost.message}", file=sys.stderr)
        batch.workers[attempt.slot] = None
    return retry


def _finish(job: Job, result: dict, out: Path, write_outputs, report, write):
    if "error" in result:
        return report(job, out, result["error"], result["seconds"], write)
    tracked: Tracked = result["tracked"]
    write_outputs(out / job.folder, result["files"])
    return report(job, out, tracked, result["seconds"], write)
