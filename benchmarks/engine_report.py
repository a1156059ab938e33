#!/usr/bin/env python
"""The tables of ``bench_engine.py``: every mode against ``raw``, against the hardware
limit, and stage by stage; with the figures derived from the modes' results (ratios to
``raw``, mask agreement, the fraction of the matmul peak).

Run on its own, it prints the tables again from the JSON ``bench_engine.py --out`` wrote::

    .venv/bin/python benchmarks/engine_report.py results.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from benchmarks.harness import fmt  # noqa: E402


def limit_fraction(result: dict, flops: dict | None, peak: dict) -> dict:
    """GFLOP per timed frame (mean over the frames after the first one propagate yields,
    counted by FlopCounterMode) and the seconds the matmul peak would need for them (bf16
    peak for bf16 modes, fp32 peak otherwise), as a fraction of the mean seconds per frame:
    in wall seconds, and in CPU seconds (peak per CPU second against the mode's CPU seconds
    per frame, the figure a busy machine does not distort)."""
    if not flops or "error" in flops or len(flops["per_frame"]) < 2:
        return {}
    gflop = statistics.fmean(flops["per_frame"][1:]) / 1e9
    dtype = "bf16" if result["mode"]["bf16"] else "fp32"
    limit_s = gflop / peak[dtype]
    limit_cpu_s = gflop / peak[f"{dtype}_cpu"] * max(1, int(peak.get("threads", 1)))
    return {
        "gflop_per_frame": gflop,
        "gflop_by_part": {k: v / 1e9 for k, v in flops["steady_by_part"].items()},
        "limit_s_per_frame": limit_s,
        "peak_fraction": limit_s / result["s_per_frame_mean"],
        "limit_cpu_s_per_frame": limit_cpu_s,
        "peak_fraction_cpu": limit_cpu_s / result["cpu_s_per_frame"],
    }


def compare_masks(result: dict, reference: dict) -> dict:
    """IoU of every (frame, object) mask with the reference run's; both empty counts as 1."""
    import numpy as np

    from benchmarks.engine_modes import load_masks

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
    from benchmarks.engine_modes import load_masks

    masks, _ = load_masks(result["masks_path"])
    areas = masks.sum(axis=(2, 3)) / (masks.shape[2] * masks.shape[3])
    return {
        "nonempty_fraction": float((areas > 0).mean()),
        "mean_area_fraction": float(areas.mean()),
    }


def ratio(r: dict, ref: dict | None, key: str) -> float | None:
    if ref is None or "error" in ref or "error" in r:
        return None
    a, b = r.get(key), ref.get(key)
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def overhead_pct(r: dict) -> float | None:
    """Engine: (decode + session setup + CSV + render/encode) / (prompts + propagation)."""
    if r["mode"]["flow"] != "engine":
        return None
    st = r["stages"]
    model = st["prompts"] + st["propagate"]
    return 100.0 * (r["e2e_s"] - model) / model


def with_ratio(value, factor, digits: int) -> str:
    text = fmt(value, digits)
    return text if factor is None or text == "—" else f"{text} ({factor:.2f})"


def head(r: dict) -> list:
    m = r["mode"]
    name = f"{m['name']}*" if r.get("contended") else m["name"]
    return [r["frames"], name, m["resolution"], "bf16" if m["bf16"] else "fp32"]


SUMMARY = (
    "frames|mode|px|dtype|obj|s/frame (×raw)|raw / mode|CPU s/frame|raw / mode (CPU s)|track s"
    "|e2e s|overhead|peak RSS MiB (×raw)|run peak MiB (×raw)|RSS growth MiB|IoU mean|IoU min"
    "|non-empty"
)


def summary_table(results: list[dict]) -> str:
    refs = {r["frames"]: r for r in results if r["mode"]["name"] == "raw"}
    rows = []
    for r in results:
        if "error" in r:
            rows.append([*head(r)[:4], f"failed: {r['error']}"])
            continue
        ref = refs.get(r["frames"])
        speed = ratio(r, ref, "s_per_frame")
        cpu_speed = ratio(r, ref, "cpu_s_per_frame")
        rows.append(
            [
                *head(r),
                r["objects"],
                with_ratio(r["s_per_frame"], speed, 3),
                fmt(1 / speed if speed else None, 2, "×"),
                fmt(r.get("cpu_s_per_frame"), 3),
                fmt(1 / cpu_speed if cpu_speed else None, 2, "×"),
                fmt(r["track_s"], 1),
                fmt(r["e2e_s"], 1),
                fmt(overhead_pct(r), 1, " %"),
                with_ratio(r["peak_rss_mib"], ratio(r, ref, "peak_rss_mib"), 0),
                with_ratio(r["run_peak_rss_mib"], ratio(r, ref, "run_peak_rss_mib"), 0),
                fmt(r["rss_growth_mib"], 0),
                "ref" if ref is r else fmt(r.get("iou_mean"), 4),
                "ref" if ref is r else fmt(r.get("iou_min"), 4),
                fmt(100 * r["nonempty_fraction"], 0, " %"),
            ]
        )
    return harness.table(SUMMARY.split("|"), rows, align="rlrl")


LIMIT = (
    "frames|mode|px|dtype|GFLOP/frame|of which encoder / memory attention / decoder + memory "
    "encoder / rest|mean s/frame|limit s/frame|of the limit|CPU s/frame|limit CPU s/frame"
    "|of the limit (CPU)"
)


def limit_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        if "error" in r or "gflop_per_frame" not in r:
            continue
        parts = r["gflop_by_part"]
        split = (
            parts["image_encoder"],
            parts["memory_attention"],
            parts["sam_mask_decoder"] + parts["memory_encoder"],
            parts["other"],
        )
        rows.append(
            [
                *head(r)[:1],
                r["mode"]["name"],
                *head(r)[2:],
                fmt(r["gflop_per_frame"], 1),
                " / ".join(fmt(v, 1) for v in split),
                fmt(r["s_per_frame_mean"], 3),
                fmt(r["limit_s_per_frame"], 3),
                fmt(100 * r["peak_fraction"], 1, " %"),
                fmt(r["cpu_s_per_frame"], 3),
                fmt(r["limit_cpu_s_per_frame"], 3),
                fmt(100 * r["peak_fraction_cpu"], 1, " %"),
            ]
        )
    return harness.table(LIMIT.split("|"), rows, align="rlrlrl")


STAGES = (
    "frames|mode|load s|init_state / decode s|prompts s|propagate s|CSV s"
    "|video left after tracking s|e2e s|first yield s|mean s/frame|frame reads|CPU/wall"
    "|others' cores|load before"
)


def stage_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            continue
        st = r["stages"]
        rows.append(
            [
                r["frames"],
                r["mode"]["name"],
                fmt(r["load_s"], 1),
                fmt(st.get("init_state", st.get("decode")), 2),
                fmt(st["prompts"], 2),
                fmt(st["propagate"], 1),
                fmt(st.get("csv"), 2),
                fmt(st.get("render_encode"), 2),
                fmt(r["e2e_s"], 1),
                fmt(r["first_yield_s"], 2),
                fmt(r["s_per_frame_mean"], 3),
                r.get("frame_loads", r["frames"]),
                fmt(r["propagate_cpu_per_wall"], 2),
                fmt(r.get("others_busy_cores"), 2),
                fmt((r.get("load_before") or [None])[0], 2),
            ]
        )
    return harness.table(STAGES.split("|"), rows, align="rl")


def print_tables(results: list[dict], cpu: str = "") -> str:
    """Print (and return) the summary, hardware-limit and stage tables as Markdown, each
    headed by the CPU line ``cpu``."""
    parts = []
    for make in (summary_table, limit_table, stage_table):
        parts += [cpu, "", make(results), ""]
    text = "\n".join(parts[:-1])
    if any(r.get("contended") for r in results):
        text += "\n\n\\* other processes took CPU time from this run; its times are inflated."
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("results", type=Path, help="the JSON of bench_engine.py --out")
    args = parser.parse_args(argv)
    saved = json.loads(args.results.read_text())
    print(harness.machine_line(saved["machine"]))
    print()
    print_tables(saved["results"], harness.cpu_line(saved["machine"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
