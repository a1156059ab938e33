"""Lazy model input: frames read from the session's frame folder one at a time.

SAM2's own loader (``init_state``) decodes and normalises every frame up front: 12 MiB per
frame at 1024 px. The predictor only needs ``len(images)`` and ``images[i]`` returning the
normalised 3xSxS tensor, so :class:`LazyFrameSource` stands in for that list and keeps a
small LRU cache. While frames are asked for in order (a propagation, either way), the next one
is decoded and resized ahead on a reader thread (no torch there: the normalisation and the
copy to the device stay on the thread that asks, which on MPS must be the model's). The arithmetic below reproduces sam2's ``_load_img_as_tensor`` followed by
``init_state``'s normalisation step for step, so the tensors are bit-identical.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)

# One reader for every session of the process: reading ahead is a frame file's decode and
# resize (tens of milliseconds), next to a model step of tenths of a second to seconds. A
# forked child (a ZeroGPU job) has no copy of the parent's thread, so it makes its own.
_READERS: dict[int, ThreadPoolExecutor] = {}
_READERS_LOCK = threading.Lock()


def _reader() -> ThreadPoolExecutor:
    pid = os.getpid()
    with _READERS_LOCK:
        reader = _READERS.get(pid)
        if reader is None:
            reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2web-read-ahead")
            _READERS.clear()  # a parent's executor is useless here
            _READERS[pid] = reader
        return reader


def read_frame(path: Path, image_size: int) -> np.ndarray:
    """One frame file decoded and resized to (S, S, 3) uint8, as sam2's JPEG loader does."""
    with Image.open(path) as img:
        return np.array(img.convert("RGB").resize((image_size, image_size)))


def to_model_input(resized: np.ndarray) -> torch.Tensor:
    """A resized frame -> normalised float32 tensor (3, S, S), as sam2 normalises it."""
    # float64 division then a float32 copy: the same rounding as sam2 writing a float64
    # array into its float32 frame buffer.
    tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    tensor -= mean
    tensor /= std
    return tensor


def load_model_input(path: Path, image_size: int) -> torch.Tensor:
    """One frame file -> normalised float32 tensor (3, S, S), as sam2's JPEG loader makes it."""
    return to_model_input(read_frame(path, image_size))


class LazyFrameSource(Sequence):
    """Sequence of model-input tensors backed by frame files, with an LRU cache.

    ``cache_size`` frames are held at most (each 3*S*S*4 bytes: 12 MiB at S=1024), and
    with ``read_ahead`` one more frame being read: after frame *i* was asked for right
    after *i - 1* (or *i + 1*), frame *i + 1* (or *i - 1*) is read on the reader thread.
    """

    def __init__(
        self,
        paths: list[Path],
        image_size: int,
        device: torch.device | str = "cpu",
        cache_size: int = 4,
        read_ahead: bool = True,
    ):
        if not paths:
            raise ValueError("a frame source needs at least one frame")
        self._paths = list(paths)
        self.image_size = image_size
        self.device = torch.device(device)
        self.cache_size = max(1, cache_size)
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a frame was read from disk (for tests and benchmarks)
        self.read_ahead = read_ahead
        self._last: int | None = None
        self._ahead: tuple[int, Future] | None = None  # the frame being read ahead

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("LazyFrameSource does not support slicing")
        if index < 0:
            index += len(self._paths)
        if not 0 <= index < len(self._paths):
            raise IndexError(index)
        with self._lock:
            step = None if self._last is None else index - self._last
            self._last = index
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
            ahead = self._ahead if self._ahead and self._ahead[0] == index else None
            if ahead is not None:
                self._ahead = None
        if step in (1, -1):
            self._read_ahead(index + step)
        if cached is not None:
            return cached
        resized = None
        if ahead is not None and ahead[0] == index:
            resized = _result(ahead[1])
        if resized is None:
            resized = read_frame(self._paths[index], self.image_size)
        # torch runs on the asking thread only: a process whose torch ran on another thread
        # hangs in its first torch call once forked (a ZeroGPU job is a forked child).
        tensor = to_model_input(resized).to(self.device)
        with self._lock:
            self.loads += 1
            self._cache[index] = tensor
            self._cache.move_to_end(index)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return tensor

    def _read_ahead(self, index: int) -> None:
        if not self.read_ahead or not 0 <= index < len(self._paths):
            return
        with self._lock:
            if index in self._cache or (self._ahead and self._ahead[0] == index):
                return
            path = self._paths[index]
            self._ahead = (index, _reader().submit(read_frame, path, self.image_size))

    def clear_cache(self) -> None:
        """Forget the cached frames (they are read from disk again when needed)."""
        with self._lock:
            self._cache.clear()
            self._ahead = None
            self._last = None

    def cached_bytes(self) -> int:
        with self._lock:
            return sum(t.numel() * t.element_size() for t in self._cache.values())


def _result(future: Future) -> np.ndarray | None:
    """A frame read ahead, or None when reading it failed (it is then read again by the
    caller, whose error is the one to see: a frame folder removed, a damaged file)."""
    try:
        return future.result()
    except Exception:
        return None
