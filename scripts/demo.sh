#!/usr/bin/env bash
# Set everything up, then run the tracking quickstart on the embedded default store
# (./deltaflow-store, or $DELTAFLOW_TRACKING_URI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python notebooks/tracking_quickstart.py
