"""Atomic file output: write under a temporary name, then rename onto the target.

A reader never sees a half-written file: the data goes to a hidden temporary file in the
target's own folder (``.<name>.<random>.tmp``, so the final :func:`os.replace` stays on one
file system and is atomic), and only a complete file is renamed onto ``path``. If writing
fails, the temporary file is removed and ``path`` is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write to; replace ``path`` with it on exit.

    Creates ``path``'s folder if needed. The temporary file exists (empty) when yielded and
    may be opened in any mode. On a clean exit it is renamed onto ``path`` with
    :func:`os.replace`; on any exception (including KeyboardInterrupt) it is removed and
    the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); return ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_zip_atomic(
    path: Path,
    fill: Callable[[zipfile.ZipFile], None],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write a zip archive to ``path`` atomically; return ``path``.

    ``fill`` receives the open :class:`zipfile.ZipFile` (mode ``"w"``, default
    ``compression`` for its entries) and adds the members; the archive is closed before
    it replaces ``path``.
    """
    path = Path(path)
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", compression=compression) as zf:
        fill(zf)
    return path
