#!/usr/bin/env bash
# Set up (if needed) and start the sam2web app on http://0.0.0.0:7860 (see README for settings).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
