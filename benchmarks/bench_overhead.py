"""The app's own cost per frame: the engine alone against the app's path, in one run.

On the same clip, clicks and model (one process, the engine's shared model), it times

* **engine**: :meth:`TrackingSession.propagate` and nothing beside it (the model, the
  mask store's write and read-back of each frame);
* **app**: what the page's *Track* does below the page: ``session/background.start_run``
  (the run in the session's thread, each frame a unit on the shared scheduler, the pass
  beside tracking with the overlay video, measurements and mask files, then the row files
  and plots), followed as a page follows it (a poll a second and the tracked frame drawn
  as the page shows it).

Rounds alternate engine and app. It prints wall seconds per tracked frame of each and the
ratio, the CPU seconds per frame of each (the process's threads, and ffmpeg's for the app),
and the CPU seconds per frame of each part beside the model, measured by per-stage clocks:
each part's functions are wrapped to add the calling thread's CPU time
(:func:`time.thread_time`) around every call, keyed by part and thread. The load check of
:mod:`benchmarks.harness` says how many cores other processes kept busy meanwhile; on a
contended machine read the CPU figures, which other processes do not inflate.

    nice -n 0 .venv/bin/python benchmarks/bench_overhead.py --frames 40 --width 720 --height 406
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from benchmarks.bench_app import scaled_discs  # noqa: E402


# ------------------------------------------------------------------------ per-stage clocks
class StageClocks:
    """Thread CPU seconds and calls per (part, thread), added by wrapped functions."""

    def __init__(self) -> None:
        self.cpu: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._undo: list = []
        self._local = threading.local()
        self.tracking_ended = (0.0, 0)

    def wrap(self, owner, attr: str, part: str) -> None:
        original = getattr(owner, attr)
        clocks = self

        def timed(*args, **kwargs):
            if getattr(clocks._local, "inside", False):  # a part called from another part
                return original(*args, **kwargs)
            clocks._local.inside = True
            t0 = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                key = (part, threading.current_thread().name)
                clocks.cpu[key] += time.thread_time() - t0
                clocks.calls[key] += 1
                clocks._local.inside = False

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def reset(self) -> None:
        self.cpu.clear()
        self.calls.clear()

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)


def install(clocks: StageClocks) -> None:
    """Wrap every part beside the model (and the store, which the engine uses too)."""
    from sam2web.analysis import results
    from sam2web.media import folder
    from sam2web.outputs import exports, maskfiles, video
    from sam2web.session import user as user_module
    from sam2web.tracking import maskstore

    clocks.wrap(maskstore.MaskStore, "write", "store: write (pack, compress)")
    clocks.wrap(maskstore.MaskStore, "read", "store: read (decompress, unpack)")
    clocks.wrap(folder.FrameFolder, "read_rgb", "frame JPEG decode")
    clocks.wrap(video, "draw_overlay", "overlay: draw")
    clocks.wrap(video, "draw_zones", "overlay: draw")
    clocks.wrap(video.Mp4Writer, "write", "overlay: pipe to ffmpeg")
    clocks.wrap(video.Mp4Writer, "close", "overlay: pipe to ffmpeg")
    clocks.wrap(results.MeasurementSink, "add", "measurements")
    clocks.wrap(maskfiles.MasksZipSink, "add", "masks zip (PNG)")
    clocks.wrap(maskfiles.MasksZipSink, "finish", "masks zip (PNG)")
    clocks.wrap(maskfiles.NpzSink, "add", "masks NPZ")
    clocks.wrap(maskfiles.NpzSink, "finish", "masks NPZ")
    clocks.wrap(maskfiles.CocoSink, "add", "masks COCO")
    clocks.wrap(maskfiles.CocoSink, "finish", "masks COCO")
    clocks.wrap(exports, "write_row_files", "row files + plots")
    clocks.wrap(user_module.UserSession, "view_frame", "page: frame shown")
    original = exports.LiveExports.finish

    def finish(live, *args, **kwargs):  # tracking ended: how far the pass beside it got
        clocks.tracking_ended = (time.perf_counter(), live.video.frames_written)
        return original(live, *args, **kwargs)

    exports.LiveExports.finish = finish
    clocks._undo.append((exports.LiveExports, "finish", original))


# ------------------------------------------------------------------------ one measurement
@dataclasses.dataclass
class Round:
    wall_s: float
    cpu_s: float  # this process, all threads
    child_cpu_s: float  # ffmpeg
    others_cores: float  # cores other processes kept busy meanwhile
    frames: int
    stages: dict
    tail_s: float = 0.0  # from the last tracked frame to the end
    behind: int = 0  # frames the pass beside tracking still had to do then


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def measured(out: dict, clocks: StageClocks):
    clocks.reset()
    t0, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu()
    busy0 = harness.system_busy_s()
    yield
    wall = time.perf_counter() - t0
    cpu, child = time.process_time() - cpu0, children_cpu() - child0
    busy = harness.system_busy_s() - busy0
    out.update(
        wall_s=wall,
        cpu_s=cpu,
        child_cpu_s=child,
        others_cores=max(0.0, busy - cpu - child) / wall,
        stages=dict(clocks.cpu),
    )


def engine_round(user, clocks: StageClocks) -> Round:
    """The engine alone: the session's own tracker, propagated with nothing beside it."""
    out: dict = {}
    tracking = user.ensure_tracking()
    frames = 0
    with measured(out, clocks):
        for _ in tracking.propagate("forward"):
            frames += 1
    return Round(frames=frames, **out)


def app_round(user, clocks: StageClocks, style, calibration) -> Round:
    """The page's Track below the page: start_run, followed as a page follows a run."""
    from sam2web.session.background import result_of, start_run

    out: dict = {}
    with measured(out, clocks):
        run = start_run(user, "forward", None, None, style, calibration)
        seen, last_view = None, 0.0
        while True:
            state = run.wait(1.0, seen)
            seen = run.mark()
            tracking = state.phase == "tracking" and state.frame is not None
            if tracking and time.perf_counter() - last_view > 1.0:
                last_view = time.perf_counter()
                user.view_frame(state.frame)
            if state.finished:
                break
        run.join()
        ended = result_of(run)
        ended_at, written = clocks.tracking_ended
        tail = time.perf_counter() - ended_at
    return Round(frames=ended.total, tail_s=tail, behind=ended.total - written, **out)


# ------------------------------------------------------------------------ the report
def per_frame(rounds: list[Round], value) -> float:
    return statistics.median(value(r) / r.frames for r in rounds)


def stage_rows(rounds: list[Round]) -> list[tuple]:
    keys = sorted({k for r in rounds for k in r.stages}, key=lambda k: (k[1], k[0]))
    rows = []
    for part, thread in keys:
        ms = per_frame(rounds, lambda r, k=(part, thread): r.stages.get(k, 0.0)) * 1000
        rows.append((part, thread, f"{ms:.1f}"))
    return rows


def report(args, engine: list[Round], app: list[Round], load: tuple, torch_threads: int) -> None:
    e_wall = per_frame(engine, lambda r: r.wall_s)
    a_wall = per_frame(app, lambda r: r.wall_s)
    e_cpu = per_frame(engine, lambda r: r.cpu_s + r.child_cpu_s)
    a_cpu = per_frame(app, lambda r: r.cpu_s + r.child_cpu_s)
    others = max(r.others_cores for r in engine + app)
    contended = others > harness.CONTENDED_CORES
    print(
        f"\nThe app's own cost: {args.frames} frames {args.width}x{args.height}, "
        f"{args.objects} object(s), {args.resolution} px, forward from frame 0; "
        f"{args.rounds} round(s) of engine then app, medians"
    )
    print(harness.machine_line())
    print(
        f"load average before {load[0]}, after {load[1]}; other processes kept up to "
        f"{others:.2f} cores busy" + (" (CONTENDED: read the CPU figures)" if contended else "")
    )
    e_best = min(r.wall_s / r.frames for r in engine)
    a_best = min(r.wall_s / r.frames for r in app)
    rows = [
        ("engine alone", f"{e_wall:.3f}", "1.00", f"{e_best:.3f}", "1.00", f"{e_cpu:.3f}", "1.00"),
        (
            "app",
            f"{a_wall:.3f}",
            f"{a_wall / e_wall:.2f}",
            f"{a_best:.3f}",
            f"{a_best / e_best:.2f}",
            f"{a_cpu:.3f}",
            f"{a_cpu / e_cpu:.2f}",
        ),
    ]
    columns = ("path", "wall s/frame", "× engine", "best wall s/frame", "× engine (best)")
    print(harness.table((*columns, "CPU s/frame", "× engine (CPU)"), rows))
    print(
        "\nCPU s/frame: this process's threads (torch's included) and, for the app, ffmpeg; "
        f"{torch_threads} torch threads."
    )
    ffmpeg_ms = per_frame(app, lambda r: r.child_cpu_s) * 1000
    print(f"\nParts, thread CPU ms per frame (app; ffmpeg's encoding {ffmpeg_ms:.1f} ms):")
    print(harness.table(("part", "thread", "CPU ms/frame"), stage_rows(app), align="ll"))
    tail = statistics.median(r.tail_s for r in app)
    behind = statistics.median(r.behind for r in app)
    print(
        f"After the last tracked frame the app took {tail:.2f} s more ({tail / args.frames:.3f} "
        f"s/frame); the pass beside tracking was {behind:g} frames behind then."
    )
    print("\nParts in the engine alone, thread CPU ms per frame:")
    print(harness.table(("part", "thread", "CPU ms/frame"), stage_rows(engine), align="ll"))
    print("\nRounds (wall s, CPU s incl. ffmpeg, others' cores):")
    for i, (e, a) in enumerate(zip(engine, app, strict=True), start=1):
        print(
            f"  {i}: engine {e.wall_s:.1f} s / {e.cpu_s + e.child_cpu_s:.1f} s / "
            f"{e.others_cores:.2f};  app {a.wall_s:.1f} s / {a.cpu_s + a.child_cpu_s:.1f} s "
            f"/ {a.others_cores:.2f}, {a.tail_s:.2f} s after tracking"
        )


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--frames", type=int, default=40, help="clip length (default 40)")
    parser.add_argument("--width", type=int, default=720, help="clip width (default 720)")
    parser.add_argument("--height", type=int, default=406, help="clip height (default 406)")
    parser.add_argument("--objects", type=int, choices=(1, 2), default=1)
    parser.add_argument("--resolution", type=int, default=448, help="processing px (448)")
    parser.add_argument("--rounds", type=int, default=2, help="engine/app rounds (default 2)")
    harness.add_threads(parser)
    args = parser.parse_args(argv)
    torch_threads = harness.use_threads(args.threads)

    from sam2web.analysis.tables import Calibration
    from sam2web.outputs.render import OverlayStyle
    from sam2web.session.user import UserSession
    from tests import synth

    load_before = harness.load_average()
    with tempfile.TemporaryDirectory(prefix="sam2web-bench-overhead-") as tmp:
        tmp = Path(tmp)
        discs = scaled_discs(args)
        frames = synth.make_frames(args.frames, args.height, args.width, discs=discs)
        clip = synth.write_video(tmp / "clip.mp4", frames, fps=25)
        engine = harness.random_engine(tmp, args.resolution)
        users = {}
        for side in ("engine", "app"):
            user = users[side] = UserSession(engine)
            user.upload(clip)
            for obj, disc in enumerate(discs[: args.objects], start=1):
                user.add_object(f"disc {obj}")
                user.click(0, disc.x0, disc.y0, "positive", obj)
        harness.log("warm-up run (untimed)", "bench-overhead")
        engine_round(users["engine"], StageClocks())
        clocks = StageClocks()
        install(clocks)
        style, calibration = OverlayStyle(), Calibration()
        engine_rounds, app_rounds = [], []
        try:
            for i in range(args.rounds):
                harness.log(f"round {i + 1}: engine", "bench-overhead")
                engine_rounds.append(engine_round(users["engine"], clocks))
                harness.log(f"round {i + 1}: app", "bench-overhead")
                app_rounds.append(app_round(users["app"], clocks, style, calibration))
        finally:
            clocks.restore()
            for user in users.values():
                user.close()
            engine.close()
    report(args, engine_rounds, app_rounds, (load_before, harness.load_average()), torch_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
