"""The files a ``track`` run writes: the names of one video's outputs, the name of its
folder, and :func:`write_outputs` for the files a cluster worker sends back."""

from __future__ import annotations

import re
from pathlib import Path

from ..session.project import PROJECT_FILENAME
from ..session.user import SCIENCE_FILES

# Files the page's export writes (sam2web.session.user.UserSession.export).
PAGE_FILES = ("sam2web_overlay.mp4", "sam2web_tracks.csv", "sam2web_masks.zip")
OUTPUT_FILES = (*PAGE_FILES, *SCIENCE_FILES.values(), PROJECT_FILENAME)


def output_folder_name(position: int, video: Path, count: int) -> str:
    """``<n>_<stem>``: the 1-based position (zero-padded to the batch's width, so folders
    sort in order) and the file's stem reduced to letters, digits, ``-`` and ``_``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", video.stem).strip("_")[:60] or "video"
    return f"{position:0{len(str(count))}d}_{stem}"


def write_outputs(folder: Path, files: dict[str, bytes]) -> None:
    """Write one video's output files (as a worker sent them back) into ``folder``,
    replacing the files of an earlier run as :func:`sam2web.cli.track.track_video`
    does."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT_FILES:
        (folder / old).unlink(missing_ok=True)
    for name, data in files.items():
        (folder / Path(name).name).write_bytes(data)
