"""Command line: replay a saved project on videos (``track``) or start the web app (``serve``).

``track`` is for batches: make a project once in the web app (click the objects, track,
save the project), then run the same clicks and tracking runs on every video of an
experiment recorded with the same camera set-up (fitted to each video's length and frame
size by :mod:`sam2web.session.batch`). Each video gets its own output folder with everything the
page exports plus the analysis files, and ``batch_summary.csv`` lists them all. With
``--ray`` the videos are tracked on a Ray cluster (:mod:`sam2web.cli.cluster`) by the same
per-video step, :func:`track_video`.

Exit status: 0 when every video succeeded, 1 when any failed (each failure is one line
``error: <video>: <sentence>`` on stderr; the other videos still run), 2 for a wrong
command line or an unusable project file.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
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
from ..session.project import PROJECT_FILENAME, Project, load_project
from ..session.user import SCIENCE_FILES, UserSession
from ..settings import Settings
from ..tracking.checkpoints import MODELS, get_spec
from ..tracking.tracker import DIRECTIONS
from .cluster import INSTALL_HINT, ray_installed

log = logging.getLogger("sam2web.cli.main")

# Files the page's export writes (sam2web.session.user.UserSession.export).
PAGE_FILES = ("sam2web_overlay.mp4", "sam2web_tracks.csv", "sam2web_masks.zip")
OUTPUT_FILES = (*PAGE_FILES, *SCIENCE_FILES.values(), PROJECT_FILENAME)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

LOCAL_RAY = "local"  # --ray without an address: start a Ray on this machine
RAY_ADDRESS = re.compile(r"auto|(ray://)?[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")

TRACK_EPILOG = f"""\
example:
  python -m sam2web track day1/*.mp4 --project {PROJECT_FILENAME} --out results

  Replays the project (made and saved in the web app) on every video and writes
  results/1_<name>/, results/2_<name>/, ... each holding:
    {", ".join(PAGE_FILES)}
    {", ".join(list(SCIENCE_FILES.values())[:3])}
    {", ".join(list(SCIENCE_FILES.values())[3:])}
    {PROJECT_FILENAME} (the project as replayed on that video)

  and results/batch_summary.csv, one row per video (frames, size, status, seconds,
  frames each object is present).

  The prompts are replayed at the same frame numbers on every video long enough for
  them, and each recorded tracking run that reached the project video's end runs to
  each video's own end. A video whose frames are a scaled copy of the project's (same
  aspect ratio) gets its clicks and boxes scaled; another shape is refused. A project
  saved before any tracking run is tracked in --direction. The model, processing
  resolution and corrections mode default to the project's (SAM2WEB_* variables and the
  options below override them). Other settings come from SAM2WEB_* environment
  variables as for the web app, e.g. SAM2WEB_CHECKPOINT, SAM2WEB_OFFLINE.

  On a Ray cluster (pip install -r requirements-ray.txt):
  python -m sam2web track day1/*.mp4 --project P.json --out results --ray head:6379
  (--ray alone starts Ray on this machine; outputs are the same as without --ray)
"""

SERVE_EPILOG = """\
example:
  python -m sam2web serve --port 8080 --model sam2.1-small

  Other settings come from SAM2WEB_* environment variables (see the README).
"""


# ---------------------------------------------------------------------------- parser
def _resolution(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 64 or value % 32:
        raise argparse.ArgumentTypeError(
            f"{value} is not a multiple of 32 of at least 64 (use e.g. 512 or 1024)"
        )
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}")
    return value


def _frames(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of frames") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("give 0 to 1000 frames")
    return value


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


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1 to 65535)")
    return value


def _add_model_options(parser: argparse.ArgumentParser, defaults_from_project: bool) -> None:
    group = parser.add_argument_group("model")
    origin = "the project's model" if defaults_from_project else "SAM2WEB_MODEL, else sam2.1-tiny"
    group.add_argument(
        "--model",
        choices=list(MODELS),
        metavar="KEY",
        help=f"SAM2 model: {', '.join(MODELS)} (default: {origin})",
    )
    group.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="local checkpoint file (.pt) for the model; nothing is downloaded "
        "(default: SAM2WEB_CHECKPOINT, else the cache or a download)",
    )
    origin = "the project's" if defaults_from_project else "SAM2WEB_RESOLUTION, else 1024"
    group.add_argument(
        "--resolution",
        type=_resolution,
        metavar="N",
        help="processing resolution in pixels, a multiple of 32; 1024 is "
        f"SAM2's native size, smaller is faster (default: {origin})",
    )
    group.add_argument(
        "--fast",
        action="store_true",
        help="fast preview: process at SAM2WEB_FAST_RESOLUTION (default 448 px) instead of "
        "the full resolution; several times faster on a CPU, approximate",
    )
    group.add_argument(
        "--bf16",
        action="store_true",
        help="full resolution, faster: run the model in bfloat16 where the processor (or "
        "GPU) computes it natively (masks differ slightly from float32); refused elsewhere",
    )
    group.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        help="where the model runs (default: SAM2WEB_DEVICE, else auto: CUDA, "
        "then Apple MPS, then CPU)",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cluster", "Track the videos on a Ray cluster (pip install -r requirements-ray.txt)."
    )
    group.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="run on Ray: alone, start Ray on this machine; with the head's address "
        "(host:port, ray://host:port or auto), join that cluster",
    )
    group.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="tracker processes, each loading the model once (default: one per GPU, "
        "else one per --cpus-per-worker cores)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=_positive,
        metavar="G",
        help="GPUs each worker takes, may be a fraction (default: 1 on a cluster with "
        "GPUs, else 0)",
    )
    group.add_argument(
        "--cpus-per-worker",
        type=_positive,
        metavar="C",
        help="CPU cores each worker takes (default: 4, or all when fewer)",
    )
    group.add_argument(
        "--retries",
        type=_count,
        default=2,
        metavar="N",
        help="times a video is tried again when its worker dies (default: 2)",
    )


def _add_calibration_options(track: argparse.ArgumentParser) -> None:
    cal = track.add_argument_group("calibration", "Default: the calibration saved in the project.")
    cal.add_argument(
        "--pixels-per-unit",
        type=_positive,
        metavar="X",
        help="length scale: X pixels of the original frame make one unit; "
        "lengths, areas and speeds are then reported in that unit",
    )
    cal.add_argument(
        "--unit",
        metavar="UNIT",
        help="unit of --pixels-per-unit, e.g. mm or µm (default: the project's)",
    )


def _add_extra_options(track: argparse.ArgumentParser) -> None:
    extra = track.add_argument_group(
        "zones and label stacks",
        "A project with zones always gets the zone table, pair tables and heatmaps.",
    )
    extra.add_argument(
        "--behaviour",
        action="store_true",
        help="also without zones: pair distances, nearest neighbours, occupancy heatmaps",
    )
    extra.add_argument(
        "--pair-distance",
        type=_non_negative,
        metavar="D",
        help="pairs closer than D (calibrated unit, else pixels) count as together "
        "(default: the project's)",
    )
    extra.add_argument(
        "--label-stacks",
        action="store_true",
        help="write labels.tif (uint16 TIFF stack) and labels_ctc.zip (Cell Tracking Challenge)",
    )


def _add_correction_options(track: argparse.ArgumentParser) -> None:
    """The options about what is tracked: the stack choice of a microscopy TIFF and gap
    filling."""
    stack = track.add_argument_group(
        "microscopy TIFF", "Default: the channel and axis saved in the project."
    )
    stack.add_argument(
        "--channel",
        metavar="C",
        help="channel of a multi-channel TIFF to track: its number from 0, its name, or "
        "'composite' (all channels blended)",
    )
    stack.add_argument(
        "--axis",
        choices=("T", "Z"),
        help="axis of a TIFF volume whose positions become frames",
    )
    track.add_argument(
        "--fill-gaps",
        type=_frames,
        metavar="N",
        help="bridge absences of at most N frames in the per-frame CSVs by linear "
        "interpolation of the centroid, marked in an 'interpolated' column "
        "(0: off; default: the project's setting)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam2web",
        description="Click-to-track video segmentation with SAM2: replay a saved project on "
        "videos from the command line, or start the web app.",
        epilog="Run 'python -m sam2web track --help' or 'python -m sam2web serve --help' for "
        "the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"sam2web {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    track = commands.add_parser(
        "track",
        help="replay a saved project on one or more videos and export the results",
        description="Replay a project saved in the web app (its objects, clicks and tracking\n"
        "runs) on each video in turn and export the results: overlay video, masks,\n"
        "per-frame CSV, summary, calibrated CSV, plots, NPZ and COCO masks.",
        epilog=TRACK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    track.add_argument(
        "videos",
        nargs="+",
        type=Path,
        metavar="VIDEO",
        help="videos or image sequences (MP4, MOV, AVI, MKV, WEBM, GIF, zip of "
        "images, TIFF stack) from the project's camera set-up: long enough for its "
        "prompts, frames of the same aspect ratio",
    )
    track.add_argument(
        "--project",
        type=Path,
        required=True,
        metavar="P.json",
        help=f"project file saved by the web app ({PROJECT_FILENAME})",
    )
    track.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder; video number n gets DIR/<n>_<name>/ (created; "
        "files of an earlier run there are replaced)",
    )
    track.add_argument(
        "--no-video", action="store_true", help="skip the overlay MP4 (the slowest export)"
    )
    track.add_argument(
        "--fps",
        type=_positive,
        metavar="F",
        help="frame rate in frames per second for time stamps and speeds, "
        "instead of the file's own (image sequences default to 1); "
        "frames are never dropped or repeated",
    )
    track.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default=DEFAULT_DIRECTION,
        help="how to track a project saved before any tracking run, from its first "
        f"prompted frame (default: {DEFAULT_DIRECTION}); a recorded run is replayed as it was",
    )
    _add_correction_options(track)
    _add_ray_options(track)
    _add_calibration_options(track)
    _add_extra_options(track)
    _add_model_options(track, defaults_from_project=True)
    track.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress details and full tracebacks of unexpected failures",
    )

    serve = commands.add_parser(
        "serve",
        help="start the web app",
        description="Start the sam2web web app (the same app as 'python app.py').",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", metavar="H", help="address to listen on (default: SAM2WEB_HOST, else 0.0.0.0)"
    )
    serve.add_argument(
        "--port",
        type=_port,
        metavar="P",
        help="port to listen on (default: SAM2WEB_PORT, else 7860)",
    )
    _add_model_options(serve, defaults_from_project=False)
    return parser


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


# ---------------------------------------------------------------------------- track
def output_folder_name(position: int, video: Path, count: int) -> str:
    """``<n>_<stem>``: the 1-based position (zero-padded to the batch's width, so folders
    sort in order) and the file's stem reduced to letters, digits, ``-`` and ``_``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", video.stem).strip("_")[:60] or "video"
    return f"{position:0{len(str(count))}d}_{stem}"


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
) -> Tracked:
    """Replay ``project`` on one video and write every export into ``folder``: the one
    per-video step, the same here and on a cluster's workers.

    The project is fitted to the video first (:func:`sam2web.session.batch.fit_project`: its own
    length, prompts scaled to its size); a project without a tracking run is tracked in
    ``direction``. ``source_name`` is the name the results record (default: the file's);
    ``bar`` takes the progress (``phase(name, unit)`` and ``close(keep)``, default a tqdm
    bar labelled ``label``). ``stack_choice`` is the (channel, axis) a microscopy TIFF is
    read with (default: the project's); ``fill_gaps`` replaces the project's gap filling
    (None: keep it). Raises UserError subclasses with one sentence when the video
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
        )
        plan = fit_project(project, user.info, user.source_sha256, direction)
        notes = plan.notes + user.apply_project(
            plan.project, progress=bar.phase("track", unit="step"), strict_source=False
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
        return Tracked(notes, info.num_frames, info.width, info.height, present)
    finally:
        user.close()


def _track_unrecorded(user: UserSession, direction: str, progress) -> str:
    """Track a project that was saved before any tracking run; returns the note saying so."""
    assert user.tracking is not None
    prompted = user.tracking.prompted_frames()
    for step in user.propagate(direction):
        progress(step.done, step.total)
    return run_note(direction, min(prompted, default=0))


def write_outputs(folder: Path, files: dict[str, bytes]) -> None:
    """Write one video's output files (as a worker sent them back) into ``folder``,
    replacing the files of an earlier run as :func:`track_video` does."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT_FILES:
        (folder / old).unlink(missing_ok=True)
    for name, data in files.items():
        (folder / Path(name).name).write_bytes(data)


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
        return _usage(problem)
    try:
        project = load_project(args.project)
        if args.pixels_per_unit is not None and not (args.unit or project.calibration.calibrated):
            return _usage(
                "--pixels-per-unit needs --unit (e.g. --unit mm): the project has no unit."
            )
        calibration = _calibration(args, project.calibration)
        settings = make_settings(args, project)
    except UserError as err:
        return _usage(err.message)
    except ValueError as err:  # a SAM2WEB_* variable
        return _usage(f"{err}.")
    if not project.objects:
        return _usage(
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


# ---------------------------------------------------------------------------- serve
def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = make_settings(args)
    except ValueError as err:
        return _usage(f"{err}.")
    from ..ui import launch  # imports gradio

    launch(Engine(settings))
    return EXIT_OK


# ---------------------------------------------------------------------------- main
def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    verbose = getattr(args, "verbose", False) or args.command == "serve"
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "verbose", False):
        log.setLevel(logging.DEBUG)
    try:
        return run_track(args) if args.command == "track" else run_serve(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
