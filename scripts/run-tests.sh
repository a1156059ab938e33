#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, browser tests and the Docker image's
# build and run included. Extra arguments go to pytest, e.g.
# `bash scripts/run-tests.sh -m "not browser"`; `--no-docker` first runs everything but the
# image (`-m "not docker"`, and buildah is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=(--docker)
if [[ "${1:-}" == "--no-docker" ]]; then
  shift
  DOCKER=()
fi
WHOLE=0
[[ $# == 0 ]] && WHOLE=1
[[ ${#DOCKER[@]} == 0 ]] && set -- -m "not docker" "$@"  # a later -m of yours replaces it
bash scripts/setup.sh --dev "${DOCKER[@]}"
# The ZeroGPU environment (a CUDA build of torch and spaces) for tests/compute/test_zerogpu_spaces.py.
bash scripts/setup-zerogpu.sh
# axe-core for tests/ui/test_accessibility.py, from the npm registry into a folder git ignores.
AXE_VERSION=4.10.3
if ! grep -qs "\"version\": \"$AXE_VERSION\"" .cache/npm/node_modules/axe-core/package.json; then
  echo "[tests] installing axe-core $AXE_VERSION"
  if ! command -v npm >/dev/null; then
    if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq npm >/dev/null
  fi
  npm install --no-save --no-audit --no-fund --prefix .cache/npm "axe-core@$AXE_VERSION" >/dev/null
fi
if [[ ! -x /usr/bin/chromium ]]; then
  echo "[tests] installing Debian's chromium for the browser tests"
  if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
fi
if [[ $WHOLE == 1 ]]; then
  # The whole suite also checks lint and formatting (one style for the whole tree).
  echo "[tests] ruff check and ruff format --check"
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
fi
exec .venv/bin/python -m pytest "$@"
