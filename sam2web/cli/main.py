"""Command line: replay a saved project on videos (``track``) or start the web app (``serve``).

``track`` is for batches: make a project once in the web app (click the objects, track,
save the project), then run the same clicks and tracking runs on every video of an
experiment recorded with the same camera set-up (fitted to each video's length and frame
size by :mod:`sam2web.session.batch`). Each video gets its own output folder with everything the
page exports plus the analysis files, and ``batch_summary.csv`` lists them all. With
``--ray`` the videos are tracked on a Ray cluster (:mod:`sam2web.cli.cluster`) by the same
per-video step, :func:`sam2web.cli.track.track_video`.

Exit status: 0 when every video succeeded, 1 when any failed (each failure is one line
``error: <video>: <sentence>`` on stderr; the other videos still run), 2 for a wrong
command line or an unusable project file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..session.engine import Engine
from .parser import EXIT_OK, EXIT_USAGE, build_parser, usage
from .track import log as track_log
from .track import make_settings, run_track


# ---------------------------------------------------------------------------- serve
def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = make_settings(args)
    except ValueError as err:
        return usage(f"{err}.")
    from ..ui import launch  # imports gradio

    launch(Engine(settings))
    return EXIT_OK


# ---------------------------------------------------------------------------- main
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
        track_log.setLevel(logging.DEBUG)
    try:
        return run_track(args) if args.command == "track" else run_serve(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
