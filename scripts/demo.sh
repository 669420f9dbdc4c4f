#!/usr/bin/env bash
# Set everything up, then run the demo on the embedded default store (./deltaflow-store, or
# $DELTAFLOW_TRACKING_URI): the tracking quickstart, then the model registry quickstart (train a Spark
# ML pipeline, log it, register it, approve it into Production, alias it, score through the alias).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python notebooks/tracking_quickstart.py
.venv/bin/python notebooks/model_registry_quickstart.py
