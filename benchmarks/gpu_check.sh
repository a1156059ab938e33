#!/bin/sh
# A few-minute check of sam2web on a CUDA GPU (see benchmarks/README.md, "GPU check").
# Usage: benchmarks/gpu_check.sh [--checkpoint FILE] [--model KEY] [--frames N]
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PY" benchmarks/gpu_check.py "$@"
