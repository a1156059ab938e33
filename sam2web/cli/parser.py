"""The command line's grammar: ``build_parser`` with its option groups, the checkers of
option values, the help epilogs, the exit statuses and the ``--ray`` address forms, and
:func:`usage` for a wrong command line."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from .. import __version__
from ..errors import MediaError
from ..media.ingest import MAX_FRAME_STEP, check_frame_step
from ..session.batch import DEFAULT_DIRECTION
from ..session.project import PROJECT_FILENAME
from ..session.user import SCIENCE_FILES
from ..tracking.checkpoints import MODELS
from ..tracking.tracker import DIRECTIONS
from .outputs import PAGE_FILES

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


def _frame_step(text: str) -> int:
    """A --frame-step value: a whole number from 1."""
    try:
        return check_frame_step(int(text))
    except (ValueError, MediaError) as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a frame step; give a whole number from 1 to {MAX_FRAME_STEP}"
        ) from err


def _frames(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of frames") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("give 0 to 1000 frames")
    return value


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
    track.add_argument(
        "--frame-step",
        type=_frame_step,
        metavar="N",
        help="track every N-th frame of each video (frames 0, N, 2N, ...); every output "
        "keeps the original frame numbers and times (default: the project's step)",
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


def usage(message: str) -> int:
    """Say what is wrong with the command line (``error: <message>`` on stderr); returns
    the exit status of a wrong command line."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE
