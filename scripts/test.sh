#!/usr/bin/env bash
# Set everything up, then run the whole test suite (unit, Spark, end-to-end) on one shared local
# SparkSession. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
