"""What each tracked object does in the named zones of :mod:`sam2web.analysis.zones`.

Per object and zone, :func:`zone_stats` counts, from a measurement table:

* frames and time inside (time = frames x the duration of one frame, 1 / fps);
* entries: the number of runs of consecutive inside frames, i.e. transitions from outside
  or absent into the zone; being inside at the object's first row counts as an entry
  (as SimBA counts ROI entries from bouts, so a bout that starts on the first frame is one);
  a frame where the object is absent ends a run, so fill short gaps first
  (:func:`sam2web.analysis.identity.fill_gaps`) when SAM2 loses an object briefly;
* latency: seconds from the first row of the table to the first inside frame;
* distance inside: the sum of centroid steps between neighbouring rows both inside;
* with SAM2's score: time inside counting only frames whose score logit is > 0 (a frame
  with an unknown score, e.g. a gap-filled one, is left out) and the mean score inside.

Membership is by centroid (default) or, with ``min_overlap``, by the fraction of the
object's mask that lies in the zone's mask. The masks come from any
:class:`~sam2web.tracking.maskstore.MaskReader` (a session passes the view with its
identity fixes applied, as its rows have them) or from (frame, object id, mask) triples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..errors import PromptError
from ..tracking.maskstore import MaskReader
from ..types import Measurement
from .rowtools import frame_seconds, frame_step, general, has_centroid, text, write_table
from .tables import Calibration, by_object
from .zones import Zone, check_number, check_unique_names

ZONE_COLUMNS = (
    "object_id",
    "object_name",
    "zone",
    "membership",
    "frames",
    "frames_inside",
    "fraction_inside",
    "time_in_zone_s",
    "time_scored_s",
    "entries",
    "latency_s",
    "distance_inside",
    "unit",
    "mean_score_inside",
)

MaskSource = MaskReader | Iterable[tuple[int, int, np.ndarray]]


# ---------------------------------------------------------------------------- membership
@dataclass(frozen=True)
class ZoneStats:
    """One object in one zone over the table's frames.

    ``membership`` is "centroid" or "overlap>=F". Times in seconds; ``distance_inside`` in
    ``unit`` ("px" uncalibrated). ``latency_s`` and ``mean_score_inside`` are None when the
    object never was inside (or no inside frame has a known score).
    """

    object_id: int
    object_name: str
    zone: str
    membership: str
    frames: int
    frames_inside: int
    fraction_inside: float
    time_in_zone_s: float
    time_scored_s: float
    entries: int
    latency_s: float | None
    distance_inside: float
    unit: str
    mean_score_inside: float | None


def _overlap_fractions(
    masks: MaskSource, zones: Sequence[Zone], wanted: set[tuple[int, int]], step: int = 1
) -> dict[tuple[int, int], np.ndarray]:
    """{(frame, object id): fraction of the mask's pixels inside each zone (len(zones),)}.

    Frames are the rows' (original) frame numbers; a :class:`MaskReader` holds frame
    ``frame // step`` of a video tracked every ``step``-th frame."""
    zone_masks: dict[tuple[int, int], np.ndarray] = {}

    def zone_stack(shape: tuple[int, int]) -> np.ndarray:
        if shape not in zone_masks:
            zone_masks[shape] = np.stack([z.mask(*shape) for z in zones])
        return zone_masks[shape]

    def entries() -> Iterator[tuple[int, int, np.ndarray]]:
        if isinstance(masks, MaskReader):
            frames = sorted({f // step for f, _ in wanted})
            if not frames:
                return
            for result in masks.iter_frames(frames[0], frames[-1] + 1):
                for obj_id, mask in result.masks.items():
                    yield result.frame_idx * step, obj_id, mask
        else:
            yield from masks

    out: dict[tuple[int, int], np.ndarray] = {}
    for frame, obj_id, mask in entries():
        key = (int(frame), int(obj_id))
        if key not in wanted:
            continue
        mask = np.asarray(mask, dtype=bool)
        area = int(mask.sum())
        if area == 0:
            out[key] = np.zeros(len(zones))
            continue
        zs = zone_stack(mask.shape)
        out[key] = (zs & mask).reshape(len(zones), -1).sum(axis=1) / area
    return out


def zone_membership(
    rows: Iterable[Measurement],
    zones: Sequence[Zone],
    *,
    masks: MaskSource | None = None,
    min_overlap: float | None = None,
) -> dict[tuple[int, str], dict[int, bool]]:
    """{(object id, zone name): {frame: inside}} for every row of the table.

    By centroid (default): the row is present and its centroid (x, y) is in the zone. With
    ``min_overlap`` (0 < F <= 1): the row is present and at least F of its mask's pixels
    lie in the zone's :meth:`Zone.mask`; ``masks`` (a :class:`MaskReader`, e.g. a store or
    its view with the identity fixes, or (frame, object id, mask) triples) is then
    required, and a row without a mask there is outside.
    """
    rows = list(rows)
    zones = list(zones)
    check_unique_names(zones)
    out: dict[tuple[int, str], dict[int, bool]] = {}
    if min_overlap is None:
        xs = np.array([r.centroid_x if has_centroid(r) else np.nan for r in rows], dtype=float)
        ys = np.array([r.centroid_y if has_centroid(r) else np.nan for r in rows], dtype=float)
        for zone in zones:
            inside = zone.contains(xs, ys)
            for r, flag in zip(rows, inside, strict=True):
                out.setdefault((r.object_id, zone.name), {})[r.frame] = bool(flag)
        return out
    threshold = check_number(min_overlap, "overlap fraction")
    if not 0 < threshold <= 1:
        raise PromptError("The overlap fraction must be above 0 and at most 1, for example 0.5.")
    if masks is None:
        raise ValueError("membership by mask overlap needs the masks")
    wanted = {(r.frame, r.object_id) for r in rows if r.present}
    fractions = _overlap_fractions(masks, zones, wanted, frame_step(rows))
    for r in rows:
        frac = fractions.get((r.frame, r.object_id)) if r.present else None
        for k, zone in enumerate(zones):
            inside = frac is not None and frac[k] >= threshold - 1e-12
            out.setdefault((r.object_id, zone.name), {})[r.frame] = bool(inside)
    return out


def zone_stats(
    rows: Iterable[Measurement],
    zones: Sequence[Zone],
    cal: Calibration | None = None,
    *,
    masks: MaskSource | None = None,
    min_overlap: float | None = None,
    fps: float | None = None,
) -> list[ZoneStats]:
    """:class:`ZoneStats` per object (in order of first appearance in ``rows``) and zone
    (in the given order); conventions in the module doc, membership as in
    :func:`zone_membership`. ``cal`` sets the length unit and may override the frame
    rate ``fps`` of the video (time of a frame = 1 / fps, also on a one-frame video)."""
    rows = list(rows)
    zones = list(zones)
    cal = cal or Calibration()
    inside_map = zone_membership(rows, zones, masks=masks, min_overlap=min_overlap)
    membership = "centroid" if min_overlap is None else f"overlap>={float(min_overlap):g}"
    dt = frame_seconds(rows, cal, fps)
    step = frame_step(rows)
    t0 = min((cal.time_of(r) for r in rows), default=0.0)
    out: list[ZoneStats] = []
    for obj_id, series in by_object(rows).items():
        for zone in zones:
            flags = inside_map[(obj_id, zone.name)]
            inside = [flags[r.frame] for r in series]
            entries = 0
            for i, flag in enumerate(inside):
                follows = i > 0 and inside[i - 1] and series[i - 1].frame + step == series[i].frame
                if flag and not follows:
                    entries += 1
            first = next((r for r, f in zip(series, inside, strict=True) if f), None)
            distance = sum(
                math.hypot(b.centroid_x - a.centroid_x, b.centroid_y - a.centroid_y)
                for (a, fa), (b, fb) in pairwise(zip(series, inside, strict=True))
                if fa and fb and has_centroid(a) and has_centroid(b)
            )
            scores = [r.score for r, f in zip(series, inside, strict=True) if f]
            known = [s for s in scores if math.isfinite(s)]
            n_inside = sum(inside)
            out.append(
                ZoneStats(
                    object_id=obj_id,
                    object_name=series[0].object_name,
                    zone=zone.name,
                    membership=membership,
                    frames=len(series),
                    frames_inside=n_inside,
                    fraction_inside=n_inside / len(series) if series else 0.0,
                    time_in_zone_s=n_inside * dt,
                    time_scored_s=sum(1 for s in known if s > 0) * dt,
                    entries=entries,
                    latency_s=None if first is None else cal.time_of(first) - t0,
                    distance_inside=cal.to_length(distance),
                    unit=cal.length_unit,
                    mean_score_inside=float(np.mean(known)) if known else None,
                )
            )
    return out


def write_zone_csv(stats: Iterable[ZoneStats], path: Path) -> Path:
    """Write zone statistics as UTF-8 CSV with :data:`ZONE_COLUMNS` (empty cell = None);
    names pass through :func:`sam2web.analysis.rowtools.safe_cell`. Returns ``path``."""
    cells = (
        [
            s.object_id,
            text(s.object_name),
            text(s.zone),
            s.membership,
            s.frames,
            s.frames_inside,
            general(s.fraction_inside),
            general(s.time_in_zone_s),
            general(s.time_scored_s),
            s.entries,
            general(s.latency_s),
            general(s.distance_inside),
            text(s.unit),
            general(s.mean_score_inside),
        ]
        for s in stats
    )
    return write_table(path, ZONE_COLUMNS, cells)
