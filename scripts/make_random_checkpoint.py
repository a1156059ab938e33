"""Write a SAM2 checkpoint with the real architecture and seeded random weights.

For trying the app, benchmarks and tests where no official checkpoint can be downloaded:
shapes, speed and code paths are real, the masks are meaningless.

    .venv/bin/python scripts/make_random_checkpoint.py /tmp/sam2.1_hiera_tiny_random.pt
    SAM2WEB_CHECKPOINT=/tmp/sam2.1_hiera_tiny_random.pt bash scripts/run-app.sh
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam2web.tracking.checkpoints import DEFAULT_MODEL, MODELS  # noqa: E402
from sam2web.tracking.model import write_random_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="checkpoint file to write (.pt)")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=list(MODELS),
        help=f"architecture (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_random_checkpoint(args.output, args.model, seed=args.seed)
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({args.model}, seed {args.seed}, {size_mb:.0f} MB, random weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
