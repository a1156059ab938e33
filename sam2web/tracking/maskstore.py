"""Per-session storage of tracking results on disk.

One compressed ``.npz`` file per frame (``f000123.npz``) holds, for every object with a
result on that frame, its boolean mask (bit-packed with :func:`numpy.packbits`) and SAM2's
object score logit: arrays ``ids`` (N,), ``scores`` (N,) and ``bits`` (N, ceil(H*W/8)).
A 1080p mask packs to 259 KB and compresses to a few KB, so a long video's results stay off
the heap.

Files are replaced atomically (temporary file + :func:`os.replace`), so a reader that opens a
frame while the tracking thread rewrites it sees the old or the new file, never half of one.
Writes are serialised by a per-store lock; reads take the lock only to look at the frame
index, never while decoding a file.

A propagation writes its frames *behind* (``write(..., behind=True)``): the frame's new
content waits in memory while the store's writer thread compresses it into its file
(:mod:`sam2web.tracking.behind`), so the model's thread goes on to the next frame. Every read
of this store answers that content at once; :meth:`MaskStore.on_disk` tells when the file
holds it, and another process sees it only then. A drop or an object's removal edits the
waiting content as it would a file, a clear forgets it, and :meth:`MaskStore.flush` (also
run by :meth:`~MaskStore.refresh` and :meth:`~MaskStore.close`) writes every waiting frame
before it returns. A file the writer could not write (a full disk) is raised by the next
write behind or flush, and its content stays readable until a flush writes it.

:class:`MaskReader` is the reading half of the store's interface: what every reader of
masks (the measurements, the mask files, the label stacks, zone membership by overlap, the
overlay) needs, so that each takes a store or a view of one, such as
:class:`sam2web.analysis.identity.FixedStore` (the masks with the identity fixes applied).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..types import FrameResult
from .behind import WriteBehind

_FRAME_FILE = re.compile(r"^f(\d{6,})\.npz$")


def label_image(
    result: FrameResult | None,
    height: int,
    width: int,
    order: list[int] | None = None,
    present_only: bool = False,
) -> np.ndarray:
    """uint16 (H, W) image of one frame's result: pixel value = object id, 0 = background.

    Objects are drawn in ``order`` (default: ascending ids), so where masks overlap the later
    one wins; ids without a mask are skipped, and with ``present_only`` so are objects whose
    score says absent (<= 0). None gives an all-zero image."""
    labels = np.zeros((height, width), dtype=np.uint16)
    if result is None:
        return labels
    for obj_id in sorted(result.masks) if order is None else order:
        mask = result.masks.get(obj_id)
        if mask is None or (present_only and result.scores.get(obj_id, np.nan) <= 0.0):
            continue
        if not 0 < obj_id < 65536:
            raise ValueError(f"object id {obj_id} does not fit a 16-bit label image")
        labels[mask] = obj_id
    return labels


@runtime_checkable
class MaskReader(Protocol):
    """What reading masks needs: a :class:`MaskStore`, or a view of one with the identity
    fixes applied (:class:`sam2web.analysis.identity.FixedStore`)."""

    height: int
    width: int

    def frames(self) -> list[int]: ...

    def read(self, frame_idx: int) -> FrameResult | None: ...

    def mask(self, frame_idx: int, obj_id: int) -> np.ndarray | None: ...

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[FrameResult]: ...


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


class MaskStore:
    """Masks and scores of every object on every tracked frame, kept in ``root``.

    Masks are boolean arrays of shape (height, width), indexed [row, col]. Object ids are
    positive ints; a score is SAM2's object score logit (> 0: the object is present), NaN
    when unknown.
    """

    def __init__(self, root: Path, height: int, width: int):
        if height <= 0 or width <= 0:
            raise ValueError(f"mask size must be positive, got {height}x{width}")
        self.root = Path(root)
        self.height = int(height)
        self.width = int(width)
        self.root.mkdir(parents=True, exist_ok=True)
        # Lock order: _io_lock (held around every change of a frame's file), then _lock
        # (the index and the frames written behind; never held while compressing behind).
        self._io_lock = threading.RLock()
        self._lock = threading.RLock()
        self._behind = WriteBehind(self._save_file, self._io_lock, self._lock, self.root.name)
        self._frames = _frame_index(self.root)

    def refresh(self) -> None:
        """Re-read the frame index from the folder (after another process wrote to it);
        frames written behind are put into their files first."""
        with self._io_lock, self._lock:
            self._behind.drain()
            self._frames = _frame_index(self.root)

    # ------------------------------------------------------------------ files
    def _path(self, frame_idx: int) -> Path:
        return self.root / f"f{int(frame_idx):06d}.npz"

    def _load_packed(
        self, frame_idx: int, replaced: frozenset[int] | set[int] = frozenset()
    ) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """Packed masks and scores of one frame ({} when the frame has no file). When every
        stored object is among ``replaced`` (a write about to replace them all), the masks
        are not read: only the scores."""
        entry = self._behind.get(frame_idx)
        if entry is not None:
            return dict(entry.packed), dict(entry.scores)
        try:
            with np.load(self._path(frame_idx), allow_pickle=False) as data:
                ids = [int(i) for i in data["ids"]]
                scores = {i: float(s) for i, s in zip(ids, data["scores"], strict=True)}
                if set(ids) <= set(replaced):
                    return {}, scores
                bits = self._check_bits(data["bits"], frame_idx)
        except FileNotFoundError:
            return {}, {}
        return dict(zip(ids, bits, strict=True)), scores

    def _check_bits(self, bits: np.ndarray, frame_idx: int) -> np.ndarray:
        return _checked_bits(bits, frame_idx, self.height, self.width)

    def _save_packed(
        self, frame_idx: int, packed: dict[int, np.ndarray], scores: dict[int, float]
    ) -> None:
        """Atomically replace the frame's file (or remove it when nothing is left), and the
        index with it; the caller holds both locks."""
        self._save_file(frame_idx, packed, scores)
        self._behind.forget(frame_idx)
        if packed:
            self._frames.add(frame_idx)
        else:
            self._frames.discard(frame_idx)

    def _save_file(
        self, frame_idx: int, packed: dict[int, np.ndarray], scores: dict[int, float]
    ) -> None:
        _replace_file(self._path(frame_idx), packed, scores)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        n = self.height * self.width
        return np.unpackbits(packed, count=n).view(bool).reshape(self.height, self.width)

    # ------------------------------------------------------------------ writing
    def write(
        self,
        frame_idx: int,
        masks: dict[int, np.ndarray],
        scores: dict[int, float],
        *,
        behind: bool = False,
    ) -> FrameResult | None:
        """Store masks and scores of some objects on one frame; returns the frame's result
        as :meth:`read` would now give it (None when ``masks`` is empty), with the given
        masks as boolean arrays (not copied when they already are), so that a writer needs
        no read-back.

        Entries of the objects in ``masks`` replace their earlier ones on this frame; other
        objects' entries on the frame are kept. ``scores`` must have a value for each object
        in ``masks``. With ``behind`` the file is written by the store's writer thread (see
        the module's text); every read answers the new content at once either way.
        """
        frame_idx = self._check_frame(frame_idx)
        new_packed: dict[int, np.ndarray] = {}
        new_scores: dict[int, float] = {}
        new_masks: dict[int, np.ndarray] = {}
        for obj_id, mask in masks.items():
            obj_id = int(obj_id)
            if obj_id <= 0:
                raise ValueError(f"object ids must be positive, got {obj_id}")
            mask = np.asarray(mask)
            if mask.shape != (self.height, self.width):
                raise ValueError(
                    f"mask of object {obj_id} has shape {mask.shape}; this store holds "
                    f"{self.height}x{self.width} masks"
                )
            if obj_id not in scores:
                raise ValueError(f"no score given for object {obj_id}")
            new_masks[obj_id] = np.asarray(mask, dtype=bool)
            new_packed[obj_id] = _pack(new_masks[obj_id])
            new_scores[obj_id] = float(scores[obj_id])
        if not new_packed:
            return None
        if behind and not self._behind.closed:
            with self._lock:
                self._behind.wait_for_room()
                kept, packed, old_scores = self._merged(frame_idx, new_packed, new_scores)
                self._behind.put(frame_idx, packed, old_scores)
                self._frames.add(frame_idx)
        else:
            with self._io_lock, self._lock:
                kept, packed, old_scores = self._merged(frame_idx, new_packed, new_scores)
                self._save_packed(frame_idx, packed, old_scores)
        masks_now = {obj_id: self._unpack(bits) for obj_id, bits in kept.items()}
        masks_now.update(new_masks)
        ids = sorted(masks_now)  # in the order read() gives them
        return FrameResult(
            frame_idx, {i: masks_now[i] for i in ids}, {i: old_scores[i] for i in ids}
        )

    def _merged(
        self, frame_idx: int, new_packed: dict[int, np.ndarray], new_scores: dict[int, float]
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, float]]:
        """(the other objects' entries kept, the frame's new packed masks, its new scores).
        Only the entries of other objects are kept: when the frame holds none, its file is
        replaced without decoding the masks it held."""
        packed, scores = self._load_packed(frame_idx, replaced=set(new_packed))
        kept = {obj_id: bits for obj_id, bits in packed.items() if obj_id not in new_packed}
        packed.update(new_packed)
        scores.update(new_scores)
        return kept, packed, scores

    def drop(self, frame_idx: int, obj_id: int | None = None) -> None:
        """Forget one object's entry on one frame (every object's when ``obj_id`` is None)."""
        frame_idx = self._check_frame(frame_idx)
        with self._io_lock, self._lock:
            if frame_idx not in self._frames:
                return
            if obj_id is None:
                self._save_packed(frame_idx, {}, {})
                return
            packed, scores = self._load_packed(frame_idx)
            if int(obj_id) in packed:
                del packed[int(obj_id)]
                self._save_packed(frame_idx, packed, scores)

    def remove_object(self, obj_id: int) -> None:
        """Forget an object on every frame."""
        obj_id = int(obj_id)
        with self._io_lock, self._lock:
            for frame_idx in sorted(self._frames):
                packed, scores = self._load_packed(frame_idx)
                if obj_id in packed:
                    del packed[obj_id]
                    self._save_packed(frame_idx, packed, scores)

    def clear(self) -> None:
        """Forget every result (the folder itself stays), frames written behind included."""
        with self._io_lock, self._lock:
            self._behind.discard()  # with what it failed to write
            for path in self.root.iterdir():
                if _FRAME_FILE.match(path.name) or path.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            self._frames.clear()

    # ------------------------------------------------------------------ writing behind
    def on_disk(self, frame_idx: int) -> bool:
        """True when the frame's file holds what a read gives (no write of it waits)."""
        return self._behind.get(int(frame_idx)) is None

    def flush(self) -> None:
        """Put every frame written behind into its file (in this thread), then return;
        raises what a write behind or this one could not do."""
        with self._io_lock, self._lock:
            self._behind.drain()

    def close(self) -> None:
        """Flush, and write every later frame at once: after this returns, the store's
        writer thread touches no file, so the folder may be removed."""
        with self._io_lock, self._lock:
            self._behind.close()

    # ------------------------------------------------------------------ reading
    def frames(self) -> list[int]:
        """Sorted indices of the frames that have at least one stored object."""
        with self._lock:
            return sorted(self._frames)

    def read(self, frame_idx: int) -> FrameResult | None:
        """Every stored object's mask and score on a frame, or None when there are none."""
        frame_idx = self._check_frame(frame_idx)
        packed, scores = self._load_packed(frame_idx)
        if not packed:
            return None
        masks = {obj_id: self._unpack(bits) for obj_id, bits in packed.items()}
        return FrameResult(frame_idx, masks, scores)

    def mask(self, frame_idx: int, obj_id: int) -> np.ndarray | None:
        """One object's boolean mask (H, W) on a frame, or None when not stored."""
        frame_idx = self._check_frame(frame_idx)
        entry = self._behind.get(frame_idx)
        if entry is not None:
            bits = entry.packed.get(int(obj_id))
            return None if bits is None else self._unpack(bits)
        try:
            with np.load(self._path(frame_idx), allow_pickle=False) as data:
                ids = data["ids"].tolist()
                if int(obj_id) not in ids:
                    return None
                bits = self._check_bits(data["bits"], frame_idx)
                return self._unpack(bits[ids.index(int(obj_id))])
        except FileNotFoundError:
            return None

    def score(self, frame_idx: int, obj_id: int) -> float | None:
        """One object's score logit on a frame, or None when not stored."""
        frame_idx = self._check_frame(frame_idx)
        entry = self._behind.get(frame_idx)
        if entry is not None:
            return entry.scores.get(int(obj_id))
        try:
            with np.load(self._path(frame_idx), allow_pickle=False) as data:
                ids = data["ids"].tolist()
                if int(obj_id) not in ids:
                    return None
                return float(data["scores"][ids.index(int(obj_id))])
        except FileNotFoundError:
            return None

    def presence(self, frame_idx: int) -> tuple[dict[int, bool], dict[int, float]]:
        """Which stored objects have a non-empty mask on a frame (without unpacking the
        masks), and their scores; two empty dicts for a frame without a file."""
        packed, scores = self._load_packed(self._check_frame(frame_idx))
        return {obj_id: bool(bits.any()) for obj_id, bits in packed.items()}, scores

    def stamp(self, frame_idx: int) -> tuple[int, int, int] | None:
        """What changes whenever the frame's content changes (its file's inode, size and
        mtime in ns; (-1, n, 0) while its n-th write behind waits), or None without any: a
        reader caching something of a frame compares it."""
        frame_idx = self._check_frame(frame_idx)
        entry = self._behind.get(frame_idx)
        if entry is not None:
            return -1, entry.version, 0
        try:
            st = os.stat(self._path(frame_idx))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[FrameResult]:
        """Stored results of frames ``start`` <= index < ``stop``, in frame order."""
        for frame_idx in self.frames():
            if frame_idx < start or (stop is not None and frame_idx >= stop):
                continue
            result = self.read(frame_idx)
            if result is not None:  # may have been dropped since frames() was taken
                yield result

    def label_image(self, frame_idx: int, obj_order: list[int] | None = None) -> np.ndarray:
        """uint16 (H, W) image: pixel value = object id, 0 = background.

        ``obj_order`` lists the objects to draw, in drawing order; where masks overlap, the
        object later in the list wins. None draws every stored object in ascending id order
        (so the larger id wins). A frame without results gives an all-zero image.
        """
        result = self.read(frame_idx)
        order = None if obj_order is None else [int(i) for i in obj_order]
        return label_image(result, self.height, self.width, order)

    def nbytes_on_disk(self) -> int:
        """Bytes used by the stored frame files (frames written behind once on disk)."""
        total = 0
        for frame_idx in self.frames():
            with contextlib.suppress(FileNotFoundError):
                total += self._path(frame_idx).stat().st_size
        return total

    @staticmethod
    def _check_frame(frame_idx) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(frame_idx).__name__}")
        if frame_idx < 0:
            raise ValueError(f"frame index must be >= 0, got {frame_idx}")
        return int(frame_idx)


def _frame_index(root: Path) -> set[int]:
    """The frames that have a file in ``root``."""
    return {int(m.group(1)) for m in map(_FRAME_FILE.match, (p.name for p in root.iterdir())) if m}


def _checked_bits(bits: np.ndarray, frame_idx: int, height: int, width: int) -> np.ndarray:
    if bits.ndim != 2 or bits.shape[1] != (height * width + 7) // 8:
        raise ValueError(f"stored masks of frame {frame_idx} do not fit {height}x{width}")
    return bits


def _replace_file(path: Path, packed: dict[int, np.ndarray], scores: dict[int, float]) -> None:
    """Atomically replace a frame's file with these masks and scores (temporary file +
    :func:`os.replace`), or remove it when nothing is left."""
    if not packed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    ids = sorted(packed)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(
                fh,
                ids=np.asarray(ids, dtype=np.int64),
                scores=np.asarray([scores[i] for i in ids], dtype=np.float64),
                bits=np.stack([packed[i] for i in ids]),
            )
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
