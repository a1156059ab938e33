#!/usr/bin/env python
"""Benchmark: sam2's own tutorial flow against the sam2web engine, on one synthetic clip.

Modes (``--modes``, comma separated), each run in its own subprocess so that peak RSS is
per mode:

* ``raw``: Meta's video predictor tutorial. ``build_sam2_video_predictor`` (with sam2web's
  hydra overrides, so both sides run the same model), ``init_state`` on the JPEG folder the
  engine's ingest wrote (identical pixels), one ``add_new_points_or_box`` per object,
  ``propagate_in_video`` with masks collected in a dict, as the notebook does.
* ``engine``: sam2web end to end. ``media.ingest`` decodes the MP4 into frame files,
  ``session.TrackingSession`` takes the same clicks and propagates (lazy frames, masks to
  disk) while ``render.LiveOverlayVideo`` renders and encodes the overlay MP4 beside it, as
  the app does; then ``exports.write_csv`` writes the CSV and the video is finished.
* a number after the name sets the processing resolution (``engine512``), ``-bf16`` runs the
  model under CPU bfloat16 autocast (``engine-bf16``, ``raw512-bf16``). Without a number a
  mode uses ``--resolution``.
* ``-compile`` (engine only) compiles the image encoder with ``torch.compile`` as
  SAM2WEB_COMPILE does (``engine-bf16-compile``: for bf16 calls; ``engine-compile``: for
  all), at model load, so the compile shows in the load time and not per frame.

For every mode and clip length it prints seconds per tracked frame (median over the frames
after the first one propagate yields, which is the prompted frame), end-to-end seconds, peak
RSS, RSS growth, the ratios to ``raw`` and the agreement of masks with ``raw`` (IoU per
frame and object). It also measures the machine's matmul peak (float32 and bf16, the
threads the modes use) and counts each frame's FLOPs at every resolution
(``bench_flops.py``), and prints each mode's mean seconds per frame against what those
FLOPs take at the peak (bf16 peak for bf16 modes), with the CPU's model and bf16/AMX flags
above every table. Weights are random (timing does not depend on their values), so masks
are meaningless as segmentations; agreement between modes is still meaningful: the same
model on the same pixels must give the same masks.

The modes themselves are ``engine_modes.py`` (run once per mode, in a child process), the
tables ``engine_report.py``.

Example::

    python benchmarks/bench_engine.py --frames 6
    python benchmarks/bench_engine.py --resolution 256 --frames 30,120
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import engine_report, harness  # noqa: E402
from benchmarks.engine_modes import (  # noqa: E402
    Mode,
    check_resolution,
    folder_digest,
    media_limits,
    parse_mode,
)

MODES_SCRIPT = Path(__file__).resolve().with_name("engine_modes.py")
MAX_OBJECTS = 3
log = harness.log


def prepare_clip(work: Path, args, num_frames: int, checkpoint: Path) -> Path:
    """Write the MP4 and the shared ingested frame folder for one clip length; return the
    job file children read."""
    from sam2web.media.ingest import ingest
    from tests import synth

    clip_dir = work / f"clip{num_frames}"
    shutil.rmtree(clip_dir, ignore_errors=True)
    clip_dir.mkdir(parents=True)
    discs = harness.make_discs(args.width, args.height, args.objects)
    frames = synth.make_frames(
        num_frames=num_frames, height=args.height, width=args.width, discs=discs
    )
    clip = synth.write_video(clip_dir / "clip.mp4", frames, fps=args.fps)
    frames_dir = clip_dir / "frames"
    info = ingest(clip, frames_dir, limits=media_limits(), frame_format="jpeg")
    if info.num_frames != num_frames:
        raise RuntimeError(f"the clip decoded to {info.num_frames} frames, not {num_frames}")
    job = {
        "model": args.model,
        "checkpoint": str(checkpoint),
        "clip": str(clip),
        "frames_dir": str(frames_dir),
        "frames_digest": folder_digest(frames_dir),
        "num_frames": num_frames,
        "width": args.width,
        "height": args.height,
        "clicks": harness.clicks_for(discs),
        "resolution": args.resolution,
        "full_memory_frames": args.full_memory_frames,
        "threads": args.threads,
    }
    job_path = clip_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    return job_path


def run_child(name: str, job_path: Path, timeout_s: float) -> dict:
    """Run mode ``name`` (or ``flops<px>``) in a child process; its result dict."""
    return harness.run_child([MODES_SCRIPT, name, job_path], timeout_s)


def measure_mode(mode: Mode, num_frames: int, job_path: Path, args) -> dict:
    """Run one mode in a child process; run it again (up to --retries times, after waiting
    for the machine to calm down) when other processes took CPU time from it."""
    for attempt in range(1, args.retries + 2):
        load_before = (
            harness.wait_for_idle(args.max_load, args.wait_idle)
            if args.wait_idle > 0
            else harness.load_average()
        )
        log(
            f"{mode.name}: {num_frames} frames at {mode.resolution} px {mode.dtype} "
            f"(load {load_before}, attempt {attempt})"
        )
        result, wall_s = harness.timed(run_child, mode.name, job_path, args.child_timeout)
        result.setdefault("mode", asdict(mode))
        result.setdefault("frames", num_frames)
        result["wall_s"] = wall_s
        result["load_before"] = load_before
        result["load_after"] = harness.load_average()
        result["attempts"] = attempt
        if "error" in result:
            log(f"{mode.name} failed ({result['error']}):\n{result.get('stderr_tail', '')}")
            return result
        log(
            f"{mode.name}: {result['s_per_frame']:.3f} s/frame, e2e {result['e2e_s']:.1f} s, "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB"
        )
        result["contended"] = result.get("others_busy_cores", 0.0) > harness.CONTENDED_CORES
        if not result["contended"]:
            return result
        log(
            f"warning: other processes kept {result['others_busy_cores']:.2f} cores busy while "
            f"{mode.name} was tracking" + ("; running it again" if attempt <= args.retries else "")
        )
    return result


def measure_clip(modes: list[Mode], num_frames: int, work: Path, args, peak: dict) -> list:
    """Every mode on one clip length, with the FLOPs per frame at each resolution, the
    ratios to ``raw`` and the masks' agreement with it."""
    log(
        f"preparing a {args.width}x{args.height} clip of {num_frames} frames, {args.objects} object(s)"
    )
    job_path = prepare_clip(work, args, num_frames, args.checkpoint_path)
    job = json.loads(job_path.read_text())
    flops = {}
    if not args.no_flops:
        for px in sorted({m.resolution for m in modes}):
            log(f"counting FLOPs at {px} px ({num_frames} frames, untimed)")
            flops[px] = run_child(f"flops{px}", job_path, args.child_timeout)
            if "error" in flops[px]:
                log(f"FLOP count failed: {flops[px].get('stderr_tail', '')}")
    by_name: dict[str, dict] = {}
    for mode in modes:
        result = measure_mode(mode, num_frames, job_path, args)
        if "error" not in result:
            result.update(engine_report.limit_fraction(result, flops.get(mode.resolution), peak))
            digest = result.get("frames_digest")
            if digest is not None and digest != job["frames_digest"]:
                log(f"warning: {mode.name} ingested frames differ from the shared folder")
            result["frames_identical"] = digest is None or digest == job["frames_digest"]
            result.update(engine_report.mask_stats(result))
        by_name[mode.name] = result
    reference = by_name.get("raw")
    for result in by_name.values():
        if "error" in result or reference is None or "error" in reference:
            continue
        for key in ("s_per_frame", "peak_rss_mib", "run_peak_rss_mib", "e2e_s"):
            result[f"{key}_vs_raw"] = engine_report.ratio(result, reference, key)
        if result is not reference:
            result.update(engine_report.compare_masks(result, reference))
    return list(by_name.values())


def machine_facts(args) -> tuple[dict, dict]:
    """The machine, its load, torch's threads as every mode runs, the matmul peak and the
    bf16 probe's verdict."""
    from benchmarks.bench_flops import measure_peak
    from sam2web.tracking.accel import bf16_probe

    load_start = (
        harness.wait_for_idle(args.max_load, args.wait_idle)
        if args.wait_idle > 0
        else harness.load_average()
    )
    harness.use_threads(args.threads)
    machine = harness.machine_info()  # torch's threads as every mode's process runs
    machine["load_start"] = load_start
    log(f"{harness.cpu_line(machine)}, torch {machine.get('torch')}, load {load_start}")
    peak = measure_peak()
    machine["peak_gflops"] = peak
    probe = bf16_probe("cpu")
    machine["bf16_probe"] = probe.describe()
    machine["bf16_offered"] = probe.fast
    log(
        f"matmul peak: {peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} GFLOP/s bf16 "
        f"({peak['threads']} threads); bf16 probe: {probe.describe()}"
    )
    return machine, peak


def checkpoint_for(args, work: Path) -> Path:
    from sam2web.tracking.model import write_random_checkpoint

    if args.checkpoint:
        checkpoint = Path(args.checkpoint).expanduser()
        if not checkpoint.is_file():
            raise SystemExit(f"error: the checkpoint {checkpoint} does not exist")
        return checkpoint
    log(f"writing a random-weight {args.model} checkpoint")
    return write_random_checkpoint(work / "random_checkpoint.pt", args.model, seed=0)


def print_report(machine: dict, peak: dict, args, results: list[dict]) -> str:
    from benchmarks.bench_flops import peak_line

    print()
    print(harness.machine_line(machine))
    print(f"Load average (1, 5, 15 min): start {machine['load_start']}, end {machine['load_end']}")
    print(
        f"Clip: {args.width}x{args.height}, {args.objects} object(s), model {args.model} "
        "(random weights), one positive click per object on frame 0"
    )
    print()
    print(peak_line(peak))
    print(f"bf16 probe: {machine['bf16_probe']}")
    print()
    return engine_report.print_tables(results, harness.cpu_line(machine))


def main_parent(args) -> int:
    names = [n for n in (args.modes or "raw,engine").split(",") if n.strip()]
    if args.bf16 and "engine-bf16" not in names:
        names.append("engine-bf16")
    modes = [parse_mode(n, args.resolution) for n in names]
    if len({m.name for m in modes}) != len(modes):
        raise SystemExit("error: a mode is listed twice in --modes")
    try:
        import sam2  # noqa: F401
        import torch  # noqa: F401

        from sam2web.tracking.checkpoints import MODELS
    except ImportError as err:
        raise SystemExit(
            f"error: {err}; run this with the project's virtual environment "
            "(.venv/bin/python benchmarks/bench_engine.py)."
        ) from None
    if args.model.strip().lower() not in MODELS:
        raise SystemExit(f"error: unknown --model {args.model!r}; use one of {', '.join(MODELS)}")
    args.model = args.model.strip().lower()
    machine, peak = machine_facts(args)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sam2web-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    try:
        args.checkpoint_path = checkpoint_for(args, work)
        for num_frames in args.frames:
            results += measure_clip(modes, num_frames, work, args, peak)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    machine["load_end"] = harness.load_average()
    table = print_report(machine, peak, args, results)
    if args.out:
        out = {"machine": machine, "args": vars(args), "results": results, "table": table}
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
        log(f"results written to {args.out}")
    return 1 if any("error" in r for r in results) else 0


def frame_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--frames takes whole numbers separated by commas, got {text!r}"
        ) from None
    if not counts or any(c < 2 for c in counts):
        raise argparse.ArgumentTypeError("each frame count must be at least 2")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument(
        "--frames",
        type=frame_counts,
        default=[20],
        help="clip length in frames; a comma list runs every mode on each length (default 20)",
    )
    parser.add_argument(
        "--objects",
        type=int,
        default=1,
        choices=range(1, MAX_OBJECTS + 1),
        metavar="N",
        help="moving discs to track, 1 to 3 (default 1)",
    )
    parser.add_argument("--width", type=int, default=640, help="clip width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="clip height (default 480)")
    parser.add_argument("--fps", type=float, default=10.0, help="clip frame rate (default 10)")
    parser.add_argument(
        "--model", default="sam2.1-tiny", help="sam2web model key (default sam2.1-tiny)"
    )
    parser.add_argument(
        "--checkpoint", help="checkpoint file; default: a random-weight one written for this run"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=1024,
        help="processing resolution of modes without a number (default 1024)",
    )
    add_run_args(parser)
    return parser


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The modes, and how they are run."""
    parser.add_argument("--modes", help="comma list of modes (default raw,engine)")
    parser.add_argument(
        "--bf16", action="store_true", help="also run engine-bf16 (CPU bfloat16 autocast)"
    )
    harness.add_threads(parser)  # in every mode
    parser.add_argument(
        "--full-memory-frames",
        type=int,
        default=300,
        help="the engine's SAM2WEB_FULL_MEMORY_FRAMES (default 300, as the app)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help=(
            "before every mode, wait up to this long for the 1-minute load average to drop "
            "below --max-load (the load seen is reported either way)"
        ),
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help=(
            "run a mode again, up to this many times, when other processes took CPU time "
            "from its propagation (default 1); such results are marked * in the table"
        ),
    )
    parser.add_argument(
        "--max-load", type=float, default=0.5, help="load average to wait for (default 0.5)"
    )
    parser.add_argument(
        "--child-timeout", type=float, default=3600, help="seconds one mode may run (default 3600)"
    )
    parser.add_argument(
        "--no-flops",
        action="store_true",
        help="skip counting FLOPs per frame (an untimed run per resolution) and the "
        "hardware-limit table",
    )
    parser.add_argument("--out", help="write all results as JSON to this file")
    parser.add_argument("--workdir", help="folder for clips and outputs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.width < 64 or args.height < 64 or args.width % 2 or args.height % 2:
        parser.error("--width and --height must be even and at least 64 (H.264 needs even sizes)")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    if args.threads < 0:
        parser.error("--threads must be 0 (torch's choice) or more")
    if args.fps <= 0:
        parser.error("--fps must be positive")
    try:
        check_resolution(args.resolution)
        for name in (args.modes or "").split(","):
            if name.strip():
                parse_mode(name, args.resolution)
    except ValueError as err:
        parser.error(str(err))
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
