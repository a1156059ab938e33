"""Project files: a tracking job saved as versioned JSON (the file format only).

A project records the video it was made on (name, SHA-256, size, frame rate), the model
configuration, the calibration, the objects and the session's *history*: every action that
changed SAM2's state, in order (:mod:`sam2web.history`). Masks are not stored. This module
reads, checks and writes the file; replaying it is the user session's job
(:meth:`sam2web.session.user.UserSession.load_project`, with
:func:`sam2web.tracking.tracker.replay`): on the same video with the same model, device and
numerics the masks come out identical.

Format, version 1 (version 2 adds the optional top-level keys below)::

    {
      "format": "sam2web-project",
      "version": 1,
      "sam2web_version": "0.1.0",
      "sam2_version": "1.1.0",
      "created": "2025-01-31T12:00:00+00:00",
      "source": {"name": "mice.mp4", "sha256": "<64 hex digits>", "num_frames": 300,
                 "width": 1280, "height": 720, "fps": 30.0, "kind": "video"},
      "model": {"key": "sam2.1-tiny", "label": "SAM 2.1 tiny (156 MB)",
                "checkpoint_identity": "<16 hex digits>", "resolution": 1024,
                "corrections": "keep", "bf16": true, "device": "cuda"},
      "calibration": {"pixels_per_unit": 5.0, "unit": "mm", "fps": null},
      "objects": [{"id": 1, "name": "mouse", "color": [230, 25, 75]}],
      "history": [
        {"op": "add_object", "obj": 1, "name": "mouse"},
        {"op": "click", "frame": 0, "obj": 1, "x": 412.5, "y": 300.0, "positive": true},
        {"op": "propagate", "passes": [{"start": 0, "reverse": false, "frames": 300}]}
      ]
    }


History operations (:mod:`sam2web.history`, one dataclass each) and their fields: ``add_object`` {obj, name}; ``rename_object`` {obj,
name}; ``remove_object`` {obj}; ``click`` {frame, obj, x, y, positive}; ``box`` {frame, obj,
x0, y0, x1, y1}; ``undo`` {frame, obj}; ``clear`` {frame, obj}; ``propagate`` {passes:
[{start, reverse, frames}, ...]}. Coordinates are (x, y) pixels of the original frame
(:mod:`sam2web.types`), frames count from 0, and object ids are handed out from 1 in the
order of ``add_object`` steps (removed ids are not reused). ``model.bf16`` and
``model.device`` say how the model actually ran (bfloat16 autocast on or off, "cpu",
"cuda" or "mps"); ``checkpoint_identity`` is :func:`sam2web.tracking.model.checkpoint_identity`.

Version 2 adds, and a file is written as version 2 only when it uses one of them: the
operations ``mask`` {frame, obj, rle} (a mask prompt; ``rle`` is the ``counts`` string of a
compressed COCO run-length encoding of the frame's size, checked here before any decoder
sees it), ``swap`` {a, b, frame}, ``merge`` {target, source, frame}, ``undo_fix`` {} and
``fill_gaps`` {frames}; and ``source.channel`` / ``source.axis``, the choice a
multi-channel or volume TIFF was opened with; and the top-level keys ``zones`` (a list of
shapes as in :func:`sam2web.analysis.zones.zones_to_json`), ``zone_membership`` ({"by": "overlap",
"fraction": F}; absent: by centroid), ``pair_distance`` (a number, the calibrated unit) and
``ruler`` ({x0, y0, x1, y1, distance, unit}); see :class:`sam2web.session.behaviour.BehaviourSetup`.
Version 1 files load unchanged.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..analysis.tables import Calibration
from ..errors import UserError, as_clause
from ..fileio import atomic_output
from ..history import (
    KINDS,
    VERSION_1_OPS,
    Action,
    AddObject,
    MergeObjects,
    Propagate,
    RemoveObject,
    SwapObjects,
    decode_mask,
    from_json,
    to_json,
)
from ..tracking.checkpoints import get_spec
from ..types import TrackedObject, VideoInfo

log = logging.getLogger(__name__)

FORMAT = "sam2web-project"
VERSION = 2  # the newest format read; a file is written as version 1 when it can be
PROJECT_FILENAME = "sam2web_project.json"
# Optional top-level keys of version 2 (zones and behaviour settings, checked by
# :meth:`sam2web.session.behaviour.BehaviourSetup.from_project`).
BEHAVIOUR_KEYS = ("zones", "zone_membership", "pair_distance", "ruler")

MAX_PROJECT_BYTES = 20 * 1024 * 1024
MAX_HISTORY = 100_000  # steps; a long manual session has a few thousand
MAX_OBJECTS = 1_000
MAX_PASSES = 4  # passes per propagate step (sam2web makes at most 2)
MAX_NAME_CHARS = 80  # object names, as the session keeps them
MAX_TEXT_CHARS = 300  # file names, versions, time stamps
MAX_FRAMES = 10_000_000
MAX_SIDE = 100_000  # pixels

_HEX = re.compile(r"[0-9a-f]+")


class ProjectError(UserError):
    """A project file that cannot be used: unreadable, damaged, or made for another video."""


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ProjectSource:
    """The video a project was made on."""

    name: str
    sha256: str | None  # of the uploaded file's bytes; None when unknown
    num_frames: int
    width: int
    height: int
    fps: float
    kind: str
    # What a multi-channel or volume TIFF showed (media.ingest's choice); None: no choice.
    channel: int | str | None = None
    axis: str | None = None


@dataclass(frozen=True)
class ProjectModel:
    """How the model was configured and how it ran."""

    key: str
    label: str
    checkpoint_identity: str | None
    resolution: int
    corrections: str
    bf16: bool | None  # bfloat16 autocast was on; None when unknown
    device: str | None  # "cpu", "cuda" or "mps"; None when unknown


@dataclass
class Project:
    """A parsed, validated project file (see the module docstring for the format)."""

    source: ProjectSource
    model: ProjectModel
    calibration: Calibration
    objects: list[TrackedObject]
    history: list[Action]
    sam2web_version: str = __version__
    sam2_version: str | None = None
    created: str = field(default_factory=lambda: _now())
    behaviour: dict = field(default_factory=dict)  # BEHAVIOUR_KEYS present, as JSON

    def to_dict(self) -> dict:
        cal = self.calibration
        extra = {k: self.behaviour[k] for k in BEHAVIOUR_KEYS if k in self.behaviour}
        source = {
            "name": self.source.name,
            "sha256": self.source.sha256,
            "num_frames": self.source.num_frames,
            "width": self.source.width,
            "height": self.source.height,
            "fps": self.source.fps,
            "kind": self.source.kind,
        }
        if self.source.channel is not None or self.source.axis is not None:
            source["channel"] = self.source.channel
            source["axis"] = self.source.axis
        return {
            "format": FORMAT,
            "version": self.version(),
            "sam2web_version": self.sam2web_version,
            "sam2_version": self.sam2_version,
            "created": self.created,
            "source": source,
            "model": {
                "key": self.model.key,
                "label": self.model.label,
                "checkpoint_identity": self.model.checkpoint_identity,
                "resolution": self.model.resolution,
                "corrections": self.model.corrections,
                "bf16": self.model.bf16,
                "device": self.model.device,
            },
            "calibration": {
                "pixels_per_unit": cal.pixels_per_unit,
                "unit": cal.unit,
                "fps": cal.fps,
            },
            "objects": [
                {"id": o.obj_id, "name": o.name, "color": list(o.color)} for o in self.objects
            ],
            "history": [to_json(action) for action in self.history],
            **extra,
        }

    def version(self) -> int:
        """The oldest format version that holds this project: 1 unless it uses a mask
        prompt, an identity fix, a stack choice or zones (version 2)."""
        if self.source.channel is not None or self.source.axis is not None:
            return 2
        if any(k in self.behaviour for k in BEHAVIOUR_KEYS):
            return 2
        return 1 if all(a.op in VERSION_1_OPS for a in self.history) else 2

    def replay_steps(self) -> int:
        """Units of work a replay reports: one per action, one per tracked frame."""
        return sum(a.frames if isinstance(a, Propagate) else 1 for a in self.history)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sam2_version() -> str | None:
    """Installed version of the sam2 package, or None when it is not installed."""
    try:
        return importlib.metadata.version("sam2")
    except importlib.metadata.PackageNotFoundError:
        return None


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- saving
def build_project(
    info: VideoInfo,
    source_sha256: str | None,
    model: ProjectModel,
    calibration: Calibration | None,
    objects: list[TrackedObject],
    history: list[Action],
    behaviour: dict | None = None,
    stack_choice: tuple[int | str | None, str | None] = (None, None),
) -> dict:
    """A project as a JSON-ready dict (see the module docstring), from a session's video
    facts, model record, objects and history (empty before any object was added), its
    zones and behaviour settings; ``stack_choice`` is the (channel, axis) a microscopy TIFF
    was read with."""
    if len(history) > MAX_HISTORY:
        raise ProjectError(
            f"This session has {len(history):,} steps, more than a project file can hold "
            f"({MAX_HISTORY:,}); reset and track again with fewer clicks."
        )
    project = Project(
        source=ProjectSource(
            name=info.source_name,
            sha256=source_sha256,
            num_frames=info.num_frames,
            width=info.width,
            height=info.height,
            fps=float(info.fps),
            kind=info.kind,
            channel=stack_choice[0],
            axis=stack_choice[1],
        ),
        model=model,
        calibration=calibration or Calibration(),
        objects=[TrackedObject(o.obj_id, o.name, tuple(o.color)) for o in objects],
        history=list(history),
        sam2_version=sam2_version(),
        behaviour=dict(behaviour or {}),
    )
    return project.to_dict()


def dumps_project(data: dict) -> str:
    """Project JSON text: indented, with one object and one history step per line, so long
    histories stay compact and diffs show one line per action."""
    fields = []
    for key, value in data.items():
        name = json.dumps(key, ensure_ascii=False)
        if key in ("objects", "history") and isinstance(value, list) and value:
            items = ",\n    ".join(
                json.dumps(item, ensure_ascii=False, allow_nan=False) for item in value
            )
            fields.append(f"  {name}: [\n    {items}\n  ]")
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
            fields.append(f"  {name}: " + text.replace("\n", "\n  "))
    return "{\n" + ",\n".join(fields) + "\n}\n"


def save_project(data: dict, path: Path | str) -> Path:
    """Write a project dict (:func:`build_project`) to ``path`` (UTF-8 JSON, replaced
    atomically)."""
    text = dumps_project(data)
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


# ---------------------------------------------------------------------------- loading
def load_project(path: Path | str) -> Project:
    """Read and validate a project file. Raises :class:`ProjectError` with one sentence."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        if size > MAX_PROJECT_BYTES:
            raise _too_large(name)
        with path.open("rb") as fh:
            raw = fh.read(MAX_PROJECT_BYTES + 1)
    except OSError:
        log.info("cannot read project file %s", path, exc_info=True)
        raise ProjectError(
            f"The project file {name} cannot be read; check that it exists and is accessible."
        ) from None
    return parse_project(_decode_json(raw, name), name)


def _too_large(name: str) -> ProjectError:
    return ProjectError(
        f"The project file {name} is larger than any sam2web project "
        f"({MAX_PROJECT_BYTES / (1024 * 1024):g} MB at most); choose a {PROJECT_FILENAME} "
        "file saved by sam2web."
    )


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a number JSON allows")


def _decode_json(raw: bytes, name: str) -> Any:
    if len(raw) > MAX_PROJECT_BYTES:  # grew after it was measured
        raise _too_large(name)
    try:
        return json.loads(raw.decode("utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProjectError(
            f"The file {name} is not a sam2web project (it is not valid JSON text); choose a "
            f"{PROJECT_FILENAME} file saved by sam2web."
        ) from None


class _Checker:
    """Type and range checks that end in one sentence naming the bad field."""

    def __init__(self, name: str):
        self.name = name

    def fail(self, what: str) -> ProjectError:
        return ProjectError(
            f"The project file {self.name} is damaged or was edited by hand ({what}); save "
            "the project again from sam2web."
        )

    def obj(self, data: Any, where: str) -> dict:
        if not isinstance(data, dict):
            raise self.fail(f"{where} is not a JSON object")
        return data

    def get(self, data: dict, key: str, where: str) -> Any:
        if key not in data:
            raise self.fail(f"{where} has no '{key}'")
        return data[key]

    def as_int(self, value: Any, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where} is not a whole number")
        if not low <= value <= high:
            raise self.fail(f"{where} is {value}, outside {low} to {high}")
        return value

    def as_num(self, value: Any, where: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{where} is not a number")
        value = float(value)
        if not (math.isfinite(value) and low <= value <= high):
            raise self.fail(f"{where} is {value:g}, outside {low:g} to {high:g}")
        return value

    def as_bool(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{where} is not true or false")
        return value

    def as_str(
        self, value: Any, where: str, max_chars: int = MAX_TEXT_CHARS, empty: bool = False
    ) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where} is not text")
        if len(value) > max_chars:
            raise self.fail(f"{where} is longer than {max_chars} characters")
        if not empty and not value.strip():
            raise self.fail(f"{where} is empty")
        return value

    def opt_str(self, value: Any, where: str) -> str | None:
        return None if value is None else self.as_str(value, where)

    def hex(self, value: Any, where: str, digits: int) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) != digits or not _HEX.fullmatch(value):
            raise self.fail(f"{where} is not {digits} lowercase hex digits")
        return value

    def name_text(self, value: Any, where: str) -> str:
        text = self.as_str(value, where, MAX_NAME_CHARS)
        if not text.isprintable():
            raise self.fail(f"{where} holds control characters")
        return text


def parse_project(data: Any, name: str = PROJECT_FILENAME) -> Project:
    """Validate a decoded project (``json.load`` output) and return it as a :class:`Project`.

    ``name`` is the file name used in messages. Raises :class:`ProjectError`.
    """
    c = _Checker(name)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProjectError(
            f"The file {name} is not a sam2web project; choose a {PROJECT_FILENAME} file "
            "saved by sam2web."
        )
    version = c.get(data, "version", "the file")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise c.fail("its format version is not a positive whole number")
    if version > VERSION:
        raise ProjectError(
            f"The project file {name} was saved by a newer sam2web (format version {version}, "
            f"this one reads version {VERSION}); update sam2web to open it."
        )

    source = _parse_source(c, c.obj(c.get(data, "source", "the file"), "'source'"))
    model = _parse_model(c, c.obj(c.get(data, "model", "the file"), "'model'"))
    calibration = _parse_calibration(
        c, c.obj(c.get(data, "calibration", "the file"), "'calibration'")
    )

    objects_raw = c.get(data, "objects", "the file")
    if not isinstance(objects_raw, list):
        raise c.fail("'objects' is not a list")
    if len(objects_raw) > MAX_OBJECTS:
        raise c.fail(f"it lists {len(objects_raw):,} objects, more than {MAX_OBJECTS:,}")
    objects = [_parse_object(c, item, i) for i, item in enumerate(objects_raw)]

    history_raw = c.get(data, "history", "the file")
    if not isinstance(history_raw, list):
        raise c.fail("'history' is not a list")
    if len(history_raw) > MAX_HISTORY:
        raise c.fail(f"its history has {len(history_raw):,} steps, more than {MAX_HISTORY:,}")
    steps = [_parse_step(c, item, i, source) for i, item in enumerate(history_raw)]
    history = [from_json(step) for step in steps]
    _check_object_ids(c, history, objects)

    return Project(
        source=source,
        model=model,
        calibration=calibration,
        objects=objects,
        history=history,
        sam2web_version=c.as_str(c.get(data, "sam2web_version", "the file"), "'sam2web_version'"),
        sam2_version=c.opt_str(c.get(data, "sam2_version", "the file"), "'sam2_version'"),
        created=c.as_str(c.get(data, "created", "the file"), "'created'"),
        behaviour=_parse_behaviour(c, data),
    )


def _parse_behaviour(c: _Checker, data: dict) -> dict:
    """The optional keys of format version 2, as JSON; their content is checked where the
    zones are made (:meth:`sam2web.session.behaviour.BehaviourSetup.from_project`)."""
    extra = {k: data[k] for k in BEHAVIOUR_KEYS if k in data}
    if not isinstance(extra.get("zones", []), list):
        raise c.fail("'zones' is not a list")
    for key in ("zone_membership", "ruler"):
        if extra.get(key) is not None:
            c.obj(extra[key], f"'{key}'")
    return extra


def _parse_source(c: _Checker, d: dict) -> ProjectSource:
    def get(key):
        return c.get(d, key, "'source'")

    return ProjectSource(
        name=c.as_str(get("name"), "the source name"),
        sha256=c.hex(get("sha256"), "the source sha256", 64),
        num_frames=c.as_int(get("num_frames"), "the source frame count", 1, MAX_FRAMES),
        width=c.as_int(get("width"), "the source width", 1, MAX_SIDE),
        height=c.as_int(get("height"), "the source height", 1, MAX_SIDE),
        fps=c.as_num(get("fps"), "the source frame rate", 1e-6, 1e6),
        kind=c.as_str(get("kind"), "the source kind"),
        channel=_parse_channel(c, d.get("channel")),
        axis=_parse_axis(c, d.get("axis")),
    )


def _parse_channel(c: _Checker, value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return c.as_int(value, "the source channel", 0, 10_000)
    return c.name_text(value, "the source channel")


def _parse_axis(c: _Checker, value: Any) -> str | None:
    if value is None:
        return None
    if value not in ("T", "Z"):
        raise c.fail("the source axis is not T or Z")
    return value


def _parse_model(c: _Checker, d: dict) -> ProjectModel:
    def get(key):
        return c.get(d, key, "'model'")

    key = c.as_str(get("key"), "the model key")
    try:
        get_spec(key)
    except UserError:
        raise c.fail(f"the model {key!r} is not a known SAM2 model") from None
    resolution = c.as_int(get("resolution"), "the model resolution", 64, 8192)
    if resolution % 32:
        raise c.fail(f"the model resolution {resolution} is not a multiple of 32")
    corrections = c.as_str(get("corrections"), "the corrections mode")
    if corrections not in ("keep", "upstream"):
        raise c.fail("the corrections mode is neither 'keep' nor 'upstream'")
    bf16 = get("bf16")
    device = get("device") if "device" in d else None
    return ProjectModel(
        key=get_spec(key).key,
        label=c.as_str(get("label"), "the model label"),
        checkpoint_identity=c.hex(get("checkpoint_identity"), "the checkpoint identity", 16),
        resolution=resolution,
        corrections=corrections,
        bf16=None if bf16 is None else c.as_bool(bf16, "the model's bf16 flag"),
        device=c.opt_str(device, "the model device"),
    )


def _parse_calibration(c: _Checker, d: dict) -> Calibration:
    ppu = c.get(d, "pixels_per_unit", "'calibration'")
    unit = c.get(d, "unit", "'calibration'")
    fps = c.get(d, "fps", "'calibration'")
    try:
        return Calibration(pixels_per_unit=ppu, unit=unit, fps=fps)
    except UserError as err:
        raise c.fail("its calibration is invalid: " + as_clause(err.message)) from None


def _parse_object(c: _Checker, item: Any, i: int) -> TrackedObject:
    where = f"object {i + 1} in 'objects'"
    d = c.obj(item, where)
    obj_id = c.as_int(c.get(d, "id", where), f"the id of {where}", 1, MAX_HISTORY)
    name = c.name_text(c.get(d, "name", where), f"the name of {where}")
    color = c.get(d, "color", where)
    if not isinstance(color, list) or len(color) != 3:
        raise c.fail(f"the colour of {where} is not a list of three numbers")
    rgb = tuple(c.as_int(v, f"the colour of {where}", 0, 255) for v in color)
    return TrackedObject(obj_id, name, rgb)  # type: ignore[arg-type]


def _parse_step(c: _Checker, item: Any, i: int, source: ProjectSource) -> dict:
    """One history step, checked against the project's own video size and normalised to
    exactly the fields the replay uses."""
    where = f"history step {i + 1}"
    d = c.obj(item, where)
    op = c.get(d, "op", where)
    if op not in KINDS:
        raise c.fail(f"{where} has the unknown action {str(op)[:40]!r}")
    where = f"history step {i + 1} ({op})"
    last = source.num_frames - 1

    def get(key):
        return c.get(d, key, where)

    def frame(key="frame"):
        return c.as_int(get(key), f"the frame of {where}", 0, last)

    def obj():
        return c.as_int(get("obj"), f"the object of {where}", 1, MAX_HISTORY)

    def coord(key, size):
        return c.as_num(get(key), f"{key} of {where}", 0.0, float(size))

    if op in ("add_object", "rename_object"):
        return {"op": op, "obj": obj(), "name": c.name_text(get("name"), f"the name in {where}")}
    if op == "remove_object":
        return {"op": op, "obj": obj()}
    if op == "click":
        return {
            "op": op,
            "frame": frame(),
            "obj": obj(),
            "x": coord("x", source.width),
            "y": coord("y", source.height),
            "positive": c.as_bool(get("positive"), f"'positive' of {where}"),
        }
    if op == "box":
        return {
            "op": op,
            "frame": frame(),
            "obj": obj(),
            "x0": coord("x0", source.width),
            "y0": coord("y0", source.height),
            "x1": coord("x1", source.width),
            "y1": coord("y1", source.height),
        }
    if op in ("undo", "clear"):
        return {"op": op, "frame": frame(), "obj": obj()}
    if op != "propagate":
        return _parse_v2_step(c, d, op, where, source)
    passes_raw = get("passes")
    if not isinstance(passes_raw, list) or len(passes_raw) > MAX_PASSES:
        raise c.fail(f"'passes' of {where} is not a list of at most {MAX_PASSES} passes")
    passes = []
    for p in passes_raw:
        p = c.obj(p, f"a pass of {where}")
        start = c.as_int(c.get(p, "start", where), f"the start frame of {where}", 0, last)
        reverse = c.as_bool(c.get(p, "reverse", where), f"'reverse' of {where}")
        room = start + 1 if reverse else source.num_frames - start
        frames = c.as_int(c.get(p, "frames", where), f"the frame count of {where}", 0, room)
        passes.append({"start": start, "reverse": reverse, "frames": frames})
    return {"op": op, "passes": passes}


def _parse_v2_step(c: _Checker, d: dict, op: str, where: str, source: ProjectSource) -> dict:
    """A step of the operations version 2 added: mask prompts and identity fixes."""

    def ident(key):
        return c.as_int(c.get(d, key, where), f"'{key}' of {where}", 1, MAX_HISTORY)

    def frame():
        return c.as_int(c.get(d, "frame", where), f"the frame of {where}", 0, source.num_frames - 1)

    if op == "mask":
        rle = c.as_str(c.get(d, "rle", where), f"the mask of {where}", MAX_PROJECT_BYTES)
        try:
            decode_mask(rle, source.height, source.width)
        except ValueError:
            raise c.fail(f"the mask of {where} is not a mask of the video's size") from None
        return {"op": op, "frame": frame(), "obj": ident("obj"), "rle": rle}
    if op == "swap":
        return {"op": op, "a": ident("a"), "b": ident("b"), "frame": frame()}
    if op == "merge":
        return {"op": op, "target": ident("target"), "source": ident("source"), "frame": frame()}
    if op == "fill_gaps":
        return {"op": op, "frames": c.as_int(c.get(d, "frames", where), where, 0, 1000)}
    return {"op": op}  # undo_fix


def _action_objects(action: Action) -> tuple[int, ...]:
    """The object ids a history step refers to (none for tracking runs and settings)."""
    if isinstance(action, SwapObjects):
        return (action.a, action.b)
    if isinstance(action, MergeObjects):
        return (action.target, action.source)
    obj = getattr(action, "obj", None)
    return () if obj is None else (obj,)


def _check_object_ids(c: _Checker, history: list[Action], objects: list[TrackedObject]) -> None:
    """Ids are handed out 1, 2, 3, ... by add_object; every other step names a live object,
    and the objects left at the end are the ones listed."""
    next_id = 1
    live: set[int] = set()
    for i, action in enumerate(history):
        if isinstance(action, Propagate):
            continue
        if isinstance(action, AddObject):
            if action.obj != next_id:
                raise c.fail(f"history step {i + 1} adds object {action.obj}, expected {next_id}")
            live.add(action.obj)
            next_id += 1
        elif any(obj not in live for obj in _action_objects(action)):
            obj = next(obj for obj in _action_objects(action) if obj not in live)
            raise c.fail(
                f"history step {i + 1} ({action.op}) refers to object {obj}, which does "
                "not exist at that point"
            )
        elif isinstance(action, RemoveObject):
            live.discard(action.obj)
    listed = [o.obj_id for o in objects]
    if sorted(listed) != sorted(live) or len(set(listed)) != len(listed):
        raise c.fail("its object list does not match the objects its history creates")


# ---------------------------------------------------------------------------- checking
def check_source(project: Project, info, sha256: str | None, strict: bool = True) -> list[str]:
    """Whether the loaded video fits the project. Frame count and size must always match;
    with ``strict`` the file's SHA-256 must match too. Returns notes for the user."""
    src = project.source
    if (info.num_frames, info.width, info.height) != (src.num_frames, src.width, src.height):
        raise ProjectError(
            f"This project was made on {src.name}, {_clip(src.num_frames, src.width, src.height)}"
            f", but the loaded video has {_clip(info.num_frames, info.width, info.height)}; "
            "load a video of the same length and size."
        )
    notes = []
    if src.sha256 and sha256 and src.sha256 != sha256:
        if strict:
            raise ProjectError(
                f"This project was made on a different file ({src.name}) than the loaded "
                "video, though both have the same length and size; load the original video "
                "to reproduce the project."
            )
        notes.append(
            f"The project was made on {src.name}; its clicks are replayed on this "
            "video at the same frames and positions."
        )
    if not math.isclose(src.fps, info.fps, rel_tol=1e-6):
        notes.append(
            f"The project's video ran at {src.fps:g} frames per second, this one at "
            f"{info.fps:g}; time stamps follow this video."
        )
    return notes


def stack_notes(project: Project, stack_choice: tuple) -> list[str]:
    """A note when the loaded file was opened with another channel or axis than the
    project's (the replay still runs: the frames have the project's count and size)."""
    saved = (project.source.channel, project.source.axis)
    if saved == (None, None) or tuple(stack_choice) == saved:
        return []
    channel = "the file's own" if saved[0] is None else str(saved[0])
    axis = "the file's own" if saved[1] is None else saved[1]
    return [
        f"The project was made on channel {html.escape(channel)} along axis {axis}; the "
        "loaded file was opened otherwise, so its clicks land on other pixels."
    ]


def _clip(frames: int, width: int, height: int) -> str:
    return f"{frames} frame{'s' if frames != 1 else ''} of {width}x{height} pixels"


def model_notes(project: Project, current: ProjectModel) -> list[str]:
    """Sentences saying how the model now differs from the one the project was made with
    (each difference can change the masks)."""
    saved = project.model
    notes = []
    if saved.key != current.key:
        notes.append(
            f"The project was made with {get_spec(saved.key).name}, this server runs "
            f"{get_spec(current.key).name}; masks will differ."
        )
    elif (
        saved.checkpoint_identity
        and current.checkpoint_identity
        and saved.checkpoint_identity != current.checkpoint_identity
    ):
        notes.append(
            "The project was made with a different checkpoint file of the same "
            "model; masks may differ."
        )
    if saved.resolution != current.resolution:
        notes.append(
            f"The project was made at a processing resolution of {saved.resolution} "
            f"px, this server uses {current.resolution} px; masks will differ."
        )
    if saved.corrections != current.corrections:
        notes.append(
            f"The project was made with corrections mode '{saved.corrections}', this "
            f"server uses '{current.corrections}'; refinements may track differently."
        )
    if None not in (saved.device, current.device, saved.bf16, current.bf16) and (
        saved.device != current.device or saved.bf16 != current.bf16
    ):
        notes.append(
            f"The project ran on {_numerics(saved)}, this server on "
            f"{_numerics(current)}; masks may differ slightly."
        )
    if project.sam2_version and (ours := sam2_version()) and ours != project.sam2_version:
        notes.append(
            f"The project was made with sam2 {project.sam2_version}, this server has "
            f"sam2 {ours}; masks may differ slightly."
        )
    return notes


def _numerics(m: ProjectModel) -> str:
    return f"{m.device} with {'bfloat16' if m.bf16 else 'float32'}"
