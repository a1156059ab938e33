"""Lazy model input: frames read from the session's frame folder one at a time.

SAM2's own loader (``init_state``) decodes and normalises every frame up front: 12 MiB per
frame at 1024 px. The predictor only needs ``len(images)`` and ``images[i]`` returning the
normalised 3xSxS tensor, so :class:`LazyFrameSource` stands in for that list and keeps a
small LRU cache. The arithmetic below reproduces sam2's ``_load_img_as_tensor`` followed by
``init_state``'s normalisation step for step, so the tensors are bit-identical.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def load_model_input(path: Path, image_size: int) -> torch.Tensor:
    """One frame file -> normalised float32 tensor (3, S, S), as sam2's JPEG loader makes it."""
    with Image.open(path) as img:
        resized = np.array(img.convert("RGB").resize((image_size, image_size)))
    # float64 division then a float32 copy: the same rounding as sam2 writing a float64
    # array into its float32 frame buffer.
    tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    tensor -= mean
    tensor /= std
    return tensor


class LazyFrameSource(Sequence):
    """Sequence of model-input tensors backed by frame files, with an LRU cache.

    ``cache_size`` frames are held at most (each 3*S*S*4 bytes: 12 MiB at S=1024).
    """

    def __init__(
        self,
        paths: list[Path],
        image_size: int,
        device: torch.device | str = "cpu",
        cache_size: int = 4,
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
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
        tensor = load_model_input(self._paths[index], self.image_size).to(self.device)
        with self._lock:
            self.loads += 1
            self._cache[index] = tensor
            self._cache.move_to_end(index)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return tensor

    def clear_cache(self) -> None:
        """Forget the cached frames (they are read from disk again when needed)."""
        with self._lock:
            self._cache.clear()

    def cached_bytes(self) -> int:
        with self._lock:
            return sum(t.numel() * t.element_size() for t in self._cache.values())
