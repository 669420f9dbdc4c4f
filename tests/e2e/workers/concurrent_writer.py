"""One of several processes writing the same store at once (see test_concurrency.py).

argv: <store> <worker index> <metrics per worker>. Prints one JSON line: {run_id: final status}.
"""

import json
import sys

import deltaflow
from deltaflow import DeltaflowClient, Metric

store, index, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = DeltaflowClient(store)
assert client._store.default_experiment_id() == "0"  # created by whichever worker wins, once
statuses = ["FINISHED", "FAILED", "KILLED", "FINISHED", "RUNNING"]
runs = {}
per_run = total // len(statuses)
for r, final in enumerate(statuses):
    run_id = client.create_run("0", run_name=f"w{index}-r{r}").info.run_id
    # log in batches of 50 with commits forced often, so commits from all workers interleave
    for start in range(0, per_run, 50):
        batch = [Metric("m", float(i), 1_700_000_000_000 + i, i) for i in range(start, min(start + 50, per_run))]
        client.log_batch(run_id, metrics=batch)
        if start % 500 == 0:
            client.update_run(run_id, status="RUNNING")  # intermediate status events
    if final != "RUNNING":
        client.set_terminated(run_id, final)
    runs[run_id] = final
client.flush()
print(json.dumps(runs), flush=True)
deltaflow.flush()
