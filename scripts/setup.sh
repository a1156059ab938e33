#!/usr/bin/env bash
# Creates .venv and installs sam2web's dependencies into it. Idempotent: re-running
# with unchanged requirements does nothing. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

reqs=(requirements.txt)
[[ $DEV == 1 ]] && reqs+=(requirements-ray.txt requirements-dev.txt)
stamp="$VENV/.sam2web-installed-$(cat "${reqs[@]}" scripts/setup.sh | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  # torch first: sam2 1.1.0 is a source distribution whose build imports torch, and
  # torch==2.13.0 resolves to the CPU wheel where one is provided locally.
  echo "[setup] installing torch"
  "${PIP[@]}" install "torch==2.13.0" "setuptools>=70" wheel
  # SAM2_BUILD_CUDA=0: the optional CUDA extension only accelerates hole filling.
  echo "[setup] installing ${reqs[*]}"
  SAM2_BUILD_CUDA=0 "${PIP[@]}" install --no-build-isolation -r "${reqs[-1]}"
  # sam2 declares torchvision, but the video predictor never imports it and a
  # torchvision wheel built for another torch breaks at import; keep it out.
  "${PIP[@]}" uninstall -y torchvision >/dev/null 2>&1 || true
  rm -f "$VENV"/.sam2web-installed-*
  touch "$stamp"
fi
