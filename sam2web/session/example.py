"""The example clip as a file: drawn once (:mod:`sam2web.media.example`) and written with the
page's own MP4 writer into the engine's data folder, where every session opens it as if it
had been uploaded. The folder ``example`` is no session's (session folders are 32 hex
digits), so the housekeeping never removes it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..media import example
from ..outputs.video import Mp4Writer
from .engine import Engine

# The file's name carries the clip's version: a change to the drawing writes a new file.
FILE_NAME = "sam2web_example_v1.mp4"
SOURCE_NAME = "sam2web_example.mp4"  # the name the page shows
_write_lock = threading.Lock()


def example_video(engine: Engine) -> Path:
    """The example clip's MP4 in ``engine``'s data folder, written on first use."""
    path = engine.data_dir / "example" / FILE_NAME
    with _write_lock:
        if not path.is_file():
            # The writer encodes into a temporary file and renames it onto ``path`` only
            # once encoding succeeded, so a reader never sees half a file.
            with Mp4Writer(path, example.WIDTH, example.HEIGHT, example.FPS) as writer:
                for frame in example.example_frames():
                    writer.write(frame)
    return path
