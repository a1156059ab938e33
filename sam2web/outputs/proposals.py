"""The finders' proposals drawn on a frame: each blob tinted, its box outlined and its
number written beside it, so the user can accept all or pick some by number
(:mod:`sam2web.analysis.finders`, :mod:`sam2web.session.finding`)."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from ..analysis.finders import Proposal
from ..types import color_for
from .render import check_frame, line_thickness

TINT = 0.45  # how much of a proposal's colour covers its pixels


def _dashed_box(out: np.ndarray, x0: int, y0: int, x1: int, y1: int, color, thick: int) -> None:
    dash = max(3, 3 * thick)
    for a in range(x0, x1, 2 * dash):
        b = min(a + dash, x1)
        cv2.line(out, (a, y0), (b, y0), color, thick)
        cv2.line(out, (a, y1), (b, y1), color, thick)
    for a in range(y0, y1, 2 * dash):
        b = min(a + dash, y1)
        cv2.line(out, (x0, a), (x0, b), color, thick)
        cv2.line(out, (x1, a), (x1, b), color, thick)


def draw_proposals(
    frame_rgb: np.ndarray, proposals: Iterable[Proposal], picked: Iterable[int] = ()
) -> np.ndarray:
    """A copy of ``frame_rgb`` (H, W, 3 uint8) with every proposal (masks of its size)
    tinted, boxed and numbered in the colour of the object it would become: the numbers
    ``picked`` with a solid box, the others with a dashed one."""
    picked = set(picked)
    out = check_frame(frame_rgb).copy()
    h, w = out.shape[:2]
    thick = line_thickness(h, w)
    scale = max(0.4, min(h, w) / 600.0)
    for p in proposals:
        color = np.array(color_for(p.number), dtype=np.float32)
        tinted = out[p.mask].astype(np.float32) * (1 - TINT) + color * TINT
        out[p.mask] = tinted.astype(np.uint8)
        x0, y0, x1, y1 = (int(round(v)) for v in p.box)
        c = tuple(int(v) for v in color)
        if p.number in picked:
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), c, thick + 1)
        else:
            _dashed_box(out, x0, y0, x1 - 1, y1 - 1, c, thick)
        org = (x0, max(y0 - 4, int(14 * scale)))
        cv2.putText(out, str(p.number), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2)
        cv2.putText(out, str(p.number), org, cv2.FONT_HERSHEY_SIMPLEX, scale, c, thick)
    return out
