"""One of several processes registering the same model name at once (test_registry_concurrency.py).

argv: <store> <model dir> <go file>. Waits until <go file> exists so every worker has its engine up
and the registrations really overlap, then registers and prints {"version": n, "user": ...}.
"""

import json
import os
import sys
import time

from deltaflow import DeltaflowClient

store, model_dir, go = sys.argv[1], sys.argv[2], sys.argv[3]
client = DeltaflowClient(store)
client._registry.state()  # starts the engine (for spark, the JVM) and creates the log table before the race
print("READY", flush=True)
deadline = time.time() + 600
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.01)
version = client.register_model(model_dir, "churn", tags={"worker": os.environ.get("WORKER_INDEX", "?")})
print(json.dumps({"version": version.version, "storage": version.storage_location,
                  "lost_claims": client._registry.lost_claims}), flush=True)
