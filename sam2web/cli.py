"""Command line: replay a saved project on videos (``track``) or start the web app (``serve``).

``track`` is for batches: make a project once in the web app (click the objects, track,
save the project), then run the same clicks and tracking runs on every video of an
experiment recorded with the same camera set-up. Each video gets its own output folder with
everything the page exports plus the analysis files.

Exit status: 0 when every video succeeded, 1 when any failed (each failure is one line
``error: <video>: <sentence>`` on stderr; the other videos still run), 2 for a wrong
command line or an unusable project file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__
from .analysis import Calibration
from .engine import Engine
from .errors import UserError
from .model import MODELS, get_spec
from .project import PROJECT_FILENAME, Project, load_project
from .settings import Settings
from .user_session import SCIENCE_FILES, UserSession

log = logging.getLogger("sam2web.cli")

# Files the page's export writes (sam2web.user_session.UserSession.export).
PAGE_FILES = ("sam2web_overlay.mp4", "sam2web_tracks.csv", "sam2web_masks.zip")
OUTPUT_FILES = (*PAGE_FILES, *SCIENCE_FILES.values(), PROJECT_FILENAME)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TRACK_EPILOG = f"""\
example:
  python -m sam2web track day1/*.mp4 --project {PROJECT_FILENAME} --out results

  Replays the project (made and saved in the web app) on every video and writes
  results/1_<name>/, results/2_<name>/, ... each holding:
    {", ".join(PAGE_FILES)}
    {", ".join(list(SCIENCE_FILES.values())[:3])}
    {", ".join(list(SCIENCE_FILES.values())[3:])}
    {PROJECT_FILENAME} (the project as replayed on that video)

  Every video must have the project video's frame count and frame size; the clicks are
  replayed at the same frames and pixel positions, and so are mask prompts, identity
  fixes (swaps, merges) and gap filling. The model, processing resolution and
  corrections mode default to the project's (SAM2WEB_* variables and the options below
  override them). Other settings come from SAM2WEB_* environment variables as for the web
  app, e.g. SAM2WEB_CHECKPOINT, SAM2WEB_OFFLINE, SAM2WEB_DATA_DIR.
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
        "images, TIFF stack) with the project video's frame count and size",
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
    _add_correction_options(track)
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


@contextlib.contextmanager
def _sam2_progress_hidden() -> Iterator[None]:
    """sam2 draws a tqdm bar of its own for every propagation pass; the command line shows
    one bar per video instead, so sam2's bars are switched off while it runs."""
    try:
        import sam2.sam2_video_predictor as predictor_module
    except ImportError:  # pragma: no cover - sam2 is a dependency
        yield
        return
    original = predictor_module.tqdm
    predictor_module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        predictor_module.tqdm = original


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
    stack_choice: tuple[int | str | None, str | None] | None = None,
    fill_gaps: int | None = None,
) -> list[str]:
    """Replay ``project`` on one video and write every export into ``folder``.

    ``stack_choice`` is the (channel, axis) a microscopy TIFF is read with (default: the
    project's); ``fill_gaps`` replaces the project's gap filling (None: keep it).

    Returns notes (e.g. another model than the project's). Raises UserError subclasses
    with one sentence when the video cannot be used. The session's workspace is always
    removed."""
    if not video.is_file():
        raise UserError("The file does not exist; check the path.")
    user = UserSession(engine)
    bar = _Bar(label or video.name)
    try:
        channel, axis = stack_choice or (project.source.channel, project.source.axis)
        user.upload(
            video,
            source_name=video.name,
            fps=fps,
            progress=bar.phase("decode"),
            channel=channel,
            axis=axis,
        )
        notes = user.apply_project(
            project, progress=bar.phase("track", unit="step"), strict_source=False
        )
        if fill_gaps is not None:
            user.fill_gaps(fill_gaps)
        exports = user.export(video=video_out, progress=bar.phase("video") if video_out else None)
        science = user.export_science(calibration)
        project_file = user.save_project(calibration)
        folder.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_FILES:
            (folder / name).unlink(missing_ok=True)
        for path in [*exports.files(), *science.values(), project_file]:
            shutil.move(path, folder / path.name)
    except BaseException:
        bar.close(keep=False)  # the error line says what happened
        raise
    else:
        bar.close()
        return notes
    finally:
        user.close()


def run_track(args: argparse.Namespace) -> int:
    if args.unit is not None and args.pixels_per_unit is None:
        return _usage("--unit needs --pixels-per-unit (the number of pixels in one unit).")
    if args.checkpoint is not None and not args.checkpoint.expanduser().is_file():
        return _usage(
            f"The checkpoint {args.checkpoint} is not a file; give the path of a "
            "downloaded .pt checkpoint."
        )
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

    engine = Engine(settings)
    if args.bf16 and "full-bf16" not in [q.key for q in engine.qualities()]:
        return _usage(
            "--bf16 is not offered here: this processor does not run bfloat16 faster than "
            "float32; run without --bf16."
        )
    spec = get_spec(settings.model)
    print(f"Loading {spec.name} at {settings.resolution} px ...", file=sys.stderr)
    try:
        engine.predictor()
    except UserError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return EXIT_FAILED

    out = args.out.expanduser()
    count = len(args.videos)
    failed = 0
    with _sam2_progress_hidden():
        for n, video in enumerate(args.videos, start=1):
            folder = out / output_folder_name(n, video, count)
            try:
                notes = track_video(
                    engine,
                    video,
                    project,
                    calibration,
                    folder,
                    video_out=not args.no_video,
                    fps=args.fps,
                    label=f"[{n}/{count}] {video.name}",
                    stack_choice=_stack_choice(args),
                    fill_gaps=args.fill_gaps,
                )
            except UserError as err:
                failed += 1
                print(f"error: {video}: {err.message}", file=sys.stderr)
                continue
            except Exception as err:  # a bug or a library failure: one line, detail in the log
                failed += 1
                log.debug("tracking %s failed", video, exc_info=True)
                print(
                    f"error: {video}: unexpected failure ({type(err).__name__}: {err}); "
                    "run again with --verbose for details.",
                    file=sys.stderr,
                )
                continue
            for note in notes:
                print(f"note: {video}: {note}", file=sys.stderr)
            print(f"{video} -> {folder}")
    print(
        f"{count - failed} of {count} video{'s' if count != 1 else ''} tracked; results in {out}",
        file=sys.stderr,
    )
    return EXIT_FAILED if failed else EXIT_OK


# ---------------------------------------------------------------------------- serve
def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = make_settings(args)
    except ValueError as err:
        return _usage(f"{err}.")
    from .ui import launch  # imports gradio

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
