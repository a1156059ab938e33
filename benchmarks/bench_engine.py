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

For every mode and clip length the parent prints seconds per tracked frame (median over the
frames after the first one propagate yields, which is the prompted frame), end-to-end
seconds, peak RSS, RSS growth, the ratios to ``raw`` and the agreement of masks with
``raw`` (IoU per frame and object). It also measures the machine's matmul peak (float32
and bf16, the threads the modes use), counts each frame's FLOPs at every resolution with
torch's FlopCounterMode (one untimed run of the raw flow per resolution) and prints each
mode's mean seconds per frame against what those FLOPs take at the peak (bf16 peak for bf16
modes), and the CPU's model and bf16/AMX flags above every table. Weights are random (timing does not depend on their
values), so masks are meaningless as segmentations; agreement between modes is still
meaningful: the same model on the same pixels must give the same masks.

Example::

    python benchmarks/bench_engine.py --frames 6
    python benchmarks/bench_engine.py --resolution 256 --frames 30,120
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULT_PREFIX = "BENCH_RESULT "
MODE_PATTERN = re.compile(r"^(raw|engine)(\d+)?(-bf16)?(-compile)?$")
MAX_OBJECTS = 3
MIB = 1024 * 1024
# A propagation during which other processes kept more than this many cores busy on
# average (measured from /proc/stat) competed with them for the CPU.
CONTENDED_CORES = 0.15


# ------------------------------------------------------------------------------- modes
@dataclass(frozen=True)
class Mode:
    name: str  # as given on the command line: "engine512-bf16"
    flow: str  # "raw" or "engine"
    resolution: int  # processing size in pixels (square)
    bf16: bool  # bfloat16 autocast on the CPU
    compile: bool = False  # the engine with SAM2WEB_COMPILE=on

    @property
    def dtype(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def parse_mode(name: str, default_resolution: int) -> Mode:
    """``raw``, ``engine``, ``engine512``, ``raw-bf16``, ... -> Mode."""
    match = MODE_PATTERN.match(name.strip())
    if match is None:
        raise ValueError(
            f"unknown mode {name!r}: use raw or engine, optionally followed by a resolution, "
            "-bf16 and (engine only) -compile, e.g. engine512 or engine-bf16-compile"
        )
    flow, size, bf16, compiled = match.groups()
    if compiled and flow != "engine":
        raise ValueError(f"mode {name!r}: -compile applies to the engine only")
    resolution = int(size) if size else default_resolution
    check_resolution(resolution)
    return Mode(name.strip(), flow, resolution, bool(bf16), bool(compiled))


def check_resolution(resolution: int) -> None:
    if resolution < 64 or resolution % 32:
        raise ValueError(f"resolution must be a multiple of 32 and at least 64, got {resolution}")


# ------------------------------------------------------------------------------- clip
def make_discs(width: int, height: int, count: int):
    """Up to three discs placed and moving in proportion to the frame size.

    Speeds are in pixels per frame at 640 px width; over 120 frames the discs stay inside
    the frame and apart.
    """
    from tests.synth import Disc

    s = width / 640.0
    r = min(width, height) / 480.0
    discs = [
        Disc(
            x0=0.20 * width,
            y0=0.45 * height,
            vx=2.0 * s,
            vy=0.3 * s,
            radius=42 * r,
            color=(230, 60, 40),
        ),
        Disc(
            x0=0.80 * width,
            y0=0.20 * height,
            vx=-1.5 * s,
            vy=0.6 * s,
            radius=34 * r,
            color=(40, 90, 230),
        ),
        Disc(
            x0=0.15 * width,
            y0=0.82 * height,
            vx=1.5 * s,
            vy=0.0,
            radius=30 * r,
            color=(60, 190, 80),
        ),
    ]
    return tuple(discs[:count])


def clicks_for(discs) -> list[list[float]]:
    """One positive click per object at its disc's centre on frame 0: [obj_id, x, y]
    in original-frame pixels (x right, y down)."""
    return [[i + 1, float(d.x0), float(d.y0)] for i, d in enumerate(discs)]


def folder_digest(folder: Path) -> str:
    """sha256 over the frame files of an ingested folder, in frame order."""
    from sam2web.media.folder import FrameFolder

    digest = hashlib.sha256()
    for path in FrameFolder(folder).frame_paths():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def media_limits():
    from sam2web.media.limits import MediaLimits
    from sam2web.settings import Settings

    return MediaLimits.from_settings(Settings.from_env({}))  # the app's defaults


# ------------------------------------------------------------------------------- measures
def rss_mib() -> float:
    """Current resident set size of this process (Linux), or NaN where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak RSS of this process so far.

    On Linux this is VmHWM from /proc/self/status, which starts afresh at exec and is reset
    by :func:`reset_peak_rss`. ``ru_maxrss`` is not used there: it keeps the peak of the
    process image before exec, i.e. of the parent that forked the child, so a parent that
    held a long clip in memory would show up in every child's peak.
    """
    if who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
    peak = resource.getrusage(who).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS count for this process (Linux >= 4.0), so a later
    ru_maxrss covers only what follows. Returns False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    """Collect garbage and hand free heap pages back to the OS (glibc ``malloc_trim``)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def after_model_load() -> tuple[float, float, bool]:
    """Called once the model is built: (RSS now, peak RSS of loading, peak reset?).

    The two flows load the weights in different orders and leave different amounts of
    freed-but-resident heap behind; releasing it first makes "RSS growth" start from what
    the model itself holds. Loading holds the checkpoint and the model at once and costs
    the same in every mode; resetting the peak afterwards lets the run's own peak show.
    """
    load_peak = peak_rss_mib()
    release_free_heap()
    return rss_mib(), load_peak, reset_peak_rss()


def system_busy_s() -> float:
    """CPU seconds all processes of the machine have spent busy since boot (Linux), or NaN."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def per_frame_summary(times: list[float], cpu_times: list[float] | None = None) -> dict:
    """Median and mean seconds per frame, leaving out the first frame propagate yields
    (the prompted frame, whose output already exists), and the mean process CPU seconds per
    such frame: with one torch thread, the work a frame takes whatever other processes take
    from the cores (the engine's CPU seconds include its overlay video thread)."""
    steady = times[1:]
    cpu_steady = (cpu_times or [])[1:]
    return {
        "cpu_s_per_frame": statistics.fmean(cpu_steady) if cpu_steady else float("nan"),
        "s_per_frame": statistics.median(steady) if steady else float("nan"),
        "s_per_frame_mean": statistics.fmean(steady) if steady else float("nan"),
        "first_yield_s": times[0] if times else float("nan"),
    }


def machine_info() -> dict:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        if names:
            info["cpu"] = names[0].strip()
        flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
        if flags:
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
            have = set(flags.group(1).split())
            info["cpu_flags"] = (
                " ".join(f for f in wanted if f in have) or "none of avx2/avx512/amx"
            )
    with contextlib.suppress(AttributeError, OSError):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
        info["memory_gib"] = round(kib / 1024 / 1024, 1)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = "not installed"
    from importlib import metadata

    for package in ("sam2", "numpy", "opencv-python-headless", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    return info


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def wait_for_idle(max_load: float, timeout_s: float) -> list[float]:
    """Poll the 1-minute load average until it is below ``max_load`` or ``timeout_s``
    passed; returns the load seen last."""
    deadline = time.monotonic() + timeout_s
    load = load_average()
    while load and load[0] >= max_load and time.monotonic() < deadline:
        log(
            f"load average {load[0]:.2f} >= {max_load}; waiting "
            f"({deadline - time.monotonic():.0f} s left)"
        )
        time.sleep(min(15.0, max(1.0, deadline - time.monotonic())))
        load = load_average()
    return load


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- child
def run_raw(job: dict, mode: Mode) -> tuple[dict, dict]:
    """Meta's tutorial flow. Returns (timings, {frame: {obj_id: mask}})."""
    import numpy as np
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from sam2web.tracking.model import get_spec, hydra_overrides, silence_missing_extension_warning

    silence_missing_extension_warning()
    spec = get_spec(job["model"])
    started = time.perf_counter()
    predictor = build_sam2_video_predictor(
        spec.config,
        job["checkpoint"],
        device="cpu",
        hydra_overrides_extra=hydra_overrides(mode.resolution, "keep"),
    )
    loaded = time.perf_counter()
    rss_loaded, load_peak, peak_reset = after_model_load()

    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if mode.bf16 else contextlib.nullcontext()
    )
    times: list[float] = []
    cpu_times: list[float] = []  # process CPU seconds per frame, all threads
    rss_frames: list[float] = []
    with torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        state = predictor.init_state(video_path=job["frames_dir"])
        t1 = time.perf_counter()
        rss_stages = {"init_state": rss_mib()}
        for obj_id, x, y in job["clicks"]:
            predictor.add_new_points_or_box(
                state,
                frame_idx=0,
                obj_id=obj_id,
                points=np.array([[x, y]], dtype=np.float32),
                labels=np.array([1], np.int32),
            )
        t2 = time.perf_counter()
        cpu2, busy2 = time.process_time(), system_busy_s()
        rss_stages["prompts"] = rss_mib()
        video_segments = {}  # as in the notebook: {frame: {obj_id: (1, H, W) bool}}
        last, last_cpu = t2, cpu2
        for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagate_in_video(state):
            video_segments[out_frame_idx] = {
                out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy()
                for i, out_obj_id in enumerate(out_obj_ids)
            }
            now, cpu_now = time.perf_counter(), time.process_time()
            times.append(now - last)
            cpu_times.append(cpu_now - last_cpu)
            rss_frames.append(rss_mib())
            last, last_cpu = now, cpu_now
        t3 = time.perf_counter()
        cpu3, busy3 = time.process_time(), system_busy_s()
        rss_stages["propagate"] = rss_mib()

    timings = {
        "load_s": loaded - started,
        "stages": {"init_state": t1 - t0, "prompts": t2 - t1, "propagate": t3 - t2},
        "track_s": t3 - t1,
        "e2e_s": t3 - t0,
        "frame_times": times,
        "frame_cpu_times": cpu_times,
        # CPU seconds of all threads per wall second while propagating: about the thread
        # count on an idle machine, less when other processes compete for the cores
        "propagate_cpu_per_wall": (cpu3 - cpu2) / (t3 - t2),
        # cores that other processes kept busy, on average, while propagating
        "others_busy_cores": max(0.0, (busy3 - busy2) - (cpu3 - cpu2)) / (t3 - t2),
        "rss_loaded_mib": rss_loaded,
        "load_peak_rss_mib": load_peak,
        "rss_end_mib": rss_mib(),  # model and state still alive
        "peak_reset": peak_reset,
        "rss_frames_mib": rss_frames,
        "rss_after_stage_mib": rss_stages,
        "frames_held_by_state_mib": len(state["images"])
        * state["images"][0].numel()
        * state["images"][0].element_size()
        / MIB,
    }
    masks = {f: {o: m[0] for o, m in objs.items()} for f, objs in video_segments.items()}
    return timings, masks


def run_engine(job: dict, mode: Mode, work: Path) -> tuple[dict, dict]:
    """sam2web end to end. Returns (timings, {frame: {obj_id: mask}})."""

    from sam2web.analysis.results import measurements
    from sam2web.media.folder import FrameFolder
    from sam2web.media.ingest import ingest
    from sam2web.outputs.exports import write_csv
    from sam2web.outputs.render import LiveOverlayVideo, OverlayStyle
    from sam2web.tracking.accel import compile_predictor
    from sam2web.tracking.model import (
        autocast_context,
        build_predictor,
        cpu_supports_bf16,
        get_spec,
    )
    from sam2web.tracking.tracker import TrackingSession
    from sam2web.types import Click

    started = time.perf_counter()
    predictor = build_predictor(
        get_spec(job["model"]),
        job["checkpoint"],
        device="cpu",
        image_size=mode.resolution,
        corrections="keep",
    )
    if mode.compile:
        # Forced here to measure it; SAM2WEB_COMPILE=auto compiles only where it wins.
        predictor.sam2web_compile = compile_predictor(predictor, "bf16" if mode.bf16 else "all")
    loaded = time.perf_counter()
    rss_loaded, load_peak, peak_reset = after_model_load()

    # The page's qualities: "full-bf16" is forced here to measure it even where the probe
    # would not offer it (sam2web.tracking.accel.available_qualities); "full" is float32.
    quality = "full-bf16" if mode.bf16 else "full"

    def autocast():
        return autocast_context("cpu", quality=quality)

    shutil.rmtree(work, ignore_errors=True)
    frames_dir, masks_dir, exports_dir = work / "frames", work / "masks", work / "exports"
    exports_dir.mkdir(parents=True)
    times: list[float] = []
    cpu_times: list[float] = []  # process CPU seconds per frame, all threads
    rss_frames: list[float] = []

    t0 = time.perf_counter()
    info = ingest(Path(job["clip"]), frames_dir, limits=media_limits(), frame_format="jpeg")
    folder = FrameFolder(frames_dir)
    t1 = time.perf_counter()
    rss_stages = {"decode": rss_mib()}
    session = TrackingSession(
        predictor,
        folder.frame_paths(),
        info,
        masks_dir,
        full_memory_frames=job["full_memory_frames"],
        autocast=autocast,
    )
    for obj_id, x, y in job["clicks"]:
        obj = session.add_object(f"disc {obj_id}")
        if obj.obj_id != obj_id:
            raise RuntimeError(f"expected object id {obj_id}, the session gave {obj.obj_id}")
        session.add_click(0, obj_id, Click(x, y, True))
    t2 = time.perf_counter()
    cpu2, busy2 = time.process_time(), system_busy_s()
    rss_stages["prompts"] = rss_mib()
    # As the app does: the overlay video is rendered and encoded beside tracking.
    live = LiveOverlayVideo(
        folder.read_rgb,
        info.num_frames,
        session.store,
        session.objects,
        OverlayStyle(),
        exports_dir / "sam2web_overlay.mp4",
        info.fps,
        pending=session.planned_frames("forward"),
    )
    last, last_cpu = t2, cpu2
    for step in session.propagate("forward"):
        live.frame_done(step.result.frame_idx)
        now, cpu_now = time.perf_counter(), time.process_time()
        times.append(now - last)
        cpu_times.append(cpu_now - last_cpu)
        rss_frames.append(rss_mib())
        last, last_cpu = now, cpu_now
    t3 = time.perf_counter()
    cpu3, busy3 = time.process_time(), system_busy_s()
    rss_stages["propagate"] = rss_mib()
    written_while_tracking = live.frames_written
    objects = list(session.objects.values())
    write_csv(measurements(session.store, objects, info), exports_dir / "sam2web_tracks.csv")
    t4 = time.perf_counter()
    rss_stages["csv"] = rss_mib()
    video = live.finish()  # the frames rendering still had to do after tracking
    t5 = time.perf_counter()
    rss_stages["render_encode"] = rss_mib()

    timings = {
        "load_s": loaded - started,
        "compile_s": getattr(predictor, "sam2web_compile", {}).get("seconds"),
        "stages": {
            "decode": t1 - t0,
            "prompts": t2 - t1,
            "propagate": t3 - t2,
            "csv": t4 - t3,
            "render_encode": t5 - t4,
        },
        "track_s": t3 - t1,
        "e2e_s": t5 - t0,
        "frame_times": times,
        "frame_cpu_times": cpu_times,
        # CPU seconds of all threads per wall second while propagating: about the thread
        # count on an idle machine, less when other processes compete for the cores
        "propagate_cpu_per_wall": (cpu3 - cpu2) / (t3 - t2),
        # cores that other processes kept busy, on average, while propagating
        "others_busy_cores": max(0.0, (busy3 - busy2) - (cpu3 - cpu2)) / (t3 - t2),
        "rss_loaded_mib": rss_loaded,
        "load_peak_rss_mib": load_peak,
        "rss_end_mib": rss_mib(),  # model and state still alive
        "peak_reset": peak_reset,
        "rss_frames_mib": rss_frames,
        "rss_after_stage_mib": rss_stages,
        "frame_loads": session.frames.loads,
        "video_frames_written_while_tracking": written_while_tracking,
        "trimmed": session.trim,
        "held_mib": {k: v / MIB for k, v in session.held_bytes().items()},
        "overlay_mp4_kib": video.stat().st_size / 1024,
        "frames_digest": folder_digest(frames_dir),
        "bf16_native_cpu": cpu_supports_bf16(),
    }
    # The engine keeps masks on disk; gathering them in memory for the agreement check
    # below is the benchmark's doing, so the run's peak is read before it.
    timings["peak_before_masks_mib"] = peak_rss_mib()
    masks = {}
    for frame_idx in session.store.frames():
        result = session.store.read(frame_idx)
        if result is not None:
            masks[frame_idx] = dict(result.masks)
    return timings, masks


# FlopCounterMode names a module by its class when it is called on its own (sam2 calls the
# parts, never the predictor's forward), else by its attribute path.
PART_CLASSES = {
    "image_encoder": "ImageEncoder",
    "memory_attention": "MemoryAttention",
    "sam_mask_decoder": "MaskDecoder",
    "sam_prompt_encoder": "PromptEncoder",
    "memory_encoder": "MemoryEncoder",
}


def _is_part(name: str, part: str) -> bool:
    return name == PART_CLASSES[part] or name.endswith(f".{part}")


def count_flops(job: dict, resolution: int) -> dict:
    """FLOPs of every frame the raw flow tracks at ``resolution`` (torch's FlopCounterMode,
    float32, an untimed run): per frame, and per part of the model over the frames after
    the first one propagate yields (the frames timed)."""
    import numpy as np
    import torch
    from sam2.build_sam import build_sam2_video_predictor
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from sam2web.tracking.model import get_spec, hydra_overrides, silence_missing_extension_warning

    silence_missing_extension_warning()
    predictor = build_sam2_video_predictor(
        get_spec(job["model"]).config,
        job["checkpoint"],
        device="cpu",
        hydra_overrides_extra=hydra_overrides(resolution, "keep"),
    )

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        # On the CPU, attention runs as this op, which FlopCounterMode does not know.
        return sdpa_flop_count(query, key, value)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    per_frame: list[float] = []
    parts_before: dict[str, int] = {}
    parts = ("image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder")

    def part_totals() -> dict[str, int]:
        counts = counter.get_flop_counts()
        out = {}
        for part in parts:
            out[part] = sum(
                sum(ops.values()) for name, ops in counts.items() if _is_part(name, part)
            )
        out["total"] = int(counter.get_total_flops())
        return out

    with torch.inference_mode(), counter:
        state = predictor.init_state(video_path=job["frames_dir"])
        for obj_id, x, y in job["clicks"]:
            predictor.add_new_points_or_box(
                state,
                frame_idx=0,
                obj_id=obj_id,
                points=np.array([[x, y]], dtype=np.float32),
                labels=np.array([1], np.int32),
            )
        last = counter.get_total_flops()
        for i, _ in enumerate(predictor.propagate_in_video(state)):
            now = counter.get_total_flops()
            per_frame.append(float(now - last))
            last = now
            if i == 0:
                parts_before = part_totals()
        parts_after = part_totals()
    steady = max(1, len(per_frame) - 1)
    by_part = {k: (parts_after[k] - parts_before.get(k, 0)) / steady for k in parts_after}
    by_part["other"] = by_part["total"] - sum(by_part[p] for p in parts)
    return {"resolution": resolution, "per_frame": per_frame, "steady_by_part": by_part}


def measure_peak(seconds: float = 1.0) -> dict:
    """This machine's matmul throughput in GFLOP/s (float32 and bfloat16, square matrices
    of 2,048 and 4,096, best of repeated runs for ``seconds`` each), with torch's current
    thread count: per wall second (``fp32``, ``bf16``) and per process CPU second times the
    thread count (``fp32_cpu``, ``bf16_cpu``: what the threads do while they run, which
    other processes on the machine do not lower)."""
    import torch

    best: dict[str, float] = {}
    for n in (2048, 4096):
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            x, y = a.to(dtype), b.to(dtype)
            x @ y  # warm-up
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                t, c = time.perf_counter(), time.process_time()
                x @ y
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                best[name] = max(best.get(name, 0.0), 2 * n**3 / wall / 1e9)
                per_cpu = 2 * n**3 / max(cpu, 1e-9) / 1e9 * torch.get_num_threads()
                best[f"{name}_cpu"] = max(best.get(f"{name}_cpu", 0.0), per_cpu)
    best["threads"] = torch.get_num_threads()
    return best


def run_one(mode_name: str, job_path: Path, as_json: bool) -> int:
    """Child process: run one mode on one prepared clip, save its masks, report."""
    import numpy as np
    import torch

    job = json.loads(job_path.read_text())
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    if mode_name.startswith("flops"):
        result = count_flops(job, int(mode_name[len("flops") :]))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    mode = parse_mode(mode_name, job["resolution"])
    job_dir = job_path.parent
    rss_start = rss_mib()
    if mode.flow == "raw":
        timings, masks = run_raw(job, mode)
    else:
        timings, masks = run_engine(job, mode, job_dir / f"ws-{mode.name}")
    # Read before the mask array below is built, which would add to the peak (the engine
    # read it before gathering its masks from disk).
    run_peak = timings.pop("peak_before_masks_mib", None) or peak_rss_mib()
    peak = max(run_peak, timings["load_peak_rss_mib"])

    n, height, width = job["num_frames"], job["height"], job["width"]
    obj_ids = [c[0] for c in job["clicks"]]
    stacked = np.zeros((n, len(obj_ids), height, width), dtype=bool)
    present = np.zeros((n, len(obj_ids)), dtype=bool)
    for f, objs in masks.items():
        for j, obj_id in enumerate(obj_ids):
            if obj_id in objs:
                stacked[f, j] = objs[obj_id]
                present[f, j] = True
    masks_path = job_dir / f"{mode.name}.npz"
    np.savez_compressed(
        masks_path,
        masks=np.packbits(stacked, axis=-1),
        present=present,
        shape=np.array(stacked.shape),
    )

    result = {
        "mode": asdict(mode),
        "frames": n,
        "objects": len(obj_ids),
        **timings,
        **per_frame_summary(timings["frame_times"], timings.get("frame_cpu_times")),
        "peak_rss_mib": peak,  # whole process: model loading included
        # from the end of model loading to the end of the run (whole process where the
        # kernel cannot reset the count)
        "run_peak_rss_mib": run_peak if timings["peak_reset"] else float("nan"),
        "rss_start_mib": rss_start,
        "rss_growth_mib": timings["rss_end_mib"] - timings["rss_loaded_mib"],
        "torch_threads": torch.get_num_threads(),
        "masks_path": str(masks_path),
    }
    if as_json:
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    else:
        print(
            f"{mode.name}: {result['s_per_frame']:.3f} s/frame, e2e {result['e2e_s']:.1f} s, "
            f"peak RSS {peak:.0f} MiB"
        )
    return 0


# ------------------------------------------------------------------------------- parent
def prepare_clip(work: Path, args, num_frames: int, checkpoint: Path) -> Path:
    """Write the MP4 and the shared ingested frame folder for one clip length; return the
    job file children read."""
    from sam2web.media.ingest import ingest
    from tests import synth

    clip_dir = work / f"clip{num_frames}"
    shutil.rmtree(clip_dir, ignore_errors=True)
    clip_dir.mkdir(parents=True)
    discs = make_discs(args.width, args.height, args.objects)
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
        "clicks": clicks_for(discs),
        "resolution": args.resolution,
        "full_memory_frames": args.full_memory_frames,
        "threads": args.threads,
    }
    job_path = clip_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    return job_path


def run_child(name: str, job_path: Path, timeout_s: float) -> dict:
    """Run mode ``name`` (or ``flops<px>``) in a child process; its result dict."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-one",
        name,
        "--job",
        str(job_path),
        "--json",
    ]
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return {"error": f"exit status {proc.returncode}", "stderr_tail": tail}


def load_masks(path: str):
    import numpy as np

    with np.load(path) as data:
        shape = tuple(int(v) for v in data["shape"])
        masks = np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool)
        return masks.reshape(shape), data["present"]


def compare_masks(result: dict, reference: dict) -> dict:
    """IoU of every (frame, object) mask with the reference run's; both empty counts as 1."""
    import numpy as np

    masks, present = load_masks(result["masks_path"])
    ref, ref_present = load_masks(reference["masks_path"])
    if masks.shape != ref.shape:
        return {
            "iou_mean": float("nan"),
            "iou_min": float("nan"),
            "iou_note": f"shapes differ {masks.shape} vs {ref.shape}",
        }
    inter = np.logical_and(masks, ref).sum(axis=(2, 3))
    union = np.logical_or(masks, ref).sum(axis=(2, 3))
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return {
        "iou_mean": float(iou.mean()),
        "iou_min": float(iou.min()),
        "identical_frames": int(np.all(masks == ref, axis=(1, 2, 3)).sum()),
        "missing_frames": int((~present).any(axis=1).sum() + (~ref_present).any(axis=1).sum()),
    }


def mask_stats(result: dict) -> dict:
    masks, _ = load_masks(result["masks_path"])
    areas = masks.sum(axis=(2, 3)) / (masks.shape[2] * masks.shape[3])
    return {
        "nonempty_fraction": float((areas > 0).mean()),
        "mean_area_fraction": float(areas.mean()),
    }


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.{digits}f}{suffix}"


def overhead_pct(r: dict) -> float | None:
    """Engine: (decode + session setup + CSV + render/encode) / (prompts + propagation)."""
    if r["mode"]["flow"] != "engine":
        return None
    st = r["stages"]
    model = st["prompts"] + st["propagate"]
    return 100.0 * (r["e2e_s"] - model) / model


def with_ratio(value, ratio, digits: int) -> str:
    text = fmt(value, digits)
    return text if ratio is None or text == "—" else f"{text} ({ratio:.2f})"


def ratio(r: dict, ref: dict | None, key: str) -> float | None:
    if ref is None or "error" in ref or "error" in r:
        return None
    a, b = r.get(key), ref.get(key)
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def print_tables(results: list[dict], cpu: str = "") -> str:
    """Print (and return) the summary, hardware-limit and stage tables as Markdown, each
    headed by the CPU line ``cpu``."""
    lines = [
        cpu,
        "",
        "| frames | mode | px | dtype | obj | s/frame (×raw) | raw / mode | CPU s/frame "
        "| raw / mode (CPU s) | track s | e2e s | overhead | peak RSS MiB (×raw) "
        "| run peak MiB (×raw) | RSS growth MiB | IoU mean | IoU min | non-empty |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    refs = {r["frames"]: r for r in results if r["mode"]["name"] == "raw"}
    for r in results:
        m = r["mode"]
        head = (
            f"| {r['frames']} | {m['name']} | {m['resolution']} | "
            f"{'bf16' if m['bf16'] else 'fp32'} |"
        )
        if "error" in r:
            lines.append(f"{head} | failed: {r['error']} | | | | | | | | | | | | |")
            continue
        ref = refs.get(r["frames"])
        is_ref = ref is r
        if r.get("contended"):
            head = head.replace(f"| {m['name']} |", f"| {m['name']}* |", 1)
        speed = ratio(r, ref, "s_per_frame")
        cpu_speed = ratio(r, ref, "cpu_s_per_frame")
        lines.append(
            f"{head} {r['objects']} | "
            f"{with_ratio(r['s_per_frame'], speed, 3)} | "
            f"{fmt(1 / speed if speed else None, 2, '×')} | "
            f"{fmt(r.get('cpu_s_per_frame'), 3)} | "
            f"{fmt(1 / cpu_speed if cpu_speed else None, 2, '×')} | "
            f"{fmt(r['track_s'], 1)} | {fmt(r['e2e_s'], 1)} | "
            f"{fmt(overhead_pct(r), 1, ' %')} | "
            f"{with_ratio(r['peak_rss_mib'], ratio(r, ref, 'peak_rss_mib'), 0)} | "
            f"{with_ratio(r['run_peak_rss_mib'], ratio(r, ref, 'run_peak_rss_mib'), 0)} | "
            f"{fmt(r['rss_growth_mib'], 0)} | "
            f"{'ref' if is_ref else fmt(r.get('iou_mean'), 4)} | "
            f"{'ref' if is_ref else fmt(r.get('iou_min'), 4)} | "
            f"{fmt(100 * r['nonempty_fraction'], 0, ' %')} |"
        )
    lines += [
        "",
        cpu,
        "",
        "| frames | mode | px | dtype | GFLOP/frame | of which encoder / memory attention / "
        "decoder + memory encoder / rest | mean s/frame | limit s/frame | of the limit "
        "| CPU s/frame | limit CPU s/frame | of the limit (CPU) |",
        "|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r or "gflop_per_frame" not in r:
            continue
        parts = r["gflop_by_part"]
        split = " / ".join(
            fmt(v, 1)
            for v in (
                parts["image_encoder"],
                parts["memory_attention"],
                parts["sam_mask_decoder"] + parts["memory_encoder"],
                parts["other"],
            )
        )
        lines.append(
            f"| {r['frames']} | {r['mode']['name']} | {r['mode']['resolution']} | "
            f"{'bf16' if r['mode']['bf16'] else 'fp32'} | {fmt(r['gflop_per_frame'], 1)} | "
            f"{split} | {fmt(r['s_per_frame_mean'], 3)} | {fmt(r['limit_s_per_frame'], 3)} | "
            f"{fmt(100 * r['peak_fraction'], 1, ' %')} | {fmt(r['cpu_s_per_frame'], 3)} | "
            f"{fmt(r['limit_cpu_s_per_frame'], 3)} | {fmt(100 * r['peak_fraction_cpu'], 1, ' %')} |"
        )
    lines += [
        "",
        cpu,
        "",
        "| frames | mode | load s | init_state / decode s | prompts s | propagate s | CSV s "
        "| video left after tracking s | e2e s | first yield s | mean s/frame | frame reads | CPU/wall "
        "| others' cores | load before |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            continue
        st = r["stages"]
        first = st.get("init_state", st.get("decode"))
        lines.append(
            f"| {r['frames']} | {r['mode']['name']} | {fmt(r['load_s'], 1)} | {fmt(first, 2)} | "
            f"{fmt(st['prompts'], 2)} | {fmt(st['propagate'], 1)} | {fmt(st.get('csv'), 2)} | "
            f"{fmt(st.get('render_encode'), 2)} | {fmt(r['e2e_s'], 1)} | "
            f"{fmt(r['first_yield_s'], 2)} | {fmt(r['s_per_frame_mean'], 3)} | "
            f"{r.get('frame_loads', r['frames'])} | {fmt(r['propagate_cpu_per_wall'], 2)} | "
            f"{fmt(r.get('others_busy_cores'), 2)} | "
            f"{fmt((r.get('load_before') or [None])[0], 2)} |"
        )
    if any(r.get("contended") for r in results):
        lines += ["", "\\* other processes took CPU time from this run; its times are inflated."]
    table = "\n".join(lines)
    print(table)
    return table


def limit_fraction(result: dict, flops: dict | None, peak: dict) -> dict:
    """GFLOP per timed frame (mean over the frames after the first one propagate yields,
    counted by FlopCounterMode) and the seconds the matmul peak would need for them (bf16
    peak for bf16 modes, fp32 peak otherwise), as a fraction of the mean seconds per frame:
    in wall seconds, and in CPU seconds (peak per CPU second against the mode's CPU seconds
    per frame, the figure a busy machine does not distort)."""
    if not flops or "error" in flops or len(flops["per_frame"]) < 2:
        return {}
    steady = flops["per_frame"][1:]
    gflop = statistics.fmean(steady) / 1e9
    dtype = "bf16" if result["mode"]["bf16"] else "fp32"
    limit_s = gflop / peak[dtype]
    threads = max(1, int(peak.get("threads", 1)))
    limit_cpu_s = gflop / peak[f"{dtype}_cpu"] * threads
    return {
        "gflop_per_frame": gflop,
        "gflop_by_part": {k: v / 1e9 for k, v in flops["steady_by_part"].items()},
        "limit_s_per_frame": limit_s,
        "peak_fraction": limit_s / result["s_per_frame_mean"],
        "limit_cpu_s_per_frame": limit_cpu_s,
        "peak_fraction_cpu": limit_cpu_s / result["cpu_s_per_frame"],
    }


def cpu_line(machine: dict) -> str:
    return (
        f"CPU: {machine['cpu']} ({machine.get('cpu_flags', '?')}), "
        f"{machine.get('usable_cores', machine['cores'])} cores, "
        f"{machine.get('torch_threads')} torch threads"
    )


def contended(result: dict) -> bool:
    """True when other processes used the CPU while this mode was propagating."""
    return result.get("others_busy_cores", 0.0) > CONTENDED_CORES


def measure_mode(mode: Mode, num_frames: int, job_path: Path, args) -> dict:
    """Run one mode in a child process; run it again (up to --retries times, after waiting
    for the machine to calm down) when other processes took CPU time from it."""
    for attempt in range(1, args.retries + 2):
        load_before = (
            wait_for_idle(args.max_load, args.wait_idle) if args.wait_idle > 0 else load_average()
        )
        log(
            f"{mode.name}: {num_frames} frames at {mode.resolution} px {mode.dtype} "
            f"(load {load_before}, attempt {attempt})"
        )
        started = time.perf_counter()
        result = run_child(mode.name, job_path, args.child_timeout)
        result.setdefault("mode", asdict(mode))
        result.setdefault("frames", num_frames)
        result["wall_s"] = time.perf_counter() - started
        result["load_before"] = load_before
        result["load_after"] = load_average()
        result["attempts"] = attempt
        if "error" in result:
            log(f"{mode.name} failed ({result['error']}):\n{result.get('stderr_tail', '')}")
            return result
        log(
            f"{mode.name}: {result['s_per_frame']:.3f} s/frame, e2e {result['e2e_s']:.1f} s, "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB"
        )
        result["contended"] = contended(result)
        if not result["contended"]:
            return result
        log(
            f"warning: other processes kept {result['others_busy_cores']:.2f} cores busy while "
            f"{mode.name} was tracking" + ("; running it again" if attempt <= args.retries else "")
        )
    return result


def main_parent(args) -> int:
    default_modes = ["raw", "engine"]
    names = [n for n in (args.modes.split(",") if args.modes else default_modes) if n.strip()]
    if args.bf16 and "engine-bf16" not in names:
        names.append("engine-bf16")
    modes = [parse_mode(n, args.resolution) for n in names]
    if len({m.name for m in modes}) != len(modes):
        raise SystemExit("error: a mode is listed twice in --modes")

    try:
        import sam2  # noqa: F401
        import torch  # noqa: F401

        from sam2web.tracking.model import MODELS, write_random_checkpoint
    except ImportError as err:
        raise SystemExit(
            f"error: {err}; run this with the project's virtual environment "
            "(.venv/bin/python benchmarks/bench_engine.py)."
        ) from None
    if args.model.strip().lower() not in MODELS:
        raise SystemExit(f"error: unknown --model {args.model!r}; use one of {', '.join(MODELS)}")
    args.model = args.model.strip().lower()

    if args.wait_idle > 0:
        load_start = wait_for_idle(args.max_load, args.wait_idle)
    else:
        load_start = load_average()
    machine = machine_info()
    machine["load_start"] = load_start
    log(
        f"{machine['cpu']}, {machine.get('usable_cores')} cores, torch {machine.get('torch')}, "
        f"{machine.get('torch_threads')} threads, load {load_start}"
    )

    import torch

    from sam2web.tracking.accel import bf16_probe

    if args.threads:
        torch.set_num_threads(args.threads)
    machine["torch_threads"] = torch.get_num_threads()  # as every mode's process runs
    peak = measure_peak()
    machine["peak_gflops"] = peak
    probe = bf16_probe("cpu")
    machine["bf16_probe"] = probe.describe()
    machine["bf16_offered"] = probe.fast
    log(
        f"matmul peak: {peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} GFLOP/s bf16 "
        f"({peak['threads']} threads); bf16 probe: {probe.describe()}"
    )

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sam2web-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    try:
        if args.checkpoint:
            checkpoint = Path(args.checkpoint).expanduser()
            if not checkpoint.is_file():
                raise SystemExit(f"error: the checkpoint {checkpoint} does not exist")
        else:
            checkpoint = work / "random_checkpoint.pt"
            log(f"writing a random-weight {args.model} checkpoint")
            write_random_checkpoint(checkpoint, args.model, seed=0)

        for num_frames in args.frames:
            log(
                f"preparing a {args.width}x{args.height} clip of {num_frames} frames, "
                f"{args.objects} object(s)"
            )
            job_path = prepare_clip(work, args, num_frames, checkpoint)
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
                    result.update(limit_fraction(result, flops.get(mode.resolution), peak))
                    digest = result.get("frames_digest")
                    if digest is not None and digest != job["frames_digest"]:
                        log(f"warning: {mode.name} ingested frames differ from the shared folder")
                    result["frames_identical"] = digest is None or digest == job["frames_digest"]
                    result.update(mask_stats(result))
                by_name[mode.name] = result
                results.append(result)

            reference = by_name.get("raw")
            for result in by_name.values():
                if "error" in result or reference is None or "error" in reference:
                    continue
                for key in ("s_per_frame", "peak_rss_mib", "run_peak_rss_mib", "e2e_s"):
                    result[f"{key}_vs_raw"] = ratio(result, reference, key)
                if result is not reference:
                    result.update(compare_masks(result, reference))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")

    machine["load_end"] = load_average()
    print()
    print(
        f"Machine: {machine['cpu']} ({machine.get('cpu_flags', '?')}), "
        f"{machine.get('usable_cores', machine['cores'])} cores, "
        f"{machine.get('memory_gib', '?')} GiB RAM; torch {machine.get('torch')}, "
        f"{machine.get('torch_threads')} threads; sam2 {machine.get('sam2', '?')}; "
        f"Python {machine['python']}"
    )
    print(f"Load average (1, 5, 15 min): start {machine['load_start']}, end {machine['load_end']}")
    print(
        f"Clip: {args.width}x{args.height}, {args.objects} object(s), model {args.model} "
        "(random weights), one positive click per object on frame 0"
    )
    print()
    print(
        f"Matmul peak here: {peak['fp32']:.0f} GFLOP/s float32, {peak['bf16']:.0f} GFLOP/s "
        f"bfloat16 per wall second; {peak['fp32_cpu']:.0f} and {peak['bf16_cpu']:.0f} per "
        f"CPU second of each thread ({peak['threads']} threads, best square matmul of 2048 "
        "and 4096)"
    )
    print(f"bf16 probe: {machine['bf16_probe']}")
    print()
    table = print_tables(results, cpu_line(machine))
    if args.out:
        out = {"machine": machine, "args": vars(args), "results": results, "table": table}
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
        log(f"results written to {args.out}")
    return 1 if any("error" in r for r in results) else 0


# ------------------------------------------------------------------------------- CLI
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
    parser = argparse.ArgumentParser(
        description="Time sam2's tutorial flow (raw) against the sam2web engine on the same "
        "synthetic clip and clicks; each mode runs in its own subprocess.",
        epilog="Modes: raw, engine, optionally with a resolution (engine512) and -bf16 "
        "(engine-bf16). Example: %(prog)s --frames 6; "
        "%(prog)s --resolution 256 --frames 30,120",
    )
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
    parser.add_argument("--modes", help="comma list of modes (default raw,engine)")
    parser.add_argument(
        "--bf16", action="store_true", help="also run engine-bf16 (CPU bfloat16 autocast)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads in each mode (default: torch's own choice)",
    )
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
    parser.add_argument("--run-one", metavar="MODE", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_one:
        if not args.job:
            parser.error("--run-one needs --job")
        try:
            return run_one(args.run_one, Path(args.job), args.json)
        except Exception:
            traceback.print_exc()
            return 1
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
