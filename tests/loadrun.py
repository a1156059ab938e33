"""A bounded load scenario for the running app, shared by tests/test_load.py and
benchmarks/bench_load.py.

Several users at once, each with its own gradio_client ``Client`` in its own thread and its
own clip (a different frame count and size, so results that mixed users would show):
upload -> two named objects -> clicks -> Track -> export. Meanwhile one more user drags the
frame slider (``/frame``, which runs outside the model queue) and every answer's latency is
recorded. Times are seconds from the start of the load.

Where each propagation started and ended is read from the server's log (one line per run,
with its frame count, which differs between the users): the clients see the server's
messages only after downloading every output file of the previous one.
"""

from __future__ import annotations

import csv
import re
import statistics
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import imageio_ffmpeg

from tests import synth
from tests.appserver import RssMonitor, settled_rss

TRACK_ARGS = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")
EXPORT_ARGS = (0, 0.5, True, True, 0, "", "mm", "")
SIZES = [(160, 120), (128, 96), (192, 144), (144, 108), (176, 132), (112, 84), (208, 156), (96, 72)]
ANIMALS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"]


@dataclass(frozen=True)
class UserClip:
    key: str
    frames: int
    width: int
    height: int
    names: tuple[str, str]  # the two objects' names

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

    def write(self, folder: Path) -> Path:
        frames = synth.make_frames(
            self.frames,
            self.height,
            self.width,
            discs=self.discs(),
            seed=len(self.key) + self.frames,
        )
        return synth.write_video(folder / f"{self.key}.mp4", frames, fps=10)


def user_clips(sessions: int, frames: int) -> list[UserClip]:
    """``sessions`` clips: the i-th has ``frames + i`` frames and its own size and names."""
    clips = []
    for i in range(sessions):
        width, height = SIZES[i % len(SIZES)]
        animal = ANIMALS[i % len(ANIMALS)] + ("" if i < len(ANIMALS) else str(i))
        clips.append(UserClip(animal, frames + i, width, height, (f"{animal} 1", f"{animal} 2")))
    return clips


@dataclass
class UserRun:
    clip: UserClip
    started: float = 0.0
    finished: float = 0.0
    track_sent: float = 0.0  # Track pressed
    track_start: float | None = None  # the server started tracking (its log)
    track_end: float | None = None  # the server finished tracking (its log)
    answered: float | None = None  # Track's answer, with every output file, arrived
    status: str = ""
    rows: list[dict] = field(default_factory=list)  # sam2web_tracks.csv from the export
    video_size: tuple[int, int] | None = None  # (width, height) of the overlay video
    video_frames: int = 0
    export_folders: set[Path] = field(default_factory=set)
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class LoadRun:
    users: list[UserRun]
    frame_latencies: list[float]  # seconds per /frame answer while the users ran
    seconds: float  # from the first user's start to the last one's end
    rss_before: int | None = None
    rss_peak: int | None = None
    rss_after: int | None = None

    def errors(self) -> list[str]:
        return [f"{u.clip.key}: {u.error}" for u in self.users if u.error]

    def track_order(self) -> list[UserRun]:
        return sorted(self.users, key=lambda u: u.track_start or float("inf"))

    def latency(self, q: float) -> float:
        values = sorted(self.frame_latencies)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    def table(self) -> str:
        """Markdown: one row per user, then the slider latency and the server's RSS."""
        lines = [
            "| user | frames | size | user total s | Track pressed s | tracking start s "
            "| tracking end s | Track answered s |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for u in self.track_order():
            c = u.clip
            lines.append(
                f"| {c.key} | {c.frames} | {c.width}x{c.height} | {u.seconds:.1f} | "
                f"{u.track_sent:.1f} | {_num(u.track_start)} | "
                f"{_num(u.track_end)} | {_num(u.answered)} |"
            )
        lat = self.frame_latencies
        lines.append("")
        lines.append(
            f"All {len(self.users)} users done in {self.seconds:.1f} s. Slider "
            f"(/frame) during the load: {len(lat)} answers, median "
            f"{1000 * statistics.median(lat) if lat else float('nan'):.0f} ms, "
            f"p95 {1000 * self.latency(0.95):.0f} ms, max "
            f"{1000 * max(lat, default=float('nan')):.0f} ms."
        )
        if self.rss_before is not None:
            mib = 1024 * 1024
            lines.append(
                f"Server RSS: before {self.rss_before / mib:.0f} MiB, peak "
                f"{self.rss_peak / mib:.0f} MiB, after {self.rss_after / mib:.0f} MiB."
            )
        return "\n".join(lines)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _video(path) -> tuple[tuple[int, int], int]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return tuple(meta["size"]), sum(1 for _ in reader)


def _one_user(url: str, path: Path, run: UserRun, t0: float) -> None:
    from gradio_client import Client, handle_file

    clip = run.clip
    run.started = time.perf_counter() - t0
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(path)), api_name="/upload")
        first, second = clip.discs()[:2]
        client.predict(clip.names[0], 0, api_name="/add_object")
        client.predict(0, 1, first.x0, first.y0, True, api_name="/add_point")
        client.predict(
            0, 1, clip.width * 0.5, clip.height * 0.9, False, api_name="/add_point"
        )  # background
        client.predict(clip.names[1], 0, api_name="/add_object")
        client.predict(0, 2, second.x0, second.y0, True, api_name="/add_point")
        run.track_sent = time.perf_counter() - t0
        run.status = client.predict(*TRACK_ARGS, api_name="/propagate")[1]
        run.answered = time.perf_counter() - t0
        exported = client.predict(*EXPORT_ARGS, api_name="/export")
        video, files = exported[1], exported[2]
        run.export_folders = {Path(f).parent for f in files}
        (tracks,) = [f for f in files if str(f).endswith("sam2web_tracks.csv")]
        run.rows = _read_csv(tracks)
        run.video_size, run.video_frames = _video(video)
    except Exception:  # reported with the run
        run.error = traceback.format_exc(limit=3)
    run.finished = time.perf_counter() - t0


_TRACKING_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO sam2web\.workflow: tracking "
    r"\w+ after (\d+) of (\d+) frames in ([\d.]+) s",
    re.MULTILINE,
)


def _tracking_times(log: str, runs: list[UserRun], t0_wall: float) -> None:
    """Fill in each run's tracking start and end from the server's log lines."""
    by_frames = {run.clip.frames: run for run in runs}
    for stamp, done, total, seconds in _TRACKING_LINE.findall(log):
        run = by_frames.get(int(total))
        if run is None or int(done) != int(total):
            continue
        end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() - t0_wall
        run.track_start, run.track_end = end - float(seconds), end


def _scrub(
    url: str,
    path: Path,
    frames: int,
    ready: threading.Event,
    stop: threading.Event,
    latencies: list[float],
    pause_s: float,
) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(handle_file(str(path)), api_name="/upload")
    ready.set()
    i = 0
    while not stop.is_set():
        t = time.perf_counter()
        client.predict(i % frames, api_name="/frame")
        latencies.append(time.perf_counter() - t)
        i += 1
        stop.wait(pause_s)


def run_load(
    url: str,
    clips: list[UserClip],
    workdir: Path,
    server_log: Callable[[], str],
    pid: int | None = None,
    scrub_pause_s: float = 0.1,
    timeout_s: float = 900,
) -> LoadRun:
    """Run every clip's user at once against the app at ``url`` while a further user drags
    the frame slider every ``scrub_pause_s`` seconds. ``server_log()`` returns the server's
    log so far (for the tracking times; clips need distinct frame counts). With ``pid``
    (the server's process), the server's RSS is sampled before, during and after."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [clip.write(workdir) for clip in clips]
    scrub_clip = UserClip("slider", 4, 160, 120, ("-", "-"))
    scrub_path = scrub_clip.write(workdir)
    latencies: list[float] = []
    ready, stop = threading.Event(), threading.Event()
    scrubber = threading.Thread(
        target=_scrub,
        daemon=True,
        args=(url, scrub_path, scrub_clip.frames, ready, stop, latencies, scrub_pause_s),
    )
    scrubber.start()
    if not ready.wait(120):
        raise RuntimeError("the slider user's upload did not finish")
    rss_before = settled_rss(pid, 1.0) if pid else None
    monitor = RssMonitor(pid).__enter__() if pid else None
    runs = [UserRun(clip) for clip in clips]
    t0, t0_wall = time.perf_counter(), time.time()
    threads = [
        threading.Thread(target=_one_user, args=(url, path, run, t0), daemon=True)
        for path, run in zip(paths, runs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, timeout_s - (time.perf_counter() - t0)))
    seconds = time.perf_counter() - t0
    stop.set()
    scrubber.join(60)
    for run, t in zip(runs, threads, strict=True):
        if t.is_alive():
            run.error = run.error or f"still running after {timeout_s:.0f} s"
    _tracking_times(server_log(), runs, t0_wall)
    result = LoadRun(runs, list(latencies), seconds, rss_before)
    if monitor is not None:
        monitor.__exit__(None, None, None)
        result.rss_peak = monitor.peak
        result.rss_after = settled_rss(pid, 2.0)
    return result


def expected_rows(clip: UserClip) -> tuple[int, set[str], list[int]]:
    """Rows, object names and frame numbers a correct export of ``clip`` has."""
    return 2 * clip.frames, set(clip.names), list(range(clip.frames))


def check(run: UserRun) -> list[str]:
    """What is wrong with one user's results (empty: each matches its own clip)."""
    clip = run.clip
    problems = []
    if run.error:
        return [run.error]
    if f"Tracked {clip.frames} frames" not in run.status:
        problems.append(f"status {run.status!r}")
    rows, names, frames = expected_rows(clip)
    if len(run.rows) != rows:
        problems.append(f"{len(run.rows)} CSV rows, expected {rows}")
    if {r["object_name"] for r in run.rows} != names:
        problems.append(f"object names {sorted({r['object_name'] for r in run.rows})}")
    if sorted({int(r["frame"]) for r in run.rows}) != frames:
        problems.append("CSV frame numbers differ from the clip's")
    if run.video_size != (clip.width, clip.height) or run.video_frames != clip.frames:
        problems.append(f"video {run.video_size} with {run.video_frames} frames")
    return problems
