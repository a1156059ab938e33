"""Recorded actions: every change a user made to a tracking session, as typed records.

A :class:`~sam2web.tracking.TrackingSession` appends one action per change to its
``history``; :func:`sam2web.tracking.replay` applies an action to a session again, and
:mod:`sam2web.project` stores the list in project files. Replaying a history on the same
frames with the same model gives the same masks.

Coordinates are (x, y) pixels of the original frame (:mod:`sam2web.types`), frames count
from 0, and object ids are handed out from 1 in the order of :class:`AddObject` actions
(removed ids are not reused).

:func:`to_json` and :func:`from_json` are the one place where actions meet their JSON form,
``{"op": <name>, ...fields}``, which is format version 1 of project files.
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


Action = AddObject | RenameObject | RemoveObject | AddClick | SetBox | Undo | ClearFrame | Propagate

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
    )
}

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
    have the right types (:mod:`sam2web.project` checks files before this); unknown
    operations raise ValueError."""
    kind = KINDS.get(data.get("op"))
    if kind is None:
        raise ValueError(f"unknown history operation {data.get('op')!r}")
    if kind is Propagate:
        return Propagate(tuple(Pass(**p) for p in data["passes"]))
    return kind(**{f.name: data[f.name] for f in fields(kind)})


def prompt_actions(history: list[Action]) -> list[Action]:
    """The actions of a history that define objects and prompts (everything but the
    tracking runs), in order."""
    return [a for a in history if not isinstance(a, Propagate)]


def tracked_frames(history: list[Action]) -> int:
    """Frames the tracking runs of a history tracked (what a replay tracks again)."""
    return sum(a.frames for a in history if isinstance(a, Propagate))
