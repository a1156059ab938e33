"""On which frames each object is present, as the page's object list shows it.

An object is present on a frame when its mask there, as the identity fixes in force show
it (:class:`sam2web.analysis.identity.FixedStore`), is non-empty and its score does not say
absent (the rule of :func:`sam2web.analysis.results.walk`'s ``present``). The object list is
refreshed after every action, so :class:`PresenceIndex` reads a frame's file again only
when the file changed (:meth:`MaskStore.stamp`), and never unpacks a mask
(:meth:`MaskStore.presence`); the fixes are applied to the per-frame record of which masks
are non-empty, as they are to masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..tracking.maskstore import MaskStore
from ..types import FrameResult
from .identity import IdentityFix


class PresenceIndex:
    """The frames each object is present on, kept current with a store's files."""

    def __init__(self) -> None:
        self._root = None
        self._frames: dict[int, tuple[tuple, dict[int, bool], dict[int, float]]] = {}

    def frames_present(
        self, store: MaskStore, fixes: Sequence[IdentityFix] = ()
    ) -> dict[int, list[int]]:
        """{object id: its present frames, ascending} under ``fixes`` (in the order made);
        objects present on no frame are left out."""
        if self._root != store.root:  # another video or workspace: nothing carries over
            self._root, self._frames = store.root, {}
        stored = store.frames()
        for gone in set(self._frames) - set(stored):
            del self._frames[gone]
        present: dict[int, list[int]] = {}
        for frame in stored:
            for obj_id in self._present_on(store, frame, fixes):
                present.setdefault(obj_id, []).append(frame)
        return present

    def _present_on(self, store: MaskStore, frame: int, fixes: Sequence[IdentityFix]) -> list[int]:
        stamp = store.stamp(frame)
        cached = self._frames.get(frame)
        if cached is None or cached[0] != stamp:
            nonempty, scores = store.presence(frame)
            cached = (stamp, nonempty, scores)
            self._frames[frame] = cached
        _, nonempty, scores = cached
        # One pixel per object stands for "its mask is non-empty": a swap exchanges it and
        # a merge ORs it, exactly as they do whole masks.
        result = FrameResult(frame, {k: np.array([[v]]) for k, v in nonempty.items()}, dict(scores))
        for fix in fixes:
            result = fix.apply_to_result(result)
        return [
            obj_id
            for obj_id, mask in result.masks.items()
            if bool(mask[0, 0]) and not result.scores.get(obj_id, np.nan) <= 0.0
        ]
