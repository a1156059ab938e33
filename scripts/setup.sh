#!/usr/bin/env bash
# Creates .venv and installs sam2web's dependencies into it. Idempotent: re-running
# with unchanged requirements does nothing. Usage: bash scripts/setup.sh [--dev] [--docker]
# --docker also installs Debian's buildah and mmdebstrap, with which tests/test_docker.py
# builds the Dockerfile and runs the image without a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=.venv
DEV=0
DOCKER=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --docker) DOCKER=1 ;;
    *) echo "usage: bash scripts/setup.sh [--dev] [--docker]" >&2; exit 2 ;;
  esac
done

if [[ $DOCKER == 1 ]] && ! { command -v buildah && command -v mmdebstrap; } >/dev/null; then
  echo "[setup] installing Debian's buildah and mmdebstrap"
  if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq buildah mmdebstrap >/dev/null
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# A pip command that fails runs once more without pip's cache: a download cut short or
# damaged on the way fails pip's hash check.
again_uncached() {
  "$@" || {
    echo "[setup] pip failed; trying once more without pip's cache"
    "$@" --no-cache-dir
  }
}

reqs=(requirements.txt)
[[ $DEV == 1 ]] && reqs+=(requirements-ray.txt requirements-dev.txt)
stamp="$VENV/.sam2web-installed-$(cat "${reqs[@]}" scripts/setup.sh | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  # torch first: sam2 1.1.0 is a source distribution whose build imports torch, and
  # torch==2.13.0 resolves to the CPU wheel where one is provided locally.
  echo "[setup] installing torch"
  again_uncached "${PIP[@]}" install "torch==2.13.0" "setuptools>=70" wheel
  # SAM2_BUILD_CUDA=0: the optional CUDA extension only accelerates hole filling.
  # requirements.txt's --extra-index-url line is for a Hugging Face Space, whose pip builds
  # sam2 in isolation; here sam2 builds against the torch above, so copies without it are
  # installed (pip would otherwise ask that index for every package, reachable or not).
  echo "[setup] installing ${reqs[*]}"
  copies=$(mktemp -d)
  trap 'rm -rf "$copies"' EXIT
  for file in "${reqs[@]}"; do
    grep -vE '^--extra-index-url' "$file" >"$copies/$file"
  done
  SAM2_BUILD_CUDA=0 again_uncached "${PIP[@]}" install --no-build-isolation -r "$copies/${reqs[-1]}"
  # sam2 declares torchvision, but the video predictor never imports it and a
  # torchvision wheel built for another torch breaks at import; keep it out.
  "${PIP[@]}" uninstall -y torchvision >/dev/null 2>&1 || true
  rm -f "$VENV"/.sam2web-installed-*
  touch "$stamp"
fi
