#!/usr/bin/env python
"""One mode of ``bench_engine.py`` on one prepared clip, in a process of its own.

``bench_engine.py`` runs this once per mode (so that peak RSS is the mode's own) and once
per resolution for the FLOP count (``flops<px>``); it prints one ``BENCH_RESULT`` line of
JSON and saves the masks beside the job file. By hand, on a job ``bench_engine.py --keep``
left behind::

    .venv/bin/python benchmarks/engine_modes.py engine512-bf16 /tmp/sam2web-bench-x/clip20/job.json

Modes: ``raw`` (Meta's video predictor tutorial) or ``engine`` (sam2web end to end),
optionally followed by a processing resolution (``engine512``), ``-bf16`` (CPU bfloat16
autocast) and, for the engine only, ``-compile`` (the image encoder under
``torch.compile``, as SAM2WEB_COMPILE does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402

MODE_PATTERN = re.compile(r"^(raw|engine)(\d+)?(-bf16)?(-compile)?$")


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


def load_raw_predictor(job: dict, resolution: int):
    """sam2's own builder, with sam2web's hydra overrides (both sides run the same model)."""
    from sam2.build_sam import build_sam2_video_predictor

    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import hydra_overrides, silence_missing_extension_warning

    silence_missing_extension_warning()
    return build_sam2_video_predictor(
        get_spec(job["model"]).config,
        job["checkpoint"],
        device="cpu",
        hydra_overrides_extra=hydra_overrides(resolution, "keep"),
    )


def loaded(started: float) -> dict:
    """The model-load figures of a flow whose loading began at ``started``."""
    load_s = time.perf_counter() - started
    rss_loaded, load_peak, peak_reset = harness.after_model_load()
    return {
        "load_s": load_s,
        "rss_loaded_mib": rss_loaded,
        "load_peak_rss_mib": load_peak,
        "peak_reset": peak_reset,
    }


def run_raw(job: dict, mode: Mode) -> tuple[dict, dict]:
    """Meta's tutorial flow. Returns (timings, {frame: {obj_id: mask}})."""
    import torch

    started = time.perf_counter()
    predictor = load_raw_predictor(job, mode.resolution)
    timings = loaded(started)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if mode.bf16 else contextlib.nullcontext()
    )
    clock = harness.FrameClock()
    with torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        state = predictor.init_state(video_path=job["frames_dir"])
        t1 = time.perf_counter()
        rss_stages = {"init_state": harness.rss_mib()}
        harness.prompt_raw(predictor, state, job["clicks"])
        t2 = time.perf_counter()
        rss_stages["prompts"] = harness.rss_mib()
        video_segments = {}  # as in the notebook: {frame: {obj_id: (1, H, W) bool}}
        clock.start()
        for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagate_in_video(state):
            video_segments[out_frame_idx] = {
                out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy()
                for i, out_obj_id in enumerate(out_obj_ids)
            }
            clock.tick()
        timings.update(clock.stop())
        t3 = time.perf_counter()
        rss_stages["propagate"] = harness.rss_mib()

    image = state["images"][0]
    timings.update(
        stages={"init_state": t1 - t0, "prompts": t2 - t1, "propagate": t3 - t2},
        track_s=t3 - t1,
        e2e_s=t3 - t0,
        rss_end_mib=harness.rss_mib(),  # model and state still alive
        rss_frames_mib=clock.rss_frames,
        rss_after_stage_mib=rss_stages,
        frames_held_by_state_mib=len(state["images"])
        * image.numel()
        * image.element_size()
        / harness.MIB,
    )
    masks = {f: {o: m[0] for o, m in objs.items()} for f, objs in video_segments.items()}
    return timings, masks


def load_engine_model(job: dict, mode: Mode):
    from sam2web.tracking.accel import compile_predictor
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor

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
    return predictor


def engine_session(job: dict, mode: Mode, predictor, folder, info, masks_dir: Path):
    """The tracking session with the job's clicks, as the page builds it."""
    from sam2web.tracking.model import autocast_context
    from sam2web.tracking.tracker import TrackingSession
    from sam2web.types import Click

    # The page's qualities: "full-bf16" is forced here to measure it even where the probe
    # would not offer it (sam2web.tracking.accel.available_qualities); "full" is float32.
    quality = "full-bf16" if mode.bf16 else "full"
    session = TrackingSession(
        predictor,
        folder.frame_paths(),
        info,
        masks_dir,
        full_memory_frames=job["full_memory_frames"],
        autocast=lambda: autocast_context("cpu", quality=quality),
    )
    for obj_id, x, y in job["clicks"]:
        obj = session.add_object(f"disc {obj_id}")
        if obj.obj_id != obj_id:
            raise RuntimeError(f"expected object id {obj_id}, the session gave {obj.obj_id}")
        session.add_click(0, obj_id, Click(x, y, True))
    return session


def overlay_video(folder, info, session, path: Path):
    """As the app does: the overlay video rendered and encoded beside tracking."""
    from sam2web.outputs.render import OverlayStyle
    from sam2web.outputs.video import LiveOverlayVideo

    return LiveOverlayVideo(
        folder.read_rgb,
        info.num_frames,
        session.store,
        session.objects,
        OverlayStyle(),
        path,
        info.fps,
        pending=session.planned_frames("forward"),
    )


def run_engine(job: dict, mode: Mode, work: Path) -> tuple[dict, dict]:
    """sam2web end to end. Returns (timings, {frame: {obj_id: mask}})."""
    from sam2web.analysis.results import measurements
    from sam2web.media.folder import FrameFolder
    from sam2web.media.ingest import ingest
    from sam2web.outputs.rowfiles import write_csv
    from sam2web.tracking.model import cpu_supports_bf16

    started = time.perf_counter()
    predictor = load_engine_model(job, mode)
    timings = loaded(started)
    shutil.rmtree(work, ignore_errors=True)
    frames_dir, exports_dir = work / "frames", work / "exports"
    exports_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    info = ingest(Path(job["clip"]), frames_dir, limits=media_limits(), frame_format="jpeg")
    folder = FrameFolder(frames_dir)
    t1 = time.perf_counter()
    rss_stages = {"decode": harness.rss_mib()}
    session = engine_session(job, mode, predictor, folder, info, work / "masks")
    t2 = time.perf_counter()
    rss_stages["prompts"] = harness.rss_mib()
    live = overlay_video(folder, info, session, exports_dir / "sam2web_overlay.mp4")
    clock = harness.FrameClock().start()
    for step in session.propagate("forward"):
        live.frame_done(step.result.frame_idx)
        clock.tick()
    timings.update(clock.stop())
    t3 = time.perf_counter()
    rss_stages["propagate"] = harness.rss_mib()
    written_while_tracking = live.frames_written
    objects = list(session.objects.values())
    write_csv(measurements(session.store, objects, info), exports_dir / "sam2web_tracks.csv")
    t4 = time.perf_counter()
    rss_stages["csv"] = harness.rss_mib()
    video = live.finish()  # the frames rendering still had to do after tracking
    t5 = time.perf_counter()
    rss_stages["render_encode"] = harness.rss_mib()
    timings.update(
        compile_s=getattr(predictor, "sam2web_compile", {}).get("seconds"),
        stages={
            "decode": t1 - t0,
            "prompts": t2 - t1,
            "propagate": t3 - t2,
            "csv": t4 - t3,
            "render_encode": t5 - t4,
        },
        track_s=t3 - t1,
        e2e_s=t5 - t0,
        rss_end_mib=harness.rss_mib(),  # model and state still alive
        rss_frames_mib=clock.rss_frames,
        rss_after_stage_mib=rss_stages,
        frame_loads=session.frames.loads,
        video_frames_written_while_tracking=written_while_tracking,
        trimmed=session.trim,
        held_mib={k: v / harness.MIB for k, v in session.held_bytes().items()},
        overlay_mp4_kib=video.stat().st_size / 1024,
        frames_digest=folder_digest(frames_dir),
        bf16_native_cpu=cpu_supports_bf16(),
    )
    # The engine keeps masks on disk; gathering them in memory for the agreement check
    # is the benchmark's doing, so the run's peak is read before it.
    timings["peak_before_masks_mib"] = harness.peak_rss_mib()
    masks = {}
    for frame_idx in session.store.frames():
        result = session.store.read(frame_idx)
        if result is not None:
            masks[frame_idx] = dict(result.masks)
    return timings, masks


def save_masks(masks: dict, job: dict, path: Path) -> Path:
    """{frame: {obj_id: mask}} as one packed array (frames × objects × H × W) in ``path``."""
    import numpy as np

    n, height, width = job["num_frames"], job["height"], job["width"]
    obj_ids = [c[0] for c in job["clicks"]]
    stacked = np.zeros((n, len(obj_ids), height, width), dtype=bool)
    present = np.zeros((n, len(obj_ids)), dtype=bool)
    for f, objs in masks.items():
        for j, obj_id in enumerate(obj_ids):
            if obj_id in objs:
                stacked[f, j] = objs[obj_id]
                present[f, j] = True
    np.savez_compressed(
        path, masks=np.packbits(stacked, axis=-1), present=present, shape=np.array(stacked.shape)
    )
    return path


def load_masks(path: str):
    import numpy as np

    with np.load(path) as data:
        shape = tuple(int(v) for v in data["shape"])
        masks = np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool)
        return masks.reshape(shape), data["present"]


def run_one(mode_name: str, job_path: Path) -> dict:
    """Run one mode (or ``flops<px>``) on the prepared clip; its result."""
    import torch

    job = json.loads(job_path.read_text())
    harness.use_threads(job.get("threads") or 0)
    if mode_name.startswith("flops"):
        from benchmarks.bench_flops import count_flops

        return count_flops(job, int(mode_name[len("flops") :]))
    mode = parse_mode(mode_name, job["resolution"])
    rss_start = harness.rss_mib()
    if mode.flow == "raw":
        timings, masks = run_raw(job, mode)
    else:
        timings, masks = run_engine(job, mode, job_path.parent / f"ws-{mode.name}")
    # Read before the mask array is built, which would add to the peak (the engine read it
    # before gathering its masks from disk).
    run_peak = timings.pop("peak_before_masks_mib", None) or harness.peak_rss_mib()
    masks_path = save_masks(masks, job, job_path.parent / f"{mode.name}.npz")
    return {
        "mode": asdict(mode),
        "frames": job["num_frames"],
        "objects": len(job["clicks"]),
        **timings,
        **harness.per_frame_summary(timings["frame_times"], timings["frame_cpu_times"]),
        "peak_rss_mib": max(run_peak, timings["load_peak_rss_mib"]),  # loading included
        # from the end of model loading to the end of the run (whole process where the
        # kernel cannot reset the count)
        "run_peak_rss_mib": run_peak if timings["peak_reset"] else float("nan"),
        "rss_start_mib": rss_start,
        "rss_growth_mib": timings["rss_end_mib"] - timings["rss_loaded_mib"],
        "torch_threads": torch.get_num_threads(),
        "masks_path": str(masks_path),
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("mode", help="raw, engine512-bf16, ... or flops<px>")
    parser.add_argument("job", type=Path, help="job.json that bench_engine.py prepared")
    args = parser.parse_args(argv)
    harness.report_result(run_one(args.mode, args.job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
