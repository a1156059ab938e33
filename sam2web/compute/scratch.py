"""Scratch folders of cluster workers: each worker process has one, and none is left behind.

A worker removes its folder when it ends normally; a worker that is killed (by Ray, by a
signal, by its node running out of memory) cannot, so each new worker first removes the
folders of workers whose process no longer runs. A folder's name carries its process id.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "sam2web-worker-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(parent: Path | None = None) -> list[Path]:
    """Remove the scratch folders of worker processes that no longer run; returns them."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for folder in parent.glob(f"{PREFIX}*"):
            pid = folder.name[len(PREFIX) :].split("-", 1)[0]
            if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    if removed:
        log.info("removed %d scratch folder(s) of workers that had stopped", len(removed))
    return removed


def make_scratch() -> Path:
    """A new scratch folder for this worker process, removed when the process exits; the
    folders of stopped workers are removed first."""
    remove_leftovers()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder
