#!/usr/bin/env python
"""Benchmark: compiler and backend variants of SAM2's two heavy parts, side by side.

Builds the predictor from a random-weight checkpoint, tracks a short synthetic clip with the
raw video predictor and captures the inputs of the last image-encoder call and the last
memory-attention call (the memory bank is full by then: 6 earlier frames, the prompted
frame and the object pointers). Each variant is built and called once (its first call,
which includes any compile), then all variants of a part run those same inputs in turns,
``--repeats`` rounds, in this process; the script prints the best and the median seconds
per call, the ratio of the best to eager in the same dtype and to eager float32, the
first-call seconds and how far the output is from eager float32 (relative L2 error).

Variants (``--variants``):

* ``eager``: the module as sam2 builds it.
* ``channels-last``: the image encoder's weights and input in ``torch.channels_last``
  (only the convolutions care; memory attention has none, so it is skipped there).
* ``compile``: ``torch.compile`` with inductor, default mode, applied to the module.
* ``jit-freeze``: ``torch.jit.trace`` then ``torch.jit.freeze`` (oneDNN fusion of the frozen
  graph).
* ``mkldnn-bf16``: eager float32 with ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``
  (oneDNN rounds float32 matmul inputs to bf16) — float32 rows only.

Each variant runs in float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(``--dtypes``). Example::

    python benchmarks/bench_components.py --resolutions 1024,448
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402

VARIANTS = ("eager", "channels-last", "compile", "jit-freeze", "mkldnn-bf16")
COLUMNS = [
    "px",
    "part",
    "variant",
    "dtype",
    "first call s",
    "s/call min",
    "s/call median",
    "× eager same dtype",
    "× eager fp32",
    "rel. error to eager fp32",
]


def log(message: str) -> None:
    harness.log(message, "components")


def capture_inputs(predictor, frames_dir: Path) -> dict:
    """Track the clip with the raw predictor; return the last inputs of both parts."""
    import torch

    captured: dict = {}

    def enc_hook(module, args, kwargs):
        captured["image_encoder"] = (tuple(a.clone() for a in args), dict(kwargs))

    def mem_hook(module, args, kwargs):
        kw = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
        captured["memory_attention"] = (tuple(args), kw)

    handles = [
        predictor.image_encoder.register_forward_pre_hook(enc_hook, with_kwargs=True),
        predictor.memory_attention.register_forward_pre_hook(mem_hook, with_kwargs=True),
    ]
    try:
        with torch.inference_mode():
            state = predictor.init_state(str(frames_dir))
            harness.prompt_raw(predictor, state, [[1, 80.0, 60.0]])
            for _ in predictor.propagate_in_video(state):
                pass
    finally:
        for h in handles:
            h.remove()
    return captured


def outputs_of(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in outputs_of(v)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in outputs_of(v)]
    return []


def rel_error(out, ref) -> float:
    """Largest relative L2 error over the output tensors."""
    worst = 0.0
    for a, b in zip(outputs_of(out), outputs_of(ref), strict=True):
        a, b = a.float(), b.float()
        worst = max(worst, float((a - b).norm() / b.norm().clamp_min(1e-12)))
    return worst


def flat_module(part: str, module, args, kwargs):
    """(module with positional tensor inputs and tuple outputs, its positional inputs)."""
    import torch

    if part == "image_encoder":

        class Encoder(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, x):
                out = self.inner(x)
                return (out["vision_features"], *out["vision_pos_enc"], *out["backbone_fpn"])

        return Encoder(), tuple(args)

    num_ptr = int(kwargs.get("num_obj_ptr_tokens", 0))

    class Memory(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, curr, memory, curr_pos, memory_pos):
            return self.inner(
                curr=[curr],
                memory=memory,
                curr_pos=[curr_pos],
                memory_pos=memory_pos,
                num_obj_ptr_tokens=num_ptr,
            )

    curr, curr_pos = kwargs["curr"], kwargs["curr_pos"]
    curr = curr[0] if isinstance(curr, list) else curr
    curr_pos = curr_pos[0] if isinstance(curr_pos, list) else curr_pos
    return Memory(), (curr, kwargs["memory"], curr_pos, kwargs["memory_pos"])


def make_variant(name: str, part: str, module, inputs: tuple, bf16: bool):
    """A zero-argument callable running ``module`` (positional ``inputs``) the way ``name``
    says, or None where the variant does not apply."""
    import torch

    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )
    a = inputs
    if name == "eager":
        target = module
    elif name == "channels-last":
        if part != "image_encoder":
            return None
        target = copy.deepcopy(module).to(memory_format=torch.channels_last)
        a = tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs)
    elif name == "compile":
        target = torch.compile(copy.deepcopy(module), backend="inductor")
    elif name == "jit-freeze":
        clone = copy.deepcopy(module).eval()
        with torch.no_grad(), autocast():
            target = torch.jit.freeze(torch.jit.trace(clone, inputs, check_trace=False))
    elif name == "mkldnn-bf16":
        if bf16:
            return None

        def run_reduced():
            before = torch.backends.mkldnn.matmul.fp32_precision
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
            try:
                with torch.no_grad():
                    return module(*inputs)
            finally:
                torch.backends.mkldnn.matmul.fp32_precision = before

        return run_reduced
    else:
        raise ValueError(name)

    def run():
        with torch.no_grad(), autocast():
            return target(*a)

    return run


def format_row(row: tuple) -> list:
    if len(row) == 5:
        return list(row)
    res, part, variant, dtype, first, best, median, vs_same, vs_fp32, err = row
    return [
        res,
        part,
        variant,
        dtype,
        f"{first:.1f}",
        f"{best:.3f}",
        f"{median:.3f}",
        f"{vs_same:.2f}",
        f"{vs_fp32:.2f}",
        f"{err:.1e}",
    ]


def first_calls(part: str, module, inputs: tuple, args, res: int) -> dict:
    """Each variant built and called once (compile included): {(variant, dtype): run}."""
    runs: dict[tuple[str, str], dict] = {}
    for dtype in args.dtypes.split(","):
        for variant in args.variants.split(","):
            key = (variant, dtype)
            try:
                fn = make_variant(variant, part, module, inputs, dtype == "bf16")
                if fn is None:
                    continue
                log(f"{res} px {part} {variant} {dtype}: first call")
                out, first = harness.timed(fn)
                runs[key] = {"fn": fn, "first": first, "times": [], "out": out}
            except Exception as err:  # a failed variant is a result, not a crash
                log("".join(traceback.format_exception_only(err)).strip()[:300])
                runs[key] = {"failed": type(err).__name__}
    return runs


def measure_part(part: str, module, inputs: tuple, args, res: int) -> list[tuple]:
    """The rows of one part at one resolution: every variant, in turns."""
    runs = first_calls(part, module, inputs, args, res)
    # Round robin, so that load from other processes spreads over all variants.
    for _ in range(args.repeats):
        for run in runs.values():
            if "fn" in run:
                run["times"].append(harness.timed(run["fn"])[1])
    ref = runs[("eager", "fp32")]
    rows = []
    for (variant, dtype), run in runs.items():
        if "failed" in run:
            rows.append((res, part, variant, dtype, f"failed: {run['failed']}"))
            continue
        best = min(run["times"])
        same = runs.get(("eager", dtype), {}).get("times")
        rows.append(
            (
                res,
                part,
                variant,
                dtype,
                run["first"],
                best,
                statistics.median(run["times"]),
                min(same) / best if same else float("nan"),
                min(ref["times"]) / best,
                rel_error(run["out"], ref["out"]),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--resolutions", default="1024,448")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--parts", default="image_encoder,memory_attention")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=9, help="clip length used to capture")
    harness.add_threads(parser)
    args = parser.parse_args(argv)

    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor, write_random_checkpoint
    from tests import synth

    harness.use_threads(args.threads)
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="sam2web-components-"))
    ckpt = write_random_checkpoint(work / "random.pt", "sam2.1-tiny", seed=0)
    frames = synth.make_frames(num_frames=args.frames, height=120, width=160)
    frames_dir = harness.write_jpegs(frames, work / "frames")
    rows = []
    for res in [int(r) for r in args.resolutions.split(",")]:
        predictor = build_predictor(get_spec("sam2.1-tiny"), ckpt, device="cpu", image_size=res)
        log(f"{res} px: capturing inputs over {args.frames} frames")
        captured = capture_inputs(predictor, frames_dir)
        for part in args.parts.split(","):
            module, inputs = flat_module(part, getattr(predictor, part), *captured[part])
            rows += measure_part(part, module, inputs, args, res)
            log("rows so far:\n" + harness.table(COLUMNS, map(format_row, rows), "rlll"))
        del predictor

    print(harness.machine_line())
    print()
    print(harness.table(COLUMNS, map(format_row, rows), align="rlll"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
