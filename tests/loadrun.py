"""Several users on one running app, shared by tests/test_load.py and
benchmarks/bench_load.py.

Each user has its own gradio_client ``Client`` and its own synthetic clip (a different frame
count and size, so results that mixed users would show). A user prepares (upload, one or two
objects, clicks on a chosen frame) and tracks in a chosen direction. Progress is read from
the mask files the server writes into the user's session folder (one file per frame, made
when the frame is tracked), which a :class:`FrameWatcher` samples; masks are read back with
:class:`~sam2web.tracking.maskstore.MaskStore` once a run ended. Times are ``time.perf_counter()``
seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sam2web.tracking.maskstore import MaskStore
from tests import synth
from tests.appserver import session_folders

TRACK_ARGS = ("", "", 0, 0.5, True, True, 0, "", "mm", "")  # after the direction
SIZES = [(160, 120), (128, 96), (192, 144), (144, 108), (176, 132), (112, 84), (208, 156), (96, 72)]
ANIMALS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"]
DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class UserClip:
    key: str
    frames: int
    width: int
    height: int
    names: tuple[str, ...]  # the objects' names, one per disc clicked
    direction: str = "forward"

    def discs(self) -> tuple[synth.Disc, ...]:
        """The default discs scaled to this size, moving so they stay in view."""
        sx, sy = self.width / 160, self.height / 120
        slow = 8 / max(self.frames, 8)
        return tuple(
            synth.Disc(
                d.x0 * sx, d.y0 * sy, d.vx * sx * slow, d.vy * sy * slow, d.radius * sx, d.color
            )
            for d in synth.DEFAULT_DISCS
        )

    @property
    def click_frame(self) -> int:
        """Where the clicks go: frame 0 forward, the last frame backward, the middle both."""
        return {"forward": 0, "backward": self.frames - 1}.get(self.direction, self.frames // 2)

    def write(self, folder: Path) -> Path:
        frames = synth.make_frames(
            self.frames,
            self.height,
            self.width,
            discs=self.discs(),
            seed=len(self.key) + self.frames,
        )
        return synth.write_video(folder / f"{self.key}.mp4", frames, fps=10)


def user_clips(sessions: int, frames: int, objects: int = 2, vary: bool = False) -> list[UserClip]:
    """``sessions`` clips: the i-th has ``frames + i`` frames, its own size and names, and
    with ``vary`` its own direction (forward, backward, both in turn)."""
    clips = []
    for i in range(sessions):
        width, height = SIZES[i % len(SIZES)]
        animal = ANIMALS[i % len(ANIMALS)] + ("" if i < len(ANIMALS) else str(i))
        names = tuple(f"{animal} {k + 1}" for k in range(objects))
        direction = DIRECTIONS[i % 3] if vary else "forward"
        clips.append(UserClip(animal, frames + i, width, height, names, direction))
    return clips


@dataclass
class Timing:
    """Seconds one request took, by name."""

    seconds: dict[str, float] = field(default_factory=dict)

    def time(self, name: str, call):
        t = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds[name] = time.perf_counter() - t


# Uploads from one process go one at a time, so that each finds its own new folder.
_UPLOADING = threading.Lock()


def upload(client, path: Path, data_dir: Path) -> Path:
    """Upload ``path`` as a new session; returns the session's folder on the server."""
    from gradio_client import handle_file

    with _UPLOADING:
        before = session_folders(data_dir)
        client.predict(handle_file(str(path)), api_name="/upload")
        (folder,) = session_folders(data_dir) - before
    return folder


def prompt(client, clip: UserClip, timing: Timing | None = None) -> None:
    """One object per name, each with a positive click on its disc on the clip's click
    frame; the first click is timed as ``first_mask`` (from the start of the object)."""
    timing = timing or Timing()
    frame = clip.click_frame
    for obj_id, (name, disc) in enumerate(zip(clip.names, clip.discs(), strict=False), start=1):
        x, y = disc.center(frame)

        def first(name=name, obj_id=obj_id, x=x, y=y):
            client.predict(name, frame, api_name="/add_object")
            client.predict(frame, obj_id, x, y, True, api_name="/add_point")

        timing.time("first_mask" if obj_id == 1 else f"object_{obj_id}", first)


def track(client, clip: UserClip) -> str:
    """Track the clip in its direction; the status line."""
    return client.predict(clip.direction, *TRACK_ARGS, api_name="/propagate")[1]


def read_masks(folder: Path, clip: UserClip) -> dict[int, dict[int, np.ndarray]]:
    """{frame: {object id: mask}} of every frame stored in a session folder."""
    store = MaskStore(folder / "masks", clip.height, clip.width)
    out = {}
    for frame in store.frames():
        result = store.read(frame)
        if result is not None:
            out[frame] = dict(result.masks)
    return out


def tracked_files(folder: Path) -> int:
    masks = folder / "masks"
    try:
        return sum(1 for p in masks.iterdir() if p.suffix == ".npz")
    except OSError:
        return 0


class FrameWatcher:
    """Samples how many mask files each watched session folder holds, every ``every_s``."""

    def __init__(self, every_s: float = 0.02):
        self.every_s = every_s
        self.samples: dict[Path, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, folder: Path) -> None:
        with self._lock:
            self.samples.setdefault(folder, [(time.perf_counter(), tracked_files(folder))])

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                folders = list(self.samples)
            now = time.perf_counter()
            for folder in folders:
                count = tracked_files(folder)
                # Only new files count: a session closed afterwards loses its folder.
                if count > self.samples[folder][-1][1]:
                    self.samples[folder].append((now, count))

    def count_at(self, folder: Path, t: float) -> int:
        count = 0
        for when, value in self.samples[folder]:
            if when > t:
                break
            count = value
        return count

    def first_change(self, folder: Path) -> float | None:
        samples = self.samples[folder]
        return samples[1][0] if len(samples) > 1 else None

    def last_change(self, folder: Path) -> float:
        return self.samples[folder][-1][0]

    def split(self, folders: list[Path]) -> tuple[float, float, list[int]]:
        """The window in which every folder's run was under way (from the last first new
        file to the first last new file) and the files each got in it."""
        start = max(self.first_change(f) or float("inf") for f in folders)
        end = min(self.last_change(f) for f in folders)
        return start, end, [self.count_at(f, end) - self.count_at(f, start) for f in folders]

    def __enter__(self) -> FrameWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]
