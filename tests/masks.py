"""Checks shared by tests that compare masks: equal masks prove nothing when they are all
empty or all full, so every such comparison first asserts the masks are non-trivial."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def assert_nontrivial(masks: Iterable[np.ndarray], what: str = "masks") -> None:
    """Some of ``masks`` (boolean arrays of any shape) are neither empty nor full."""
    masks = [np.asarray(m, dtype=bool) for m in masks]
    assert masks, f"no {what} to compare"
    mixed = [m.any() and not m.all() for m in masks]
    assert any(mixed), f"every one of the {len(masks)} {what} is empty or full"


def stored_masks(store, frames: Iterable[int] | None = None) -> list[np.ndarray]:
    """Every stored mask of ``frames`` (default: all stored frames) of a MaskStore."""
    out = []
    for frame in store.frames() if frames is None else frames:
        result = store.read(frame)
        if result is not None:
            out.extend(result.masks.values())
    return out
