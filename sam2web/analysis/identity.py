"""Identity fixes after tracking, as pure, recordable operations, and gap filling in tables.

A fix is a small frozen dataclass with ``apply(store)`` (rewrites a :class:`MaskStore`),
``apply_to_rows(rows)`` (the same change on a measurement table) and ``to_json`` /
:func:`fix_from_json`, so a project can record fixes in its history and replay them.

* :class:`Swap` exchanges the masks and scores of objects a and b on frames
  ``from_frame <= f < stop`` (``stop`` None: to the end). It is its own inverse.
* :class:`Merge` folds object ``source`` into ``target`` on those frames: the union of the
  masks, the larger score, and ``source`` removed there. It cannot be undone from its
  result (which pixels were whose is lost); undo by replaying the history without it.

:func:`fill_gaps` bridges short absences in a *table* by linear interpolation of the
centroid; masks are never invented.

:class:`FixedStore` is how recorded fixes reach every output: a read-only view of a
session's store that applies the fixes in force (:func:`sam2web.history.identity_fixes`) to
each frame as it is read, so the stored masks stay as tracked and undoing a fix restores
the earlier outputs exactly. :func:`fixed_view` gives the view a session's history calls for.

The one identity rule: every reader of masks reads the view, and every edit names an
object as the view shows it. :func:`tracker_object` is where such an edit goes: the
tracker's (SAM 2's) object whose masks show as that object on that frame under the fixes in
force; an object merged into another is not shown there and is refused in one sentence.
:func:`shown_object` is its inverse (where a tracker object's prompt is drawn), and
:func:`check_removal` refuses to remove an object a fix in force involves.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PromptError
from ..history import Action, MergeObjects, SwapObjects, identity_fixes
from ..tracking.maskstore import MaskReader, MaskStore, label_image
from ..types import FrameResult, Measurement
from .results import CSV_COLUMNS


def _check_id(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise PromptError(f"The {what} must be an object number of 1 or more.")
    return int(value)


def _check_frames(from_frame, stop) -> tuple[int, int | None]:
    if isinstance(from_frame, bool) or not isinstance(from_frame, (int, np.integer)):
        raise PromptError("The first frame of a fix must be a frame number.")
    if from_frame < 0:
        raise PromptError("The first frame of a fix must be 0 or later.")
    if stop is not None:
        if isinstance(stop, bool) or not isinstance(stop, (int, np.integer)):
            raise PromptError("The last frame of a fix must be a frame number.")
        if stop <= from_frame:
            raise PromptError("A fix must end after the frame it starts on.")
        stop = int(stop)
    return int(from_frame), stop


def _absent(row: Measurement) -> Measurement:
    """The row as :func:`sam2web.analysis.results.measurements` writes it for a frame without a
    result: not present, score NaN, no geometry."""
    return dataclasses.replace(
        row,
        present=False,
        score=math.nan,
        area_px=None,
        centroid_x=None,
        centroid_y=None,
        bbox_x=None,
        bbox_y=None,
        bbox_w=None,
        bbox_h=None,
    )


# What a row says about the object on its frame (everything after frame, time, id, name).
_GEOMETRY = CSV_COLUMNS[CSV_COLUMNS.index("present") :]


def _with_geometry(row: Measurement, source: Measurement) -> Measurement:
    return dataclasses.replace(row, **{k: getattr(source, k) for k in _GEOMETRY})


@dataclass(frozen=True)
class Swap:
    """Exchange objects ``a`` and ``b`` on frames ``from_frame <= f < stop``."""

    a: int
    b: int
    from_frame: int
    stop: int | None = None

    def __post_init__(self):
        a = _check_id(self.a, "first object")
        b = _check_id(self.b, "second object")
        if a == b:
            raise PromptError("Choose two different objects to swap.")
        from_frame, stop = _check_frames(self.from_frame, self.stop)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "from_frame", from_frame)
        object.__setattr__(self, "stop", stop)

    def covers(self, frame: int) -> bool:
        return frame >= self.from_frame and (self.stop is None or frame < self.stop)

    def inverse(self) -> Swap:
        """The fix that undoes this one: the same swap."""
        return self

    def apply(self, store: MaskStore) -> None:
        """Rewrite the store's affected frames in place."""
        for frame in store.frames():
            if not self.covers(frame):
                continue
            result = store.read(frame)
            if result is None:
                continue
            ma, mb = result.masks.get(self.a), result.masks.get(self.b)
            sa, sb = result.scores.get(self.a), result.scores.get(self.b)
            new_masks, new_scores, gone = {}, {}, []
            for obj, mask, score in ((self.a, mb, sb), (self.b, ma, sa)):
                if mask is None:
                    gone.append(obj)
                else:
                    new_masks[obj] = mask
                    new_scores[obj] = score
            # Write before dropping: a crash in between duplicates an entry, never loses one.
            store.write(frame, new_masks, new_scores)
            for obj in gone:
                store.drop(frame, obj)

    def apply_to_result(self, result: FrameResult) -> FrameResult:
        """One frame's masks and scores with the fix applied (a new record)."""
        if not self.covers(result.frame_idx):
            return result
        masks, scores = dict(result.masks), dict(result.scores)
        for obj, other in ((self.a, self.b), (self.b, self.a)):
            masks.pop(obj, None)
            scores.pop(obj, None)
            if other in result.masks:
                masks[obj] = result.masks[other]
                scores[obj] = result.scores[other]
        return FrameResult(result.frame_idx, dict(sorted(masks.items())), scores)

    def apply_to_rows(self, rows: Iterable[Measurement]) -> list[Measurement]:
        """The table with a's and b's measurements exchanged on the covered frames (ids and
        names stay)."""
        rows = list(rows)
        index = {(r.frame, r.object_id): r for r in rows}
        out = []
        for r in rows:
            if self.covers(r.frame) and r.object_id in (self.a, self.b):
                other = index.get((r.frame, self.b if r.object_id == self.a else self.a))
                out.append(_absent(r) if other is None else _with_geometry(r, other))
            else:
                out.append(r)
        return out

    def to_json(self) -> dict:
        return {
            "op": "swap",
            "a": self.a,
            "b": self.b,
            "from_frame": self.from_frame,
            "stop": self.stop,
        }


@dataclass(frozen=True)
class Merge:
    """Fold object ``source`` into ``target`` on frames ``from_frame <= f < stop``."""

    target: int
    source: int
    from_frame: int
    stop: int | None = None

    def __post_init__(self):
        target = _check_id(self.target, "object to keep")
        source = _check_id(self.source, "object to merge")
        if target == source:
            raise PromptError("Choose two different objects to merge.")
        from_frame, stop = _check_frames(self.from_frame, self.stop)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "from_frame", from_frame)
        object.__setattr__(self, "stop", stop)

    def covers(self, frame: int) -> bool:
        return frame >= self.from_frame and (self.stop is None or frame < self.stop)

    def apply(self, store: MaskStore) -> None:
        """Rewrite the store's affected frames in place: target = target | source, score =
        the larger known one (NaN only when both are unknown), source dropped."""
        for frame in store.frames():
            if not self.covers(frame):
                continue
            result = store.read(frame)
            if result is None or self.source not in result.masks:
                continue
            mask = result.masks[self.source]
            score = result.scores[self.source]
            if self.target in result.masks:
                mask = mask | result.masks[self.target]
                score = float(np.fmax(score, result.scores[self.target]))
            store.write(frame, {self.target: mask}, {self.target: score})
            store.drop(frame, self.source)

    def apply_to_result(self, result: FrameResult) -> FrameResult:
        """One frame's masks and scores with the merge applied (a new record)."""
        if not self.covers(result.frame_idx) or self.source not in result.masks:
            return result
        masks, scores = dict(result.masks), dict(result.scores)
        mask, score = masks.pop(self.source), scores.pop(self.source)
        if self.target in masks:
            mask = mask | masks[self.target]
            score = float(np.fmax(score, scores[self.target]))
        masks[self.target] = mask
        scores[self.target] = score
        return FrameResult(result.frame_idx, dict(sorted(masks.items())), scores)

    def apply_to_rows(self, rows: Iterable[Measurement]) -> list[Measurement]:
        """The table after the merge, without the masks.

        Where only one of the two is present the target takes that row's measurements;
        where both are, area = the sum, centroid = the area-weighted mean and the box = the
        union of the boxes, exact when the masks do not overlap (re-measure from the store
        for exact values); score = the larger. The source becomes absent on those frames.
        """
        rows = list(rows)
        index = {(r.frame, r.object_id): r for r in rows}
        out = []
        for r in rows:
            if not self.covers(r.frame) or r.object_id not in (self.target, self.source):
                out.append(r)
            elif r.object_id == self.source:
                out.append(_absent(r))
            else:
                src = index.get((r.frame, self.source))
                out.append(r if src is None else _merge_rows(r, src))
        return out

    def to_json(self) -> dict:
        return {
            "op": "merge",
            "target": self.target,
            "source": self.source,
            "from_frame": self.from_frame,
            "stop": self.stop,
        }


def _merge_rows(t: Measurement, s: Measurement) -> Measurement:
    if not s.present or s.area_px is None:
        return t
    if not t.present or t.area_px is None:
        return _with_geometry(t, s)
    area = t.area_px + s.area_px
    x0 = min(t.bbox_x, s.bbox_x)
    y0 = min(t.bbox_y, s.bbox_y)
    x1 = max(t.bbox_x + t.bbox_w, s.bbox_x + s.bbox_w)
    y1 = max(t.bbox_y + t.bbox_h, s.bbox_y + s.bbox_h)
    return dataclasses.replace(
        t,
        score=float(np.fmax(t.score, s.score)),
        area_px=area,
        centroid_x=(t.centroid_x * t.area_px + s.centroid_x * s.area_px) / area,
        centroid_y=(t.centroid_y * t.area_px + s.centroid_y * s.area_px) / area,
        bbox_x=x0,
        bbox_y=y0,
        bbox_w=x1 - x0,
        bbox_h=y1 - y0,
    )


IdentityFix = Swap | Merge


def fix_from_json(data: dict) -> IdentityFix:
    """The fix described by a ``to_json`` dict; a malformed one raises PromptError."""
    try:
        if data["op"] == "swap":
            return Swap(data["a"], data["b"], data["from_frame"], data.get("stop"))
        if data["op"] == "merge":
            return Merge(data["target"], data["source"], data["from_frame"], data.get("stop"))
    except (KeyError, TypeError):
        pass
    raise PromptError("A stored identity fix is not readable; make the fix again.")


def fix_of(action: SwapObjects | MergeObjects) -> IdentityFix:
    """The fix a recorded history action makes: from its frame to the end."""
    if isinstance(action, SwapObjects):
        return Swap(action.a, action.b, action.frame)
    return Merge(action.target, action.source, action.frame)


class FixedStore:
    """A read-only view of a :class:`MaskStore` with identity fixes applied, in order, to
    every frame read. It offers the reading half of the store's interface (``read``,
    ``mask``, ``score``, ``frames``, ``iter_frames``, ``label_image``), so exports, the
    overlay video and the page read it in place of the store."""

    def __init__(self, store: MaskReader, fixes: Iterable[IdentityFix]):
        self.store = store
        self.fixes = tuple(fixes)
        self.height, self.width = store.height, store.width

    def read(self, frame_idx: int) -> FrameResult | None:
        result = self.store.read(frame_idx)
        if result is None:
            return None
        for fix in self.fixes:
            result = fix.apply_to_result(result)
        return result

    def mask(self, frame_idx: int, obj_id: int) -> np.ndarray | None:
        result = self.read(frame_idx)
        return None if result is None else result.masks.get(obj_id)

    def score(self, frame_idx: int, obj_id: int) -> float | None:
        result = self.read(frame_idx)
        return None if result is None else result.scores.get(obj_id)

    def frames(self) -> list[int]:
        return self.store.frames()

    def iter_frames(self, start: int = 0, stop: int | None = None):
        for frame_idx in self.frames():
            if frame_idx >= start and (stop is None or frame_idx < stop):
                result = self.read(frame_idx)
                if result is not None:
                    yield result

    def label_image(self, frame_idx: int, obj_order: list[int] | None = None) -> np.ndarray:
        order = None if obj_order is None else [int(i) for i in obj_order]
        return label_image(self.read(frame_idx), self.height, self.width, order)


def fixes_in_force(history: list[Action]) -> list[IdentityFix]:
    """The fixes in force after ``history`` (:func:`sam2web.history.identity_fixes`), in the
    order they were made, as the operations :class:`FixedStore` applies."""
    return [fix_of(a) for a in identity_fixes(history)]


def fixed_view(store: MaskStore, history: list[Action]) -> MaskReader:
    """What to read a session's masks from: the store itself when no identity fix is in
    force, else a :class:`FixedStore` applying them."""
    fixes = fixes_in_force(history)
    if not fixes:
        return store
    return FixedStore(store, fixes)


def _undo_hint(fixes: Sequence[IdentityFix], i: int) -> str:
    """How to take back fix ``i`` of ``fixes`` (undo takes back the latest first)."""
    later = len(fixes) - 1 - i
    return "undo that fix first" if later == 0 else f"undo the last {later + 1} fixes first"


def tracker_object(fixes: Sequence[IdentityFix], obj_id: int, frame: int) -> int:
    """The tracker object an edit of object ``obj_id`` *as shown* on ``frame`` goes to: the
    one whose masks :class:`FixedStore` shows as ``obj_id`` there under ``fixes`` (in the
    order made). A swap covering the frame exchanges the two; the object a merge keeps
    stays itself, unless an earlier fix folds it away there (then it shows what the merge
    folds into it, the source's); the object a merge folds away is not shown there, and an
    edit of it is refused in one sentence (PromptError). Outside every fix an object is
    itself."""
    tracker = int(obj_id)
    for i in range(len(fixes) - 1, -1, -1):
        fix = fixes[i]
        if not fix.covers(frame):
            continue
        if isinstance(fix, Swap):
            if tracker in (fix.a, fix.b):
                tracker = fix.b if tracker == fix.a else fix.a
        elif tracker == fix.target and not _shown(fixes[:i], fix.target, frame):
            tracker = fix.source
        elif tracker == fix.source:
            kept = shown_object(fixes[i + 1 :], fix.target, frame)
            raise PromptError(
                f"Object {int(obj_id)} is merged into object {kept} from frame "
                f"{fix.from_frame}, so it is not shown on frame {int(frame)}; edit object "
                f"{kept} there, or {_undo_hint(fixes, i)}."
            )
    return tracker


def _shown(fixes: Sequence[IdentityFix], obj_id: int, frame: int) -> bool:
    """Whether ``fixes`` leave object ``obj_id`` shown on ``frame`` (no merge folds it away)."""
    try:
        tracker_object(fixes, obj_id, frame)
    except PromptError:
        return False
    return True


def shown_object(fixes: Sequence[IdentityFix], tracker: int, frame: int) -> int:
    """The object the tracker object ``tracker``'s mask on ``frame`` is shown as under
    ``fixes``: the inverse of :func:`tracker_object` (an object a merge folds away is shown
    as the one it keeps)."""
    obj = int(tracker)
    for fix in fixes:
        if not fix.covers(frame):
            continue
        if isinstance(fix, Swap):
            if obj in (fix.a, fix.b):
                obj = fix.b if obj == fix.a else fix.a
        elif obj == fix.source:
            obj = fix.target
    return obj


def check_removal(fixes: Sequence[IdentityFix], obj_id: int) -> None:
    """Refuse, in one sentence, to remove an object that a fix in force involves: removing
    it would remove the tracker object whose masks the fix shows as the other one."""
    for i, fix in enumerate(fixes):  # the earliest: undoing back to it frees the object
        pair = (fix.a, fix.b) if isinstance(fix, Swap) else (fix.target, fix.source)
        if int(obj_id) in pair:
            kind = "swap" if isinstance(fix, Swap) else "merge"
            raise PromptError(
                f"Object {int(obj_id)} is part of a {kind} from frame {fix.from_frame}; "
                f"{_undo_hint(fixes, i)}, then remove it."
            )


def fill_gaps(rows: Iterable[Measurement], max_gap: int) -> tuple[list[Measurement], list[bool]]:
    """Rows with short absences bridged, and which rows were filled in.

    An absence of at most ``max_gap`` consecutive frames between two present frames of the
    same object gets a centroid on the straight line between them (linear in the frame
    number). A filled row is present, with score NaN (unknown: nothing was tracked there)
    and no area or box. Absences at the start or end and longer ones stay. Returns
    (rows in the input order, interpolated flag per row).
    """
    if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)) or max_gap < 0:
        raise PromptError("The longest gap to fill must be a whole number of frames, 0 or more.")
    rows = list(rows)
    step = math.gcd(*(int(r.frame) for r in rows)) or 1
    filled: dict[int, Measurement] = {}
    positions: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        positions.setdefault(r.object_id, []).append(i)
    for idx in positions.values():
        idx.sort(key=lambda i: rows[i].frame)
        anchors = [rows[i] for i in idx if rows[i].present and rows[i].centroid_x is not None]
        if len(anchors) < 2:
            continue
        at = np.array([a.frame for a in anchors], dtype=float)
        absent = [k for k in idx if not rows[k].present]
        frames = np.array([rows[k].frame for k in absent], dtype=float)
        after = np.searchsorted(at, frames, side="right")  # the first anchor after each
        inside = (after > 0) & (after < len(at))
        before_f, after_f = at[np.maximum(after - 1, 0)], at[np.minimum(after, len(at) - 1)]
        # Gaps count frames tracked: rows of a stepped video are ``step`` frames apart.
        bridged = inside & (before_f < frames) & ((after_f - before_f) / step - 1 <= max_gap)
        xs = np.interp(frames, at, [a.centroid_x for a in anchors])
        ys = np.interp(frames, at, [a.centroid_y for a in anchors])
        for n in np.flatnonzero(bridged):
            filled[absent[n]] = dataclasses.replace(
                _absent(rows[absent[n]]),
                present=True,
                centroid_x=float(xs[n]),
                centroid_y=float(ys[n]),
            )
    out = [filled.get(i, r) for i, r in enumerate(rows)]
    return out, [i in filled for i in range(len(rows))]
