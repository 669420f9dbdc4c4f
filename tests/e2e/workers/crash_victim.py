"""Logs, flushes, announces it, then keeps logging until it is SIGKILLed (see test_crash.py)."""

import sys
import time

from deltaflow import DeltaflowClient

client = DeltaflowClient(sys.argv[1])
run_id = client.create_run("0", run_name="victim").info.run_id
client.log_param(run_id, "p", "kept")
for i in range(1000):
    client.log_metric(run_id, "flushed", float(i), step=i)
client.flush()
print(f"FLUSHED {run_id}", flush=True)
i = 0
while True:  # unflushed tail: may or may not land, must never corrupt anything
    client.log_metric(run_id, "tail", float(i), step=i)
    i += 1
    if i % 1000 == 0:
        time.sleep(0.01)
