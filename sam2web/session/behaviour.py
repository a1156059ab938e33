"""Zones, a ruler, pairs of objects, occupancy and label stacks for one session's results.

:class:`BehaviourSetup` is what a user chose (named zones, how membership is decided, the
distance that counts as "close" for pairs, a ruler drawn on the frame); it is saved in the
project as optional top-level keys (:meth:`BehaviourSetup.to_json`). :class:`ZoneDraft`
collects the clicks that draw a zone or the ruler on the frame. :func:`write_behaviour`
writes every table and picture from a session's measurement rows (zones, pair distances,
nearest neighbours, per-object occupancy heatmaps), :func:`write_label_stacks` the masks
as label images for napari or Fiji. Coordinates are (x, y) pixels of the original frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..analysis.calibrate import ruler_pixels_per_unit
from ..analysis.heatmap import occupancy, render_heatmap, save_png, write_occupancy_csv
from ..analysis.pairs import (
    PairSummary,
    nearest_neighbours,
    pair_distances,
    pair_summaries,
    write_nearest_csv,
    write_pair_distances_csv,
    write_pair_summary_csv,
)
from ..analysis.tables import Calibration
from ..analysis.zones import (
    Circle,
    Polygon,
    Rect,
    Zone,
    rect_arena_zones,
    round_arena_zones,
    zones_from_json,
    zones_to_json,
)
from ..analysis.zonestats import ZoneStats, write_zone_csv, zone_stats
from ..errors import PromptError, UserError, as_clause
from ..outputs.labelstack import write_ctc, write_label_tiff
from ..outputs.render import draw_zones
from ..tracking.maskstore import MaskReader
from ..types import Measurement, VideoInfo
from .project import Project, ProjectError

# What a click on the frame draws; "objects" leaves clicks to the objects' prompts.
CLICK_TARGETS = (
    "objects",
    "ruler",
    "rectangle",
    "circle",
    "polygon",
    "round arena",
    "square arena",
)
# Shapes finished with "close" rather than by a fixed number of clicks.
CLOSED_BY_BUTTON = ("polygon", "round arena", "square arena")
HEATMAP_BINS = 32
RULER_COLOR = (0, 230, 255)

FILES = {
    "zones": "zones.csv",
    "pairs": "pair_distances.csv",
    "pair_summary": "pair_summary.csv",
    "nearest": "nearest_neighbours.csv",
    "labels_tiff": "labels.tif",
    "ctc": "labels_ctc.zip",
}


def heatmap_png(obj_id: int) -> str:
    return f"heatmap_object{int(obj_id)}.png"


def occupancy_csv(obj_id: int) -> str:
    return f"occupancy_object{int(obj_id)}.csv"


def _number(value, what: str, example: str) -> float:
    if isinstance(value, bool):
        raise PromptError(f"The {what} must be a number, for example {example}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PromptError(f"The {what} must be a number, for example {example}.") from None
    if not math.isfinite(number):
        raise PromptError(f"The {what} must be a number, for example {example}.")
    return number


def optional_number(text, what: str, example: str) -> float | None:
    """A number typed in a box, or None for an empty box."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    return _number(text, what, example)


@dataclass(frozen=True)
class Ruler:
    """Two points on the frame that are ``distance`` ``unit`` apart."""

    x0: float
    y0: float
    x1: float
    y1: float
    distance: float
    unit: str

    def __post_init__(self):
        ruler_pixels_per_unit((self.x0, self.y0), (self.x1, self.y1), self.distance)
        if not isinstance(self.unit, str) or not self.unit.strip():
            raise PromptError("Give the ruler's unit, for example mm.")

    @property
    def pixels_per_unit(self) -> float:
        return ruler_pixels_per_unit((self.x0, self.y0), (self.x1, self.y1), self.distance)

    def calibration(self, fps: float | None = None) -> Calibration:
        return Calibration(pixels_per_unit=self.pixels_per_unit, unit=self.unit.strip(), fps=fps)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(data: dict) -> Ruler:
        keys = ("x0", "y0", "x1", "y1", "distance", "unit")
        if not isinstance(data, dict) or set(data) != set(keys):
            raise PromptError("The ruler needs x0, y0, x1, y1, distance and unit.")
        return Ruler(*(data[k] for k in keys))


@dataclass(frozen=True)
class BehaviourSetup:
    """Zones and settings of the behaviour outputs. ``min_overlap`` None: an object is in a
    zone when its centroid is; else when at least that fraction of its mask is.
    ``pair_within``: the distance (calibrated unit, else pixels) that counts as close."""

    zones: tuple[Zone, ...] = ()
    min_overlap: float | None = None
    pair_within: float | None = None
    ruler: Ruler | None = None

    def __post_init__(self):
        # Checks the names are unique and that there are at most MAX_ZONES.
        zones = tuple(zones_from_json(zones_to_json(self.zones)))
        object.__setattr__(self, "zones", zones)
        if self.min_overlap is not None:
            f = _number(self.min_overlap, "overlap fraction", "0.5")
            if not 0 < f <= 1:
                raise PromptError("The overlap fraction must be above 0 and at most 1.")
            object.__setattr__(self, "min_overlap", f)
        if self.pair_within is not None:
            d = _number(self.pair_within, "pair distance", "20")
            if d < 0:
                raise PromptError("The pair distance must be at least 0.")
            object.__setattr__(self, "pair_within", d)

    @property
    def empty(self) -> bool:
        return self == BehaviourSetup()

    def with_zones(self, *zones: Zone) -> BehaviourSetup:
        """Add zones; a zone with the name of an existing one replaces it."""
        names = {z.name for z in zones}
        kept = tuple(z for z in self.zones if z.name not in names)
        return dataclasses.replace(self, zones=kept + tuple(zones))

    def without_zone(self, name: str) -> BehaviourSetup:
        if name not in {z.name for z in self.zones}:
            raise PromptError("There is no zone of that name; pick one from the list.")
        return dataclasses.replace(self, zones=tuple(z for z in self.zones if z.name != name))

    def to_json(self) -> dict:
        """The project's optional top-level keys; an empty setup has none."""
        out: dict = {}
        if self.zones:
            out["zones"] = zones_to_json(self.zones)
        if self.min_overlap is not None:
            out["zone_membership"] = {"by": "overlap", "fraction": self.min_overlap}
        if self.pair_within is not None:
            out["pair_distance"] = self.pair_within
        if self.ruler is not None:
            out["ruler"] = self.ruler.to_json()
        return out

    @staticmethod
    def from_project(project: Project) -> BehaviourSetup:
        """The setup a project saved; raises ProjectError in one sentence when its zones,
        membership, pair distance or ruler are not valid."""
        try:
            return BehaviourSetup.from_json(project.behaviour)
        except UserError as err:
            raise ProjectError(
                "The project's zones or ruler cannot be used: " + as_clause(err.message) + "."
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProjectError(
                "The project's zones or ruler are damaged; save the project again from sam2web."
            ) from None

    @staticmethod
    def from_json(data: dict) -> BehaviourSetup:
        """From a project's top-level keys (missing keys: defaults). Raises PromptError,
        KeyError, TypeError or ValueError on malformed values."""
        membership = data.get("zone_membership") or {"by": "centroid"}
        if membership.get("by") not in ("centroid", "overlap"):
            raise PromptError("The zone membership must be by centroid or by overlap.")
        ruler = data.get("ruler")
        return BehaviourSetup(
            zones=tuple(zones_from_json(data.get("zones") or [])),
            min_overlap=membership["fraction"] if membership["by"] == "overlap" else None,
            pair_within=data.get("pair_distance"),
            ruler=None if ruler is None else Ruler.from_json(ruler),
        )


# ---------------------------------------------------------------------------- drawing zones
@dataclass
class ZoneDraft:
    """Clicks on the frame towards one zone (or the ruler) of kind ``target``."""

    target: str = "objects"
    points: list[tuple[float, float]] = field(default_factory=list)

    def add(self, target: str, x: float, y: float) -> None:
        if target not in CLICK_TARGETS or target == "objects":
            raise PromptError("Pick what a click on the frame draws: a zone shape or the ruler.")
        if target != self.target:
            self.target, self.points = target, []
        self.points.append((float(x), float(y)))

    def clear(self) -> None:
        self.points = []

    def finished(
        self, names: tuple[str, str], centre_fraction: float = 0.5
    ) -> tuple[Zone, ...] | None:
        """The zones the clicks so far make when they are complete without "close" (a
        rectangle or circle after two clicks, a square arena after four), else None.
        ``names``: the zone's name first; an arena's centre and periphery both. The clicks
        are dropped when they make no zone (two clicks on one spot), so the next click
        starts the shape again."""
        pts = self.points
        complete = len(pts) == (4 if self.target == "square arena" else 2)
        if self.target not in ("rectangle", "circle", "square arena") or not complete:
            return None
        try:
            if self.target == "rectangle":
                return (Rect(names[0], pts[0][0], pts[0][1], pts[1][0], pts[1][1]),)
            if self.target == "circle":
                r = math.hypot(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1])
                return (Circle(names[0], pts[0][0], pts[0][1], r),)
            return rect_arena_zones(pts, centre_fraction, names)
        except PromptError:
            self.clear()
            raise

    def close(self, names: tuple[str, str], centre_fraction: float = 0.5) -> tuple[Zone, ...]:
        """The zones of a shape finished with "close" (polygon, arena presets)."""
        pts = self.points
        if self.target == "polygon":
            return (Polygon(names[0], tuple(pts)),)
        if self.target == "round arena":
            if len(pts) < 3:
                raise PromptError("Click at least three points on the arena's rim, then close.")
            return round_arena_zones(pts, centre_fraction, names)
        if self.target == "square arena":
            return rect_arena_zones(pts, centre_fraction, names)
        raise PromptError("Only a polygon or an arena is closed; draw one first.")


def draw_setup(
    frame: np.ndarray,
    setup: BehaviourSetup,
    scale: float = 1.0,
    draft: ZoneDraft | None = None,
    names: bool = True,
) -> np.ndarray:
    """``frame`` (uint8 RGB, shown at ``scale`` times the original size) with the zones
    (:func:`draw_zones`), the ruler and the draft's clicks drawn on it."""
    out = draw_zones(frame, setup.zones, scale, names)
    thick = max(1, round(min(out.shape[:2]) / 300))
    if setup.ruler is not None:
        r = setup.ruler
        a, b = (
            (round(r.x0 * scale), round(r.y0 * scale)),
            (round(r.x1 * scale), round(r.y1 * scale)),
        )
        cv2.line(out, a, b, RULER_COLOR, thick + 1, cv2.LINE_AA)
        for p in (a, b):
            cv2.circle(out, p, thick + 3, RULER_COLOR, -1, cv2.LINE_AA)
    if draft is not None:
        pts = [(round(x * scale), round(y * scale)) for x, y in draft.points]
        for p, q in zip(pts, pts[1:], strict=False):
            cv2.line(out, p, q, RULER_COLOR, thick, cv2.LINE_AA)
        for p in pts:
            cv2.circle(out, p, thick + 3, RULER_COLOR, -1, cv2.LINE_AA)
    return out


@dataclass
class BehaviourState:
    """One user's zones and settings (:attr:`setup`), the clicks of the shape being drawn,
    and whether the overlay video shows the zones."""

    setup: BehaviourSetup = field(default_factory=BehaviourSetup)
    draft: ZoneDraft = field(default_factory=ZoneDraft)
    on_video: bool = False

    def click(self, target: str, x: float, y: float, name: str = "", fraction: float = 0.5) -> str:
        """A click at (x, y) towards a zone or the ruler; returns what happened."""
        self.draft.add(target, x, y)
        n = len(self.draft.points)
        if target == "ruler":
            if n > 2:
                self.draft.points = self.draft.points[-1:]
                return "Ruler: first end set; click the other end."
            if n == 2:
                return "Ruler drawn; enter the real distance and press Set scale from ruler."
            return "Ruler: first end set; click the other end."
        zones = self.draft.finished(self.names_for(target, name), fraction)
        if zones is None:
            more = " then press Close shape" if target in CLOSED_BY_BUTTON else ""
            return f"{target.capitalize()}: {n} point{'s' if n > 1 else ''} clicked{more}."
        return self.add(zones)

    def close(self, name: str, fraction: float = 0.5) -> str:
        """Finish a polygon or an arena from the clicks so far."""
        if self.draft.target == "ruler" or not self.draft.points:
            raise PromptError("Click the corners of a polygon or the rim of an arena first.")
        names = self.names_for(self.draft.target, name)
        return self.add(self.draft.close(names, fraction))

    def names_for(self, target: str, typed: str = "") -> tuple[str, str]:
        """Names for the shape being drawn: the zone's first, an arena's centre and
        periphery both. A typed name is used as given (an arena's zones become "NAME
        centre" and "NAME periphery"), so typing a zone's name again replaces that zone;
        without one, the shape's kind ("rectangle", or "centre" and "periphery"), numbered
        from 2 when the name is taken, so an unnamed zone never replaces another."""
        typed = (typed or "").strip()
        arena = target in ("round arena", "square arena")
        if typed:
            return (f"{typed} centre", f"{typed} periphery") if arena else (typed, typed)
        base = ("centre", "periphery") if arena else (target, target)
        taken = {z.name for z in self.setup.zones}
        number = 1
        while {self.numbered(b, number) for b in base} & taken:
            number += 1
        return (self.numbered(base[0], number), self.numbered(base[1], number))

    @staticmethod
    def numbered(name: str, number: int) -> str:
        return name if number == 1 else f"{name} {number}"

    def add(self, zones: Sequence[Zone]) -> str:
        taken = {z.name for z in self.setup.zones}
        self.setup = self.setup.with_zones(*zones)
        self.draft.clear()
        names = " and ".join(f"'{z.name}'" for z in zones)
        if any(z.name in taken for z in zones):
            return f"Zone {names} replaced (a zone of that name was there)."
        return f"Zone {names} added."

    def clear_zones(self) -> None:
        self.setup = dataclasses.replace(self.setup, zones=())
        self.draft.clear()

    def replace_zones(self, zones: Sequence[Zone]) -> None:
        self.setup = dataclasses.replace(self.setup, zones=tuple(zones))

    def set_options(
        self, by_overlap: bool, fraction, pair_within: float | None, on_video: bool
    ) -> None:
        """Membership by mask overlap (at least ``fraction`` of the mask) or by centroid,
        the pair distance, and whether the overlay video shows the zones."""
        self.setup = dataclasses.replace(
            self.setup,
            min_overlap=_number(fraction, "overlap fraction", "0.5") if by_overlap else None,
            pair_within=pair_within,
        )
        self.on_video = bool(on_video)

    def ruler(self, distance, unit: str) -> Ruler:
        """The ruler from the last two ruler clicks, ``distance`` ``unit`` long."""
        if self.draft.target != "ruler" or len(self.draft.points) != 2:
            raise PromptError("Pick Ruler, then click both ends of a known distance on the frame.")
        (x0, y0), (x1, y1) = self.draft.points
        ruler = Ruler(x0, y0, x1, y1, _number(distance, "real distance", "10"), unit)
        self.setup = dataclasses.replace(self.setup, ruler=ruler)
        self.draft.clear()
        return ruler


# ---------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class ExtraOutputs:
    """Outputs of a batch run beyond the standard ones: the zone, pair and heatmap files
    (always when the project has zones), the label stacks, and a pair distance that
    replaces the project's."""

    behaviour: bool = False
    label_stacks: bool = False
    pair_within: float | None = None


@dataclass(frozen=True)
class BehaviourOutputs:
    """What :func:`write_behaviour` computed and wrote."""

    zone_stats: list[ZoneStats]
    pair_summaries: list[PairSummary]
    files: dict[str, Path]  # key of :data:`FILES` or "heatmap <id>" / "occupancy <id>"
    heatmaps: list[tuple[Path, str]]  # (PNG, caption) per object


def write_behaviour(
    rows: Sequence[Measurement],
    object_names: dict[int, str],
    info: VideoInfo,
    cal: Calibration,
    setup: BehaviourSetup,
    first_frame: np.ndarray,
    out_dir: Path,
    masks: MaskReader | None = None,
) -> BehaviourOutputs:
    """Write the zone table (when there are zones), the pair tables (two or more objects)
    and an occupancy heatmap per object over ``first_frame`` into ``out_dir``. ``masks`` is
    needed for membership by overlap: the masks the rows were measured from (a session's
    view with its identity fixes applied, :func:`sam2web.analysis.identity.fixed_view`)."""
    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    stats: list[ZoneStats] = []
    if setup.zones:
        if setup.min_overlap is not None and masks is None:
            raise ValueError("membership by overlap needs the masks")
        stats = zone_stats(
            rows, setup.zones, cal, masks=masks, min_overlap=setup.min_overlap, fps=info.fps
        )
        files["zones"] = write_zone_csv(stats, out_dir / FILES["zones"])
    summaries: list[PairSummary] = []
    if len(object_names) >= 2:
        files["pairs"] = write_pair_distances_csv(
            pair_distances(rows, cal), out_dir / FILES["pairs"]
        )
        files["nearest"] = write_nearest_csv(
            nearest_neighbours(rows, cal), out_dir / FILES["nearest"]
        )
        if setup.pair_within is not None:
            summaries = pair_summaries(rows, setup.pair_within, cal, info.fps)
            files["pair_summary"] = write_pair_summary_csv(
                summaries, out_dir / FILES["pair_summary"]
            )
    heatmaps = []
    for obj_id, name in object_names.items():
        occ = occupancy(rows, obj_id, info.width, info.height, HEATMAP_BINS, cal, info.fps)
        png = save_png(
            draw_setup(render_heatmap(first_frame, occ), setup, names=False),
            out_dir / heatmap_png(obj_id),
        )
        files[f"heatmap {obj_id}"] = png
        files[f"occupancy {obj_id}"] = write_occupancy_csv(occ, out_dir / occupancy_csv(obj_id))
        heatmaps.append((png, f"{name}: {int(occ.counts.sum())} frames"))
    return BehaviourOutputs(stats, summaries, files, heatmaps)


def stack_info(info: VideoInfo, cal: Calibration) -> VideoInfo:
    """``info`` with the calibration's pixel size and frame rate, for label stacks."""
    changes: dict = {}
    if cal.calibrated:
        changes.update(pixel_size=1.0 / float(cal.pixels_per_unit), pixel_unit=cal.unit)
    if cal.fps is not None:
        changes.update(fps=float(cal.fps), fps_is_nominal=False)
    return dataclasses.replace(info, **changes)


def write_label_stacks(
    store: MaskReader,
    info: VideoInfo,
    cal: Calibration,
    out_dir: Path,
    object_ids: Iterable[int] | None = None,
) -> dict[str, Path]:
    """The masks of ``store`` (a session's view with its identity fixes applied) as one
    uint16 ImageJ TIFF stack and as a Cell Tracking Challenge zip."""
    info = stack_info(info, cal)
    ids = None if object_ids is None else list(object_ids)
    out_dir = Path(out_dir)
    tiff = write_label_tiff(store, info, out_dir / FILES["labels_tiff"], ids)
    ctc = out_dir / FILES["ctc"]
    write_ctc(store, info, ctc, ids)
    return {"labels_tiff": tiff, "ctc": ctc}


def zone_table(stats: Iterable[ZoneStats]) -> list[list]:
    """Rows for the page's zone table (:data:`ZONE_TABLE_HEADERS`)."""

    def num(v, digits=2):
        return "" if v is None else round(float(v), digits)

    return [
        [
            s.object_name, s.zone, num(s.time_in_zone_s), s.entries, num(s.latency_s),
            num(s.distance_inside), s.unit, num(s.mean_score_inside),
        ]
        for s in stats
    ]  # fmt: skip


ZONE_TABLE_HEADERS = (
    "object",
    "zone",
    "time in zone (s)",
    "entries",
    "latency (s)",
    "distance inside",
    "unit",
    "mean score inside",
)
