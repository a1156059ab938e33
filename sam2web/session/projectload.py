"""Reading a project file: :func:`load_project` and :func:`parse_project`.

Every field of the JSON is checked before anything uses it: the source video, the model
record, the calibration, the objects, each history step of format version 1 and 2
(checked against the project's own video size, and normalised to the fields the replay
uses), the object ids the steps refer to, and the shape of the optional zones keys, all
within the limits below. Nothing is decoded or allocated from a size the file claims: a
mask prompt's size is counted from its run-length string here and the mask is decoded only
when it is replayed, after the loaded video was compared with the project's
(:func:`sam2web.session.project.check_source`, or a batch's
:func:`sam2web.session.batch.fit_project`, which decodes it at the target video's size). A bad file ends in one :class:`~sam2web.session.project.ProjectError`
sentence naming the bad field. The format itself is described in
:mod:`sam2web.session.project`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from ..analysis.tables import Calibration
from ..errors import UserError, as_clause
from ..history import (
    KINDS,
    Action,
    AddObject,
    MergeObjects,
    Propagate,
    RemoveObject,
    SwapObjects,
    from_json,
    rle_size,
)
from ..media.ingest import MAX_FRAME_STEP
from ..tracking.checkpoints import get_spec
from ..types import TrackedObject
from .project import (
    BEHAVIOUR_KEYS,
    FORMAT,
    MAX_HISTORY,
    PROJECT_FILENAME,
    VERSION,
    Project,
    ProjectError,
    ProjectModel,
    ProjectSource,
)

log = logging.getLogger(__name__)

# What a file may hold (the history's length, also checked on saving, is
# :data:`sam2web.session.project.MAX_HISTORY`).
MAX_PROJECT_BYTES = 20 * 1024 * 1024
MAX_OBJECTS = 1_000
MAX_PASSES = 4  # passes per propagate step (sam2web makes at most 2)
MAX_NAME_CHARS = 80  # object names, as the session keeps them
MAX_TEXT_CHARS = 300  # file names, versions, time stamps
MAX_FRAMES = 10_000_000
MAX_SIDE = 100_000  # pixels

_HEX = re.compile(r"[0-9a-f]+")


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
    except MemoryError:
        raise ProjectError(
            f"The project file {name} holds more items than this server has memory for "
            f"(it is under {MAX_PROJECT_BYTES / (1024 * 1024):g} MB, but no sam2web project is "
            "built like it); choose a project file saved by sam2web."
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
        frame_step=c.as_int(d.get("frame_step", 1), "the source frame step", 1, MAX_FRAME_STEP),
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
        _check_mask_size(c, rle, where, source)
        return {"op": op, "frame": frame(), "obj": ident("obj"), "rle": rle}
    if op == "swap":
        return {"op": op, "a": ident("a"), "b": ident("b"), "frame": frame()}
    if op == "merge":
        return {"op": op, "target": ident("target"), "source": ident("source"), "frame": frame()}
    if op == "fill_gaps":
        return {"op": op, "frames": c.as_int(c.get(d, "frames", where), where, 0, 1000)}
    if op == "find":
        return _parse_find(c, d, where, frame())
    return {"op": op}  # undo_fix


def _parse_find(c: _Checker, d: dict, where: str, frame: int) -> dict:
    """A record of objects found by a finder (:class:`sam2web.history.FindObjects`)."""

    def get(key):
        return c.get(d, key, where)

    how = get("how")
    prompt = get("prompt")
    polarity = get("polarity")
    if how not in ("motion", "contrast") or prompt not in ("box", "mask"):
        raise c.fail(f"{where} names an unknown finder or prompt")
    if polarity not in ("bright", "dark"):
        raise c.fail(f"{where} names an unknown polarity")
    count = c.as_int(get("count"), f"the count of {where}", 1, MAX_HISTORY)
    picked = get("picked")
    if not isinstance(picked, list) or not 1 <= len(picked) <= count:
        raise c.fail(f"the picked proposals of {where} are not a list of 1 to {count}")
    picked = [c.as_int(p, f"a picked proposal of {where}", 1, count) for p in picked]
    if len(set(picked)) != len(picked):
        raise c.fail(f"the picked proposals of {where} repeat one")
    max_area = get("max_area")
    threshold = get("threshold")
    return {
        "op": "find",
        "frame": frame,
        "how": how,
        "prompt": prompt,
        "picked": picked,
        "count": count,
        "min_area": c.as_int(get("min_area"), f"the minimum area of {where}", 1, 2**40),
        "max_area": None
        if max_area is None
        else c.as_int(max_area, f"the maximum area of {where}", 1, 2**40),
        "threshold": None
        if threshold is None
        else c.as_num(threshold, f"the threshold of {where}", 0.0, 255.0),
        "polarity": polarity,
        "split_depth": c.as_num(get("split_depth"), f"the split depth of {where}", 0.0, 1000.0),
    }


def _check_mask_size(c: _Checker, rle: str, where: str, source: ProjectSource) -> None:
    """The pixels a mask's run-length string covers must be the project video's frame
    size; they are counted from the string (nothing of the claimed size is made here: the
    mask is decoded only on replay, after the video was compared with the project's)."""
    pixels = source.width * source.height
    try:
        covered = rle_size(rle, pixels)
    except ValueError:
        covered = None
    if covered != pixels:
        raise c.fail(
            f"the mask of {where} is not a mask of the video's size, "
            f"{source.width}x{source.height} pixels"
        )


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
