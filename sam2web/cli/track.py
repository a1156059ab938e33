"""The ``track`` command: the settings and calibration from the command line, the
per-video step :func:`track_video` (module level, so that a Ray worker imports it by this
path), the batch here or on Ray (:mod:`sam2web.cli.cluster`), each video's report lines
and summary row, and the progress bar."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from ..analysis.calibrate import calibration_from_video
from ..analysis.tables import Calibration, summarize
from ..errors import UserError
from ..session.batch import (
    DEFAULT_DIRECTION,
    SUMMARY_FILENAME,
    Job,
    Tracked,
    VideoRecord,
    check_video_file,
    failure_message,
    fit_project,
    run_note,
    sam2_progress_hidden,
    write_summary,
)
from ..session.behaviour import ExtraOutputs
from ..session.engine import Engine
from ..session.finding import refit_found
from ..session.project import Project
from ..session.projectload import load_project
from ..session.user import UserSession
from ..settings import Settings
from ..tracking.checkpoints import get_spec
from .cluster import INSTALL_HINT, ray_installed
from .outputs import OUTPUT_FILES, output_folder_name, write_outputs
from .parser import EXIT_FAILED, EXIT_OK, LOCAL_RAY, RAY_ADDRESS, usage

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- settings
def _env_set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def make_settings(args: argparse.Namespace, project: Project | None = None) -> Settings:
    """Settings from the environment with the command line's overrides; with a project,
    the model, resolution and corrections mode default to the project's unless an option or
    a SAM2WEB_* variable sets them. Raises ValueError for a bad variable."""
    settings = Settings.from_env()
    changes: dict = {}
    if project is not None:
        if not _env_set("SAM2WEB_MODEL"):
            changes["model"] = project.model.key
        if not _env_set("SAM2WEB_RESOLUTION"):
            changes["resolution"] = project.model.resolution
        if not _env_set("SAM2WEB_CORRECTIONS"):
            changes["corrections"] = project.model.corrections
    if args.model:
        changes["model"] = get_spec(args.model).key
    if args.checkpoint is not None:
        changes["checkpoint"] = args.checkpoint.expanduser()
    if args.resolution is not None:
        changes["resolution"] = args.resolution
    if args.fast:
        if args.resolution is not None:
            raise ValueError("use either --fast or --resolution, not both")
        changes["resolution"] = settings.fast_resolution
    if args.device is not None:
        changes["device"] = args.device
    if args.bf16:
        if args.fast:
            raise ValueError("use either --fast or --bf16, not both")
        changes["bf16"] = "1"
    if getattr(args, "host", None):
        changes["host"] = args.host
    if getattr(args, "port", None) is not None:
        changes["port"] = args.port
    return dataclasses.replace(settings, **changes)


def _calibration(args: argparse.Namespace, saved: Calibration) -> Calibration:
    """The project's calibration with the command line's overrides (PromptError if bad)."""
    cal = saved
    if args.pixels_per_unit is not None:
        unit = args.unit or (saved.unit if saved.calibrated else "px")
        cal = dataclasses.replace(cal, pixels_per_unit=args.pixels_per_unit, unit=unit)
    if args.fps is not None:
        cal = dataclasses.replace(cal, fps=args.fps)
    return cal


def _channel(text: str | None) -> int | str | None:
    """A --channel value: a number is a channel index, anything else a name."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def _stack_choice(args: argparse.Namespace) -> tuple[int | str | None, str | None] | None:
    """--channel and --axis as ingest takes them; None when neither is given."""
    if args.channel is None and args.axis is None:
        return None
    return _channel(args.channel), args.axis


# ---------------------------------------------------------------------------- track
class _Bar:
    """One tqdm bar per video, reused across its phases (decode, track, video)."""

    def __init__(self, label: str):
        from tqdm import tqdm

        self.bar = tqdm(desc=label, unit="frame", dynamic_ncols=True, leave=True)

    def phase(self, name: str, unit: str = "frame"):
        """A ``progress(done, total)`` callback for the next phase; restarts the bar."""
        self.bar.unit = unit
        self.bar.set_postfix_str(name, refresh=False)
        self.bar.total = None  # reset(total=None) would keep the previous phase's total
        self.bar.reset()

        def update(done: int, total: int | None) -> None:
            if total is not None and self.bar.total != total:
                self.bar.total = total
            if done > self.bar.n:
                self.bar.update(done - self.bar.n)

        return update

    def close(self, keep: bool = True) -> None:
        self.bar.leave = keep
        self.bar.close()


def track_video(
    engine: Engine,
    video: Path,
    project: Project,
    calibration: Calibration,
    folder: Path,
    *,
    video_out: bool = True,
    fps: float | None = None,
    label: str | None = None,
    direction: str = DEFAULT_DIRECTION,
    source_name: str | None = None,
    bar=None,
    extras: ExtraOutputs | None = None,
    stack_choice: tuple[int | str | None, str | None] | None = None,
    fill_gaps: int | None = None,
    frame_step: int | None = None,
) -> Tracked:
    """Replay ``project`` on one video and write every export into ``folder``: the one
    per-video step, the same here and on a cluster's workers.

    The project is fitted to the video first (:func:`sam2web.session.batch.fit_project`: its own
    length, prompts scaled to its size); a project without a tracking run is tracked in
    ``direction``. ``source_name`` is the name the results record (default: the file's);
    ``bar`` takes the progress (``phase(name, unit)`` and ``close(keep)``, default a tqdm
    bar labelled ``label``). ``stack_choice`` is the (channel, axis) a microscopy TIFF is
    read with (default: the project's); ``fill_gaps`` replaces the project's gap filling
    (None: keep it); ``frame_step`` reads every N-th frame (None: the project's step).
    Raises UserError subclasses with one sentence when the video
    cannot be used. The session's workspace is always removed."""
    check_video_file(video)
    name = source_name or video.name
    user = UserSession(engine)
    bar = bar or _Bar(label or name)
    try:
        channel, axis = stack_choice or (project.source.channel, project.source.axis)
        user.upload(
            video,
            source_name=name,
            fps=fps,
            progress=bar.phase("decode"),
            channel=channel,
            axis=axis,
            frame_step=project.source.frame_step if frame_step is None else frame_step,
        )
        plan = fit_project(project, user.info, user.source_sha256, direction)
        src, info = project.source, user.info
        area_scale = (info.width * info.height) / (src.width * src.height)
        fitted, found = refit_found(plan.project, user.frame_rgb, info, area_scale)
        notes = plan.notes + user.apply_project(
            fitted, progress=bar.phase("track", unit="step"), strict_source=False
        )
        if plan.direction is not None:
            notes.append(_track_unrecorded(user, plan.direction, bar.phase("run")))
        if fill_gaps is not None:
            user.fill_gaps(fill_gaps)
        if not calibration.calibrated:  # the scale the file states, if any
            calibration = calibration_from_video(user.info, fps=calibration.fps)
        exports = user.export(video=video_out, progress=bar.phase("video") if video_out else None)
        science = user.export_science(calibration)
        extra_files = user.export_extras(extras or ExtraOutputs(), calibration)
        project_file = user.save_project(calibration)
        present = {
            s.object_id: s.frames_present
            for s in summarize(user.results.rows, user.objects, calibration)
        }
        folder.mkdir(parents=True, exist_ok=True)
        for old in OUTPUT_FILES:
            (folder / old).unlink(missing_ok=True)
        for path in [*exports.files(), *science.values(), *extra_files, project_file]:
            shutil.move(path, folder / path.name)
    except BaseException:
        bar.close(keep=False)  # the error line says what happened
        raise
    else:
        bar.close()
        info = user.info
        return Tracked(notes, info.num_frames, info.width, info.height, present, found)
    finally:
        user.close()


def _track_unrecorded(user: UserSession, direction: str, progress) -> str:
    """Track a project that was saved before any tracking run; returns the note saying so."""
    assert user.tracking is not None
    prompted = user.tracking.prompted_frames()
    for step in user.propagate(direction):
        progress(step.done, step.total)
    return run_note(direction, min(prompted, default=0))


def _check_track_args(args: argparse.Namespace) -> str | None:
    """The usage error in the track options, if any."""
    if args.unit is not None and args.pixels_per_unit is None:
        return "--unit needs --pixels-per-unit (the number of pixels in one unit)."
    if args.checkpoint is not None and not args.checkpoint.expanduser().is_file():
        return (
            f"The checkpoint {args.checkpoint} is not a file; give the path of a "
            "downloaded .pt checkpoint."
        )
    if args.ray is not None and not ray_installed():
        return INSTALL_HINT
    if args.ray is None and (args.workers or args.gpus_per_worker or args.cpus_per_worker):
        return "--workers, --gpus-per-worker and --cpus-per-worker need --ray."
    if args.ray not in (None, LOCAL_RAY) and not RAY_ADDRESS.fullmatch(args.ray):
        return (
            f"--ray {args.ray!r} is not a cluster address; give host:port, ray://host:port "
            "or auto, or put --ray after the videos to start a local Ray."
        )
    return None


def run_track(args: argparse.Namespace) -> int:
    problem = _check_track_args(args)
    if problem:
        return usage(problem)
    try:
        project = load_project(args.project)
        if args.pixels_per_unit is not None and not (args.unit or project.calibration.calibrated):
            return usage(
                "--pixels-per-unit needs --unit (e.g. --unit mm): the project has no unit."
            )
        calibration = _calibration(args, project.calibration)
        settings = make_settings(args, project)
    except UserError as err:
        return usage(err.message)
    except ValueError as err:  # a SAM2WEB_* variable
        return usage(f"{err}.")
    if not project.objects:
        return usage(
            f"The project {args.project.name} has no objects; add and track objects "
            "in the web app, then save the project again."
        )
    out = args.out.expanduser()
    count = len(args.videos)
    jobs = [
        Job(n, video, output_folder_name(n, video, count), f"[{n}/{count}] {video.name}")
        for n, video in enumerate(args.videos, start=1)
    ]
    options = dict(
        project=project,
        calibration=calibration,
        video_out=not args.no_video,
        fps=args.fps,
        direction=args.direction,
        extras=ExtraOutputs(args.behaviour, args.label_stacks, args.pair_distance),
        stack_choice=_stack_choice(args),
        fill_gaps=args.fill_gaps,
        frame_step=args.frame_step,
    )
    if args.ray is not None:
        records = _track_on_ray(args, settings, jobs, out, options)
    else:
        records = _track_here(args, settings, jobs, out, options)
    if records is None:
        return EXIT_FAILED
    write_summary(out / SUMMARY_FILENAME, records, project.objects)
    failed = sum(r.status != "tracked" for r in records)
    print(
        f"{count - failed} of {count} video{'s' if count != 1 else ''} tracked; results in {out}",
        file=sys.stderr,
    )
    return EXIT_FAILED if failed else EXIT_OK


def _track_here(args, settings, jobs: list[Job], out: Path, options: dict) -> list | None:
    """The batch in this process, one video after another."""
    engine = Engine(settings)
    if args.bf16 and "full-bf16" not in [q.key for q in engine.qualities()]:
        print(
            "error: --bf16 is not offered here: this processor does not run bfloat16 faster "
            "than float32; run without --bf16.",
            file=sys.stderr,
        )
        return None
    spec = get_spec(settings.model)
    print(f"Loading {spec.name} at {settings.resolution} px ...", file=sys.stderr)
    try:
        engine.predictor()
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return None
    records = []
    with sam2_progress_hidden():
        for job in jobs:
            started = time.perf_counter()
            try:
                tracked = track_video(
                    engine, job.video, folder=out / job.folder, label=job.label, **options
                )
            except Exception as err:  # one line each; the other videos still run
                log.debug("tracking %s failed", job.video, exc_info=True)
                tracked = failure_message(err)
            records.append(report(job, out, tracked, time.perf_counter() - started))
    return records


def report(job: Job, out: Path, outcome: Tracked | str, seconds: float, write=print) -> VideoRecord:
    """Print one video's lines (its notes and where its results are, or its error) and
    return its summary row; ``outcome`` is what tracking gave or the failure's sentence."""
    if isinstance(outcome, str):
        write(f"error: {job.video}: {outcome}", file=sys.stderr)
        return VideoRecord(job.position, str(job.video), job.folder, "failed", seconds, outcome)
    for note in outcome.notes:
        write(f"note: {job.video}: {note}", file=sys.stderr)
    write(f"{job.video} -> {out / job.folder}")
    return VideoRecord(
        job.position,
        str(job.video),
        job.folder,
        "tracked",
        seconds,
        " ".join(outcome.notes),
        outcome.frames,
        outcome.width,
        outcome.height,
        outcome.present,
        outcome.found,
    )


def _track_on_ray(args, settings, jobs: list[Job], out: Path, options: dict) -> list | None:
    """The batch on a Ray cluster (sam2web.cli.cluster); the files come back here."""
    from .cluster import RayOptions, track_on_ray  # imports Ray only when it runs

    ray_options = RayOptions(
        address=None if args.ray == LOCAL_RAY else args.ray,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        retries=args.retries,
        verbose=args.verbose,
    )
    try:
        return track_on_ray(
            jobs, settings, ray_options, track_video, options, out, write_outputs, report
        )
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return None
