"""Project files: a tracking job saved as versioned JSON (the file format only).

A project records the video it was made on (name, SHA-256, size, frame rate), the model
configuration, the calibration, the objects and the session's *history*: every action that
changed SAM2's state, in order (:mod:`sam2web.history`). Masks are not stored. This module
holds the records, writes the file and checks a loaded project against the video and model;
:mod:`sam2web.session.projectload` reads and validates the file. Replaying it is the user
session's job (:meth:`sam2web.session.user.UserSession.load_project`, with
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
"cuda" or "mps"); ``checkpoint_identity`` is :func:`sam2web.tracking.checkpoints.checkpoint_identity`.

Version 2 adds, and a file is written as version 2 only when it uses one of them: the
operations ``mask`` {frame, obj, rle} (a mask prompt; ``rle`` is the ``counts`` string of a
compressed COCO run-length encoding of the frame's size, checked on loading before any
decoder sees it), ``swap`` {a, b, frame}, ``merge`` {target, source, frame}, ``undo_fix`` {} and
``fill_gaps`` {frames}, ``find`` {frame, how, prompt, picked, count, min_area, max_area,
threshold, polarity, split_depth} (how the objects of the ``2 * len(picked)`` steps before it
were found; see :class:`sam2web.history.FindObjects`); and ``source.channel`` / ``source.axis``, the choice a
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
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..analysis.tables import Calibration
from ..errors import UserError
from ..fileio import atomic_output
from ..history import VERSION_1_OPS, Action, Propagate, to_json
from ..tracking.checkpoints import get_spec
from ..types import TrackedObject, VideoInfo

FORMAT = "sam2web-project"
VERSION = 2  # the newest format read; a file is written as version 1 when it can be
PROJECT_FILENAME = "sam2web_project.json"
# Optional top-level keys of version 2 (zones and behaviour settings, checked by
# :meth:`sam2web.session.behaviour.BehaviourSetup.from_project`).
BEHAVIOUR_KEYS = ("zones", "zone_membership", "pair_distance", "ruler")

MAX_HISTORY = 100_000  # steps; a long manual session has a few thousand


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
    # Every frame_step-th frame of the file was read (media.ingest's frame step); the
    # history's frames and num_frames count the frames read.
    frame_step: int = 1


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
        if self.source.frame_step != 1:
            source["frame_step"] = self.source.frame_step
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
        prompt, an identity fix, a stack choice, a frame step or zones (version 2)."""
        if self.source.channel is not None or self.source.axis is not None:
            return 2
        if self.source.frame_step != 1:
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
            frame_step=info.frame_step,
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


# ---------------------------------------------------------------------------- checking
def check_source(project: Project, info, sha256: str | None, strict: bool = True) -> list[str]:
    """Whether the loaded video fits the project. Frame count and size must always match;
    with ``strict`` the file's SHA-256 must match too. Returns notes for the user."""
    src = project.source
    check_step(project, info.frame_step)
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


def check_step(project: Project, frame_step: int) -> None:
    """Refuse a video read with another frame step than the project's: its frames would
    be other frames of the original."""
    saved = project.source.frame_step
    if frame_step != saved:
        raise ProjectError(
            f"This project was tracked with frame step {saved} (one frame in every {saved}), "
            f"but the loaded video was read with frame step {frame_step}; read the video "
            f"again with frame step {saved} and load the project."
        )


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
