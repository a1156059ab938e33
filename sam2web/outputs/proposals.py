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


def draw_proposals(frame_rgb: np.ndarray, proposals: Iterable[Proposal]) -> np.ndarray:
    """A copy of ``frame_rgb`` (H, W, 3 uint8) with every proposal (masks of its size)
    tinted, boxed and numbered in the colour of the object it would become."""
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
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), c, thick)
        org = (x0, max(y0 - 4, int(14 * scale)))
        cv2.putText(out, str(p.number), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2)
        cv2.putText(out, str(p.number), org, cv2.FONT_HERSHEY_SIMPLEX, scale, c, thick)
    return out
