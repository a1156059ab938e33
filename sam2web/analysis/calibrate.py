"""Length scales for :class:`sam2web.analysis.tables.Calibration`: from a ruler drawn on a frame, or
from the pixel size a microscopy file states.

Points are (x, y) in pixels of the original frame (see :mod:`sam2web.types`).
"""

from __future__ import annotations

import math

from ..errors import PromptError
from ..types import VideoInfo
from .tables import Calibration


def _coordinate(value) -> float:
    if isinstance(value, bool):
        raise PromptError("The ruler's ends must be points on the frame.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PromptError("The ruler's ends must be points on the frame.") from None
    if not math.isfinite(number):
        raise PromptError("The ruler's ends must be points on the frame.")
    return number


def ruler_pixels_per_unit(
    p1: tuple[float, float], p2: tuple[float, float], real_distance: float
) -> float:
    """Pixels per unit from two clicked points (x, y) that are ``real_distance`` units apart.

    Raises PromptError when the points coincide or the distance is not a positive number.
    """
    x1, y1 = (_coordinate(v) for v in p1)
    x2, y2 = (_coordinate(v) for v in p2)
    pixels = math.hypot(x2 - x1, y2 - y1)
    if pixels == 0:
        raise PromptError(
            "The ruler's two ends are the same point; click both ends of a known distance."
        )
    if isinstance(real_distance, bool):
        raise PromptError("The real distance must be a positive number, for example 10.")
    try:
        distance = float(real_distance)
    except (TypeError, ValueError):
        raise PromptError(
            f"The real distance must be a positive number, not {real_distance!r}."
        ) from None
    if not (math.isfinite(distance) and distance > 0):
        raise PromptError(f"The real distance must be a positive number, not {real_distance!r}.")
    return pixels / distance


def ruler_calibration(
    p1: tuple[float, float],
    p2: tuple[float, float],
    real_distance: float,
    unit: str,
    fps: float | None = None,
) -> Calibration:
    """A :class:`Calibration` whose scale makes the ruler ``real_distance`` ``unit`` long."""
    return Calibration(
        pixels_per_unit=ruler_pixels_per_unit(p1, p2, real_distance), unit=unit, fps=fps
    )


def calibration_from_video(info: VideoInfo, fps: float | None = None) -> Calibration:
    """The scale a file stated (``info.pixel_size`` ``info.pixel_unit`` per pixel), or an
    uncalibrated one when it stated none; ``fps`` overrides the frame rate."""
    if info.pixel_size is None or not info.pixel_unit:
        return Calibration(fps=fps)
    return Calibration(pixels_per_unit=1.0 / info.pixel_size, unit=info.pixel_unit, fps=fps)
