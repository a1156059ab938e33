"""Recorded actions: every change a user made to a tracking session, as typed records.

A :class:`~sam2web.tracking.tracker.TrackingSession` appends one action per change to its
``history``; :func:`sam2web.tracking.tracker.replay` applies an action to a session again, and
:mod:`sam2web.session.project` stores the list in project files. Replaying a history on the same
frames with the same model gives the same masks.

Coordinates are (x, y) pixels of the original frame (:mod:`sam2web.types`), frames count
from 0, and object ids are handed out from 1 in the order of :class:`AddObject` actions
(removed ids are not reused).

:func:`to_json` and :func:`from_json` are the one place where actions meet their JSON form,
``{"op": <name>, ...fields}``: version 1 of project files has the actions up to
:class:`Propagate`; version 2 adds mask prompts (:class:`AddMask`) and the identity fixes
(:class:`SwapObjects`, :class:`MergeObjects`, :class:`UndoFix`, :class:`FillGaps`) and
the record of objects found without clicks (:class:`FindObjects`).

Identity fixes change no model state: the tracked masks stay as SAM 2 made them and the
fixes in force (:func:`identity_fixes`) are applied when masks are read for the page and
the exports (:mod:`sam2web.analysis.identity`), so undoing one restores the earlier outputs exactly
and a later tracking run stays consistent with them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar


@dataclass(frozen=True)
class AddObject:
    obj: int
    name: str
    op: ClassVar[str] = "add_object"


@dataclass(frozen=True)
class RenameObject:
    obj: int
    name: str
    op: ClassVar[str] = "rename_object"


@dataclass(frozen=True)
class RemoveObject:
    obj: int
    op: ClassVar[str] = "remove_object"


@dataclass(frozen=True)
class AddClick:
    frame: int
    obj: int
    x: float
    y: float
    positive: bool
    op: ClassVar[str] = "click"


@dataclass(frozen=True)
class SetBox:
    frame: int
    obj: int
    x0: float
    y0: float
    x1: float
    y1: float
    op: ClassVar[str] = "box"


@dataclass(frozen=True)
class Undo:
    """Remove the object's last prompt on the frame (its last click, else its box)."""

    frame: int
    obj: int
    op: ClassVar[str] = "undo"


@dataclass(frozen=True)
class ClearFrame:
    frame: int
    obj: int
    op: ClassVar[str] = "clear"


@dataclass(frozen=True)
class AddMask:
    """A mask prompt: the object's mask on the frame, as the ``counts`` string of a
    compressed COCO run-length encoding (:func:`encode_mask`) of the frame's size."""

    frame: int
    obj: int
    rle: str
    op: ClassVar[str] = "mask"


@dataclass(frozen=True)
class SwapObjects:
    """Exchange objects ``a`` and ``b`` from ``frame`` on (an identity fix)."""

    a: int
    b: int
    frame: int
    op: ClassVar[str] = "swap"


@dataclass(frozen=True)
class MergeObjects:
    """Fold object ``source`` into ``target`` from ``frame`` on (an identity fix)."""

    target: int
    source: int
    frame: int
    op: ClassVar[str] = "merge"


@dataclass(frozen=True)
class UndoFix:
    """Take back the last identity fix still in force."""

    op: ClassVar[str] = "undo_fix"


@dataclass(frozen=True)
class FillGaps:
    """Bridge absences of at most ``frames`` frames in the tables (0: off)."""

    frames: int
    op: ClassVar[str] = "fill_gaps"


@dataclass(frozen=True)
class FindObjects:
    """The objects of the ``2 * len(picked)`` actions before this one (an
    :class:`AddObject` and its :class:`SetBox` or :class:`AddMask` each) were found on
    ``frame`` by a finder (:mod:`sam2web.analysis.finders`; ``how``: "motion" or
    "contrast") with these settings, as its proposals ``picked`` (numbers from 1, largest
    first) of the ``count`` it was asked for, prompted by ``prompt`` ("box" or "mask").
    It changes no model state: a replay on the same video replays the actions before it,
    and a batch finds the objects again on each recording (:mod:`sam2web.session.finding`)."""

    frame: int
    how: str
    prompt: str
    picked: tuple[int, ...]
    count: int
    min_area: int
    max_area: int | None
    threshold: float | None
    polarity: str
    split_depth: float
    op: ClassVar[str] = "find"


@dataclass(frozen=True)
class Pass:
    """One propagation pass: ``frames`` frames tracked from ``start``, backwards when
    ``reverse``."""

    start: int
    reverse: bool
    frames: int


@dataclass(frozen=True)
class Propagate:
    """One tracking run; a run in both directions is one action of two passes."""

    passes: tuple[Pass, ...] = ()
    op: ClassVar[str] = "propagate"

    @property
    def frames(self) -> int:
        return sum(p.frames for p in self.passes)


Action = (
    AddObject
    | RenameObject
    | RemoveObject
    | AddClick
    | SetBox
    | Undo
    | ClearFrame
    | Propagate
    | AddMask
    | SwapObjects
    | MergeObjects
    | UndoFix
    | FillGaps
    | FindObjects
)

KINDS: dict[str, type] = {
    cls.op: cls
    for cls in (
        AddObject,
        RenameObject,
        RemoveObject,
        AddClick,
        SetBox,
        Undo,
        ClearFrame,
        Propagate,
        AddMask,
        SwapObjects,
        MergeObjects,
        UndoFix,
        FillGaps,
        FindObjects,
    )
}

# Operations a version 1 project file holds; any other makes a file version 2.
VERSION_1_OPS = frozenset(
    ("add_object", "rename_object", "remove_object", "click", "box", "undo", "clear", "propagate")
)

# Actions that define objects and prompts, as opposed to tracking runs.
PROMPT_KINDS = tuple(cls for cls in KINDS.values() if cls is not Propagate)


def to_json(action: Action) -> dict:
    """The action as a JSON-ready dict, ``{"op": ..., <fields>}``."""
    data = {"op": action.op}
    if isinstance(action, Propagate):
        data["passes"] = [asdict(p) for p in action.passes]
    else:
        data.update(asdict(action))
    return data


def from_json(data: dict) -> Action:
    """The action a dict made by :func:`to_json` describes. The dict's values must already
    have the right types (:mod:`sam2web.session.projectload` checks files before this); unknown
    operations raise ValueError."""
    kind = KINDS.get(data.get("op"))
    if kind is None:
        raise ValueError(f"unknown history operation {data.get('op')!r}")
    if kind is Propagate:
        return Propagate(tuple(Pass(**p) for p in data["passes"]))
    if kind is FindObjects:
        return FindObjects(
            **{**{f.name: data[f.name] for f in fields(kind)}, "picked": tuple(data["picked"])}
        )
    return kind(**{f.name: data[f.name] for f in fields(kind)})


def prompt_actions(history: list[Action]) -> list[Action]:
    """The actions of a history that define objects and prompts (everything but the
    tracking runs), in order."""
    return [a for a in history if not isinstance(a, Propagate)]


def tracked_frames(history: list[Action]) -> int:
    """Frames the tracking runs of a history tracked (what a replay tracks again)."""
    return sum(a.frames for a in history if isinstance(a, Propagate))


def identity_fixes(history: list[Action]) -> list[SwapObjects | MergeObjects]:
    """The identity fixes in force after ``history``, in the order they were made (each
    :class:`UndoFix` takes back the last one still in force)."""
    fixes: list[SwapObjects | MergeObjects] = []
    for a in history:
        if isinstance(a, (SwapObjects, MergeObjects)):
            fixes.append(a)
        elif isinstance(a, UndoFix) and fixes:
            fixes.pop()
    return fixes


def gap_limit(history: list[Action]) -> int:
    """The longest absence (frames) the tables bridge after ``history``; 0: none."""
    limit = 0
    for a in history:
        if isinstance(a, FillGaps):
            limit = a.frames
    return limit


def encode_mask(mask) -> str:
    """A boolean (H, W) mask as the ``counts`` string of a compressed COCO RLE."""
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return rle["counts"].decode("ascii")


def _runs(rle: str):
    """The run lengths of an :func:`encode_mask` string (background first), one at a time;
    ValueError when it is not one. Every run after the first is at least one pixel long,
    as :func:`encode_mask` writes them, so a string never holds more runs than pixels."""
    older, previous, index = 0, 0, 0
    value, shift = 0, 0
    for ch in rle:
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise ValueError("not a run-length string")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            if shift > 60:
                raise ValueError("not a run-length string")
            continue
        if c & 0x10:
            value |= -1 << shift
        if index > 2:
            value += older
        if value < 0 or (value == 0 and index > 0):
            raise ValueError("not a run-length string")
        yield value
        older, previous, index = previous, value, index + 1
        value, shift = 0, 0
    if shift:
        raise ValueError("not a run-length string")


def rle_size(rle: str, limit: int) -> int:
    """The pixels an :func:`encode_mask` string covers (the total of its runs), read
    without building anything; ValueError when it is not one, or as soon as it covers
    more than ``limit`` pixels."""
    total = 0
    for run in _runs(rle):
        total += run
        if total > limit:
            raise ValueError("covers more pixels than the limit")
    return total


def rle_counts(rle: str):
    """The run lengths of an :func:`encode_mask` string (background first) as an int64
    array; ValueError when it is not one."""
    import numpy as np

    runs = sum(1 for _ in _runs(rle))
    return np.fromiter(_runs(rle), dtype=np.int64, count=runs)


def decode_mask(rle: str, height: int, width: int):
    """The boolean (H, W) mask an :func:`encode_mask` string of that size describes;
    ValueError when it does not describe one. Its size is read from the string and
    compared with H x W before anything of that size is made (not by a C decoder)."""
    import numpy as np

    if rle_size(rle, height * width) != height * width:
        raise ValueError("not a mask of this size")
    counts = rle_counts(rle)
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def nearest_sources(n_out: int, n_in: int):
    """The one nearest-neighbour convention for scaling masks (batches, the brush): output
    pixel i of ``n_out`` takes the source pixel of ``n_in`` under its centre,
    ``floor((i + 0.5) * n_in / n_out)``. (OpenCV's ``INTER_NEAREST`` takes
    ``floor(i * n_in / n_out)``, which shifts a mask up and left by up to a pixel.)"""
    import numpy as np

    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resize_mask(mask, to: tuple[int, int]):
    """A boolean mask scaled to ``to`` (height, width) by :func:`nearest_sources`."""
    import numpy as np

    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    return mask[nearest_sources(to[0], h)][:, nearest_sources(to[1], w)]


def decode_mask_resized(rle: str, size: tuple[int, int], to: tuple[int, int]):
    """The boolean mask an :func:`encode_mask` string of ``size`` (height, width)
    describes, scaled to ``to`` (height, width) by :func:`nearest_sources`. Only the scaled mask is made, never one of ``size``; ValueError when
    the string does not describe a mask of ``size``."""
    import numpy as np

    h, w = size
    if rle_size(rle, h * w) != h * w:
        raise ValueError("not a mask of this size")
    rows, cols = nearest_sources(to[0], h), nearest_sources(to[1], w)
    ends = np.cumsum(rle_counts(rle))  # runs are column after column (COCO's order)
    where = cols[None, :] * h + rows[:, None]
    return np.searchsorted(ends, where, side="right") % 2 == 1
