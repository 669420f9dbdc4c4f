"""Logs one metric per step and commits every 200 steps, forever, until it is SIGKILLed: its last
flush may be cut between the metrics and latest_metrics commits (see test_durability.py).

argv: <store>. Prints "RUN <run_id>" once the run exists.
"""

import sys

from deltaflow import DeltaflowClient

client = DeltaflowClient(sys.argv[1])
run_id = client.create_run("0", run_name="streamer").info.run_id
client.flush()
print(f"RUN {run_id}", flush=True)
step = 0
while True:
    client.log_metric(run_id, "m", float(step), step=step)
    step += 1
    if step % 200 == 0:
        client.flush()
