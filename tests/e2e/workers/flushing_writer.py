"""A writer that commits every N points (flush()), so its commits interleave with other writers'
and small files pile up fast: the shape that makes compactions race.

argv: <store> <worker index> <runs> <points per run> <flush every>. Prints {run_id: "FINISHED"}.
"""

import json
import sys

from deltaflow import DeltaflowClient, Metric

store, index, runs, points, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
client = DeltaflowClient(store)
done = {}
for r in range(runs):
    run_id = client.create_run("0", run_name=f"w{index}-r{r}").info.run_id
    for start in range(0, points, every):
        client.log_batch(run_id, metrics=[Metric("m", float(i), 1_700_000_000_000 + i, i)
                                          for i in range(start, min(start + every, points))])
        client.flush()
    client.set_terminated(run_id, "FINISHED")
    done[run_id] = "FINISHED"
client.flush()
print(json.dumps(done), flush=True)
