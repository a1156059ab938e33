"""The example clip sam2web makes for a first try: a few dark elliptical animals moving on a
light textured floor, the same pixels on every run (public domain, CC0: sam2web draws it).

:func:`example_frames` draws the frames; :data:`ANIMALS` are the animals' paths, and
:meth:`Animal.pose` / :func:`animal_mask` say exactly where each animal is on any frame,
so a hint can name a point inside each one and a test can check it without reading pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

WIDTH, HEIGHT = 480, 270
NUM_FRAMES = 60
FPS = 15.0
SEED = 20240613  # the floor's texture
FLOOR_LEVEL = 205  # the floor's mean grey level; the animals are far darker
ANIMAL_LEVEL = 45
LICENCE = "made by sam2web, public domain (CC0)"


@dataclass(frozen=True)
class Pose:
    """Where an animal is on one frame: its centre (x, y) in pixels, its half-length and
    half-width, and the heading of its long axis in degrees (clockwise from +x, as OpenCV
    draws ellipses on images)."""

    x: float
    y: float
    half_length: float
    half_width: float
    angle_deg: float


@dataclass(frozen=True)
class Animal:
    """One animal walking an ellipse around (cx, cy) with radii (rx, ry), a lap every
    ``period`` frames, starting at ``phase`` (radians); it faces the way it walks."""

    cx: float
    cy: float
    rx: float
    ry: float
    period: float
    phase: float
    half_length: float = 20.0
    half_width: float = 10.0

    def pose(self, frame: int) -> Pose:
        t = self.phase + 2 * math.pi * frame / self.period
        x, y = self.cx + self.rx * math.cos(t), self.cy + self.ry * math.sin(t)
        heading = math.degrees(math.atan2(self.ry * math.cos(t), -self.rx * math.sin(t)))
        return Pose(x, y, self.half_length, self.half_width, heading)


# Three animals, each in its own third of the arena, so they never touch.
ANIMALS = (
    Animal(cx=90, cy=135, rx=45, ry=70, period=80, phase=0.0),
    Animal(cx=240, cy=135, rx=50, ry=60, period=-90, phase=math.pi / 2),
    Animal(cx=390, cy=140, rx=40, ry=65, period=70, phase=math.pi),
)


def animal_mask(pose: Pose, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The pixels whose centre lies inside the animal's ellipse (bool, [row, col])."""
    rows, cols = np.mgrid[0:height, 0:width]
    dx, dy = cols - pose.x, rows - pose.y
    a = math.radians(pose.angle_deg)
    along = dx * math.cos(a) + dy * math.sin(a)
    across = -dx * math.sin(a) + dy * math.cos(a)
    return (along / pose.half_length) ** 2 + (across / pose.half_width) ** 2 <= 1.0


def _floor(height: int, width: int) -> np.ndarray:
    """A light floor with soft blotches and a fine grain (float grey levels)."""
    rng = np.random.default_rng(SEED)
    blotches = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), 12)
    blotches *= 12 / max(float(blotches.std()), 1e-9)
    grain = rng.normal(0, 4, (height, width))
    return FLOOR_LEVEL + blotches + grain


def example_frames(num_frames: int = NUM_FRAMES) -> Iterator[np.ndarray]:
    """The clip's frames, (HEIGHT, WIDTH, 3) uint8 RGB, in order."""
    floor = _floor(HEIGHT, WIDTH)
    tint = np.array([1.0, 0.97, 0.9])  # a warm floor; the animals are a neutral dark grey
    for frame in range(num_frames):
        grey = floor.copy()
        for animal in ANIMALS:
            pose = animal.pose(frame)
            grey[animal_mask(pose)] = ANIMAL_LEVEL
        rgb = np.clip(grey[..., None] * tint, 0, 255)
        yield np.ascontiguousarray(rgb.round().astype(np.uint8))


def hint_points(frame: int = 0) -> list[tuple[int, int]]:
    """A point to click in each animal on ``frame``: its centre, in whole pixels."""
    return [(round(p.x), round(p.y)) for p in (a.pose(frame) for a in ANIMALS)]
