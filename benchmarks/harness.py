"""What the benchmarks share, so that each benchmark file says only what it measures.

* machine facts: the CPU model and the flags that decide its speed (avx2, avx512f,
  avx512_bf16, amx_bf16, amx_tile) from /proc/cpuinfo, cores, memory, torch (and its
  threads), sam2 and Python (:func:`machine_info`, :func:`machine_line`, :func:`cpu_line`),
  and the machine's load meanwhile (:func:`load_average`, :func:`wait_for_idle`,
  :func:`system_busy_s`);
* timing: :func:`timed`, :class:`Steps`, :class:`FrameClock`, :func:`per_frame_summary`;
* memory: current and peak RSS, and :func:`run_child` / :func:`report_result` for a
  measurement in a process of its own, whose peak RSS is then its own;
* tables (:func:`table`, Markdown or aligned text; :func:`fmt`) and arguments
  (:func:`parser`, ``--threads``);
* the synthetic clip of moving discs, the raw predictor's prompts and FLOPs per model part.

Benchmarks run as scripts: they put the repository root on ``sys.path``, then
``from benchmarks import harness``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
RESULT_PREFIX = "BENCH_RESULT "
# A measurement during which other processes kept more than this many cores busy on
# average (from /proc/stat) competed with them for the CPU.
CONTENDED_CORES = 0.15


def log(message: str, who: str = "bench") -> None:
    print(f"[{who}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- machine
def machine_info() -> dict:
    """CPU model and flags, cores, memory, torch (with its current thread count), sam2 and
    the other packages' versions, Python."""
    info: dict[str, Any] = {
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
            have = set(flags.group(1).split())
            shown = " ".join(f for f in CPU_FLAGS if f in have)
            info["cpu_flags"] = shown or "none of avx2/avx512/amx"
    with contextlib.suppress(AttributeError, OSError):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError, IndexError, AttributeError):
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
        info["memory_gib"] = round(kib / 1024 / 1024, 1)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = "not installed"
    for package in ("sam2", "numpy", "opencv-python-headless", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    return info


def _cpu(info: dict) -> str:
    return (
        f"{info['cpu']} ({info.get('cpu_flags', '?')}), "
        f"{info.get('usable_cores', info['cores'])} cores"
    )


def cpu_line(info: dict | None = None) -> str:
    """``CPU: <model> (<flags>), <n> cores, <t> torch threads``: the line above each table."""
    info = info or machine_info()
    return f"CPU: {_cpu(info)}, {info.get('torch_threads')} torch threads"


def machine_line(info: dict | None = None) -> str:
    """Everything :func:`machine_info` knows that decides speed, on one line."""
    info = info or machine_info()
    return (
        f"Machine: {_cpu(info)}, {info.get('memory_gib', '?')} GiB RAM; "
        f"torch {info.get('torch')}, {info.get('torch_threads')} threads; "
        f"sam2 {info.get('sam2', '?')}; Python {info['python']}"
    )


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


# ------------------------------------------------------------------------------- timing
def timed(fn: Callable, *args, **kwargs) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the wall seconds it took."""
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


class Steps:
    """Wall seconds of named steps: ``with steps("upload"): ...``; ``steps.seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - started


class FrameClock:
    """Wall and process-CPU seconds from :meth:`start` to each :meth:`tick` (one per frame a
    loop yields) and the RSS at each; :meth:`stop` adds the CPU use of all threads per wall
    second and the cores other processes kept busy meanwhile."""

    def __init__(self, rss: bool = True) -> None:
        self.rss = rss
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.rss_frames: list[float] = []

    def start(self) -> FrameClock:
        self.t0, self.cpu0, self.busy0 = time.perf_counter(), time.process_time(), system_busy_s()
        self._last, self._last_cpu = self.t0, self.cpu0
        return self

    def tick(self) -> None:
        now, cpu_now = time.perf_counter(), time.process_time()
        self.times.append(now - self._last)
        self.cpu_times.append(cpu_now - self._last_cpu)
        if self.rss:
            self.rss_frames.append(rss_mib())
        self._last, self._last_cpu = now, cpu_now

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        cpu, busy = time.process_time() - self.cpu0, system_busy_s() - self.busy0
        return {
            "frame_times": self.times,
            "frame_cpu_times": self.cpu_times,
            # about the thread count on an idle machine, less under competition
            "propagate_cpu_per_wall": cpu / wall if wall else float("nan"),
            "others_busy_cores": max(0.0, busy - cpu) / wall if wall else float("nan"),
        }


def per_frame_summary(times: list[float], cpu_times: list[float] | None = None) -> dict:
    """Median and mean seconds per frame, leaving out the first frame propagate yields
    (the prompted frame, whose output already exists), and the mean process CPU seconds per
    such frame: with one torch thread, the work a frame takes whatever other processes take
    from the cores."""
    steady = times[1:]
    cpu_steady = (cpu_times or [])[1:]
    return {
        "cpu_s_per_frame": statistics.fmean(cpu_steady) if cpu_steady else float("nan"),
        "s_per_frame": statistics.median(steady) if steady else float("nan"),
        "s_per_frame_mean": statistics.fmean(steady) if steady else float("nan"),
        "first_yield_s": times[0] if times else float("nan"),
    }


# ------------------------------------------------------------------------------- memory
def rss_mib() -> float:
    """Current resident set size of this process (Linux), or NaN where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib() -> float:
    """Peak RSS of this process so far.

    On Linux this is VmHWM from /proc/self/status, which starts afresh at exec and is reset
    by :func:`reset_peak_rss`. ``ru_maxrss`` is the fallback only: it keeps the peak of the
    process image before exec, i.e. of the parent that forked the child.
    """
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS count for this process (Linux >= 4.0). Returns False
    where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def after_model_load() -> tuple[float, float, bool]:
    """Called once a model is built: (RSS now, peak RSS of loading, peak reset?).

    Freed-but-resident heap is handed back first (``malloc_trim``), so that RSS growth
    starts from what the model holds; the peak is reset so that the run's own peak shows.
    """
    load_peak = peak_rss_mib()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib(), load_peak, reset_peak_rss()


def run_child(argv: Sequence[str], timeout_s: float) -> dict:
    """Run ``python *argv`` from the repository root; the dict its :func:`report_result`
    printed, or ``{"error": ..., "stderr_tail": ...}``."""
    cmd = [sys.executable, *map(str, argv)]
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


def report_result(result: dict) -> None:
    """A child's answer to :func:`run_child`."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


# ------------------------------------------------------------------------------- tables
def fmt(value, digits: int = 2, suffix: str = "") -> str:
    """``value`` with ``digits`` decimals, or — for None and NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.{digits}f}{suffix}"


def table(columns: Sequence[str], rows: Iterable[Sequence], align: str = "", text=False) -> str:
    """A Markdown table (or, with ``text``, columns padded to their width, two spaces apart).

    ``align`` has a letter per column, ``l`` or ``r``; columns it leaves out are right-aligned
    (default: the first left, the others right). A short row (a failed run) is padded with
    empty cells.
    """
    align = (align or "l").ljust(len(columns), "r")
    cells = [[str(c) for c in row] + [""] * (len(columns) - len(row)) for row in rows]
    if not text:
        rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
        lines = ["| " + " | ".join(columns) + " |", rule]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *cells, strict=False)]

    def line(row) -> str:
        return "  ".join(
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(row, widths, align, strict=False)
        ).rstrip()

    return "\n".join([line(columns), *(line(r) for r in cells)])


# ------------------------------------------------------------------------------- arguments
def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help is the benchmark's docstring, as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's own choice)"
    )


def use_threads(threads: int) -> int:
    """Set torch's thread count where ``threads`` is given; the count in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------- the engine
def random_engine(folder: Path, resolution: int):
    """An engine on a random-weight SAM 2.1-tiny written into ``folder`` (sessions there
    too), offline, at ``resolution``: what a benchmark times without real weights."""
    import dataclasses

    from sam2web.session.engine import Engine
    from sam2web.settings import Settings
    from sam2web.tracking.model import write_random_checkpoint

    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=resolution,
        checkpoint=write_random_checkpoint(Path(folder) / "tiny.pt"),
        offline=True,
        data_dir=Path(folder) / "sessions",
    )
    return Engine(settings)


# ------------------------------------------------------------------------------- the clip
def make_discs(width: int, height: int, count: int):
    """Up to three discs placed and moving in proportion to the frame size.

    Speeds are in pixels per frame at 640 px width; over 120 frames the discs stay inside
    the frame and apart.
    """
    from tests.synth import Disc

    s, r = width / 640.0, min(width, height) / 480.0
    discs = (
        Disc(0.20 * width, 0.45 * height, 2.0 * s, 0.3 * s, 42 * r, (230, 60, 40)),
        Disc(0.80 * width, 0.20 * height, -1.5 * s, 0.6 * s, 34 * r, (40, 90, 230)),
        Disc(0.15 * width, 0.82 * height, 1.5 * s, 0.0, 30 * r, (60, 190, 80)),
    )
    return discs[:count]


def clicks_for(discs) -> list[list[float]]:
    """One positive click per object at its disc's centre on frame 0: [obj_id, x, y]
    in original-frame pixels (x right, y down)."""
    return [[i + 1, float(d.x0), float(d.y0)] for i, d in enumerate(discs)]


def write_jpegs(frames, folder: Path) -> Path:
    """The frames as the JPEG folder sam2's ``init_state`` reads (00000.jpg, ...)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def prompt_raw(predictor, state, clicks) -> None:
    """The tutorial's prompts: one positive point per ``[obj_id, x, y]`` on frame 0."""
    import numpy as np

    for obj_id, x, y in clicks:
        predictor.add_new_points_or_box(
            state,
            frame_idx=0,
            obj_id=obj_id,
            points=np.array([[x, y]], dtype=np.float32),
            labels=np.array([1], np.int32),
        )


# ------------------------------------------------------------------------------- FLOPs
# FlopCounterMode names a module by its class when it is called on its own (sam2 calls the
# parts, never the predictor's forward), else by its attribute path.
PART_CLASSES = {
    "image_encoder": "ImageEncoder",
    "memory_attention": "MemoryAttention",
    "sam_mask_decoder": "MaskDecoder",
    "sam_prompt_encoder": "PromptEncoder",
    "memory_encoder": "MemoryEncoder",
}


def flop_counter():
    """torch's FlopCounterMode, also counting attention as the CPU runs it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def part_flops(counter, parts: Iterable[str]) -> dict[str, int]:
    """FLOPs counted so far in each model part, and ``total``."""
    counts = counter.get_flop_counts()

    def is_part(name: str, part: str) -> bool:
        return name == PART_CLASSES[part] or name.endswith(f".{part}")

    out = {p: sum(sum(o.values()) for n, o in counts.items() if is_part(n, p)) for p in parts}
    out["total"] = int(counter.get_total_flops())
    return out
