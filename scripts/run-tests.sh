#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, browser tests included.
# Extra arguments go to pytest, e.g. `bash scripts/run-tests.sh -m "not browser"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# The ZeroGPU environment (a CUDA build of torch and spaces) for tests/compute/test_zerogpu_spaces.py.
bash scripts/setup-zerogpu.sh
if [[ ! -x /usr/bin/chromium ]]; then
  echo "[tests] installing Debian's chromium for the browser tests"
  if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
fi
if [[ $# == 0 ]]; then
  # The whole suite also checks lint and formatting (one style for the whole tree).
  echo "[tests] ruff check and ruff format --check"
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
fi
exec .venv/bin/python -m pytest "$@"
