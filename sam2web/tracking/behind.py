"""Frames of a mask store written behind: their new content waits in memory while a thread
of the store puts it into their files, oldest first.

:class:`WriteBehind` is the store's half that waits: what each waiting frame holds, the
bound on how far the writer may fall behind, the writer thread and what it failed to do.
The store (:class:`sam2web.tracking.maskstore.MaskStore`) owns both locks and the file
format; this class is given them. Lock order: the store's I/O lock (held around every
change of a frame's file), then its index lock; the writer holds the I/O lock while it
writes one file and the index lock only to pick the file and to forget it once written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

MAX_PENDING_FRAMES = 8  # frames written behind that may wait for their file at once
MAX_PENDING_BYTES = 64 << 20  # ... and their packed masks' bytes (one frame may exceed it)
LINGER_S = 0.5  # an idle writer thread waits this long for the next frame, then ends

# (frame, packed masks by object, scores by object): writes one frame's file.
SaveFile = Callable[[int, dict[int, np.ndarray], dict[int, float]], None]


class Waiting(NamedTuple):
    """A frame's content written behind, not yet in its file."""

    version: int  # this store's count of writes behind when it was written
    packed: dict[int, np.ndarray]
    scores: dict[int, float]
    nbytes: int


class WriteBehind:
    """The frames of one store that wait for their files, and the thread writing them.

    Methods marked "(index lock held)" are called with the store's index lock held, and
    "(both locks held)" with its I/O lock and then its index lock."""

    def __init__(
        self, save: SaveFile, io_lock: threading.RLock, lock: threading.RLock, name: str
    ) -> None:
        self._save = save
        self._io_lock = io_lock
        self._lock = lock
        self._changed = threading.Condition(lock)
        self._name = name
        self._waiting: dict[int, Waiting] = {}  # oldest first: the writer's order
        self._bytes = 0
        self._version = 0
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self.closed = False  # after close(): every write goes straight to its file

    def get(self, frame_idx: int) -> Waiting | None:
        """What the frame holds while it waits for its file; None when its file holds it."""
        with self._lock:
            return self._waiting.get(frame_idx)

    def wait_for_room(self) -> None:
        """Wait while the writer is too far behind (index lock held; the wait lets go of
        it, so the caller reads the frame only afterwards); raises what it failed to write."""
        while True:
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            if not self._waiting or (
                len(self._waiting) < MAX_PENDING_FRAMES and self._bytes < MAX_PENDING_BYTES
            ):
                return
            if self._writer is None or not self._writer.is_alive():
                return  # nobody writes them (a forked process): the next put starts one
            self._changed.wait(1.0)

    def put(self, frame_idx: int, packed: dict[int, np.ndarray], scores: dict[int, float]):
        """The frame's new content, to be written behind (index lock held, after
        :meth:`wait_for_room`)."""
        self.forget(frame_idx)
        self._version += 1
        nbytes = sum(bits.nbytes for bits in packed.values())
        self._waiting[frame_idx] = Waiting(self._version, packed, scores, nbytes)
        self._bytes += nbytes
        if self._writer is None or not self._writer.is_alive():  # none yet, or forked
            self._writer = threading.Thread(
                target=self._write_behind, name=f"mask-writer {self._name}", daemon=True
            )
            self._writer.start()
        self._changed.notify_all()

    def forget(self, frame_idx: int) -> None:
        """The frame no longer waits: its file was written with this content or a newer
        one (index lock held)."""
        entry = self._waiting.pop(frame_idx, None)
        if entry is not None:
            self._bytes -= entry.nbytes
            self._changed.notify_all()

    def discard(self) -> None:
        """Forget every waiting frame unwritten, and what failed (both locks held)."""
        self._waiting.clear()
        self._bytes = 0
        self._error = None
        self._changed.notify_all()

    def drain(self) -> None:
        """Write every waiting frame in this thread, oldest first (both locks held)."""
        for frame_idx, entry in list(self._waiting.items()):
            self._save(frame_idx, entry.packed, entry.scores)
            self.forget(frame_idx)
        self._error = None  # whatever failed before is on disk now

    def close(self) -> None:
        """Drain, and take no more (both locks held): the writer thread then ends without
        touching a file."""
        self.closed = True
        self._changed.notify_all()
        self.drain()

    def _write_behind(self) -> None:
        """The writer thread: waiting frames into their files, oldest first; ends when
        none came for a moment, or after a failure (the next write or flush raises it)."""
        while True:
            with self._lock:
                if not self._waiting and not self.closed:
                    self._changed.wait(LINGER_S)
                if not self._waiting or self._error is not None:
                    if self._writer is threading.current_thread():
                        self._writer = None
                    return
            with self._io_lock:
                with self._lock:
                    if not self._waiting:
                        continue
                    frame_idx, entry = next(iter(self._waiting.items()))
                try:
                    self._save(frame_idx, entry.packed, entry.scores)
                except BaseException as err:
                    log.warning("mask file of frame %d not written: %r", frame_idx, err)
                    with self._lock:
                        self._error = err
                        self._changed.notify_all()
                    continue
                with self._lock:
                    if self._waiting.get(frame_idx) is entry:  # not written again meanwhile
                        self.forget(frame_idx)
