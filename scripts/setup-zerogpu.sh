#!/usr/bin/env bash
# Creates .venv-zerogpu: sam2web as a ZeroGPU Space runs it, with a CUDA build of torch and
# Hugging Face's `spaces` package (requirements-zerogpu.txt). The CUDA build imports and runs
# on a machine without a GPU, so the tests run the app in ZeroGPU mode on the CPU with it.
# Idempotent: re-running with unchanged requirements does nothing.
# Usage: bash scripts/setup-zerogpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv-zerogpu

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup-zerogpu] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# A pip command that fails runs once more without pip's cache: a download cut short or
# damaged on the way fails pip's hash check.
again_uncached() {
  "$@" || {
    echo "[setup-zerogpu] pip failed; trying once more without pip's cache"
    "$@" --no-cache-dir
  }
}
stamp="$VENV/.sam2web-installed-$(cat requirements.txt requirements-zerogpu.txt scripts/setup-zerogpu.sh | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  torch_pin=$(grep -E '^torch==' requirements-zerogpu.txt)
  spaces_pin=$(grep -E '^spaces==' requirements-zerogpu.txt)
  # torch first: sam2 1.1.0 is a source distribution whose build imports torch.
  echo "[setup-zerogpu] installing $torch_pin"
  again_uncached "${PIP[@]}" install "$torch_pin" "setuptools>=70" wheel
  # requirements.txt pins the CPU Space's torch; the ZeroGPU pin replaces it. Its index line
  # (PyTorch's CPU index, for a CPU Space's isolated build of sam2) goes too, as in setup.sh.
  reqs=$(mktemp)
  trap 'rm -f "$reqs"' EXIT
  grep -vE '^(torch==|--extra-index-url)' requirements.txt >"$reqs"
  echo "[setup-zerogpu] installing sam2 and requirements.txt (torch kept at $torch_pin)"
  SAM2_BUILD_CUDA=0 again_uncached "${PIP[@]}" install --no-build-isolation "$torch_pin" -r "$reqs"
  echo "[setup-zerogpu] installing $spaces_pin"
  again_uncached "${PIP[@]}" install "$torch_pin" "$spaces_pin"
  # As in scripts/setup.sh: the video predictor never imports torchvision, and a wheel
  # built for another torch breaks at import.
  "${PIP[@]}" uninstall -y torchvision >/dev/null 2>&1 || true
  rm -f "$VENV"/.sam2web-installed-*
  touch "$stamp"
fi
