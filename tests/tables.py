"""Measurement tables with known centroids, for the analyses of tables."""

from __future__ import annotations

import math

from sam2web.types import Measurement


def make_rows(
    paths: dict[int, list[tuple[float, float] | None]],
    fps: float = 10.0,
    scores: dict[int, list[float]] | None = None,
    names: dict[int, str] | None = None,
) -> list[Measurement]:
    """One row per object per frame, frame-major; None in a path = absent on that frame.

    Present rows get area 1 and score 5.0 unless ``scores`` says otherwise; absent rows
    score NaN, like frames without a stored result.
    """
    n = max(len(p) for p in paths.values())
    rows = []
    for frame in range(n):
        for obj_id, path in paths.items():
            point = path[frame] if frame < len(path) else None
            score = math.nan if point is None else 5.0
            if scores is not None and obj_id in scores:
                score = scores[obj_id][frame]
            rows.append(
                Measurement(
                    frame=frame,
                    time_s=frame / fps,
                    object_id=obj_id,
                    object_name=(names or {}).get(obj_id, f"obj{obj_id}"),
                    present=point is not None,
                    score=score,
                    area_px=None if point is None else 1,
                    centroid_x=None if point is None else float(point[0]),
                    centroid_y=None if point is None else float(point[1]),
                    bbox_x=None if point is None else int(point[0]),
                    bbox_y=None if point is None else int(point[1]),
                    bbox_w=None if point is None else 1,
                    bbox_h=None if point is None else 1,
                )
            )
    return rows
