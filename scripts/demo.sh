#!/usr/bin/env bash
# Set everything up, then run the demo on the embedded default store (./deltaflow-store, or
# $DELTAFLOW_TRACKING_URI): the tracking quickstart, then the model registry quickstart (train a Spark
# ML pipeline, log it, register it, approve it into Production, alias it, score through the alias),
# then batch-score the training table with the Production model (`deltaflow models score`) and show
# which model produced the rows, from the rows and from the output table's Delta history.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python notebooks/tracking_quickstart.py
.venv/bin/python notebooks/model_registry_quickstart.py

# Where the registry quickstart keeps its training table, beside the store (no Spark needed to say).
root="$(.venv/bin/python -c 'import deltaflow; from deltaflow.config import resolve_location; print((resolve_location(deltaflow.get_tracking_uri()).root or "").rstrip("/"))')"
if [ -z "$root" ]; then
  echo "demo: the store is not a path store; skipping the batch-scoring step" >&2
  exit 0
fi
echo
echo "== batch scoring: $root/quickstart_data/regression with models:/quickstart_regressor/Production"
.venv/bin/deltaflow models score -m models:/quickstart_regressor/Production \
  --input "$root/quickstart_data/regression" --output "$root/quickstart_data/scored" --mode overwrite
# Read the lineage back with delta-rs (no JVM): columns of the rows, and the commit's userMetadata.
.venv/bin/python - "$root/quickstart_data/scored" <<'EOF'
import json
import sys

from deltalake import DeltaTable

table = DeltaTable(sys.argv[1])
rows = table.to_pandas()
lineage = ["_model_name", "_model_version", "_model_stage", "_model_run_id", "_input_version", "_scoring_id"]
print(f"{len(rows)} scored rows; first three with their lineage:")
print(rows[["x", "z", "prediction", *lineage]].head(3).to_string(index=False))
commit = table.history(1)[0]
facts = json.loads(commit["userMetadata"])["deltaflow.scoring"]
print(f"output version {commit['version']} ({commit['operation']}), userMetadata: model {facts['model_name']} "
      f"v{facts['model_version']} ({facts['model_stage']}), run {facts['model_run_id']}, input "
      f"{facts['input_table']} at version {facts['input_version']}, scoring id {facts['scoring_id']}")
assert rows["_scoring_id"].nunique() == 1 and rows["_scoring_id"].iloc[0] == facts["scoring_id"]
print("BATCH SCORING OK")
EOF
