"""Runs `deltaflow optimize` (compaction, no VACUUM) on a store again and again until a stop file
appears, as an operator's scheduled maintenance would while writers are busy.

argv: <store> <stop file>. Prints the number of optimize passes.
"""

import os
import sys
import time

from deltaflow import DeltaflowClient
from deltaflow.store import maintenance

store, stop = sys.argv[1], sys.argv[2]
client = DeltaflowClient(store)
passes = 0
while not os.path.exists(stop):
    maintenance.optimize(client._store, tables=["metrics", "latest_metrics", "runs"], zorder=False,
                         vacuum_hours=None)
    passes += 1
    time.sleep(0.05)
print(passes, flush=True)
