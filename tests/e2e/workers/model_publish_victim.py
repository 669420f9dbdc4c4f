"""A process that logs (or registers) models in a loop until it is SIGKILLed (test_model_publish_crash.py).

argv: <store> log            -- start a run, print {"run_id": ...}, then log models m0, m1, ... forever
      <store> register <dir> -- print READY, then register the saved model at <dir> as "victim" forever
Each model carries a few MB of pickled bytes so copying it takes long enough for kills to land mid-copy.
"""

import json
import os
import sys

import deltaflow
import deltaflow.pyfunc


class Blob(deltaflow.pyfunc.PythonModel):
    def __init__(self, size: int) -> None:
        self.blob = os.urandom(size)

    def predict(self, context, model_input, params=None):
        return [len(self.blob)] * len(model_input)


store, mode = sys.argv[1], sys.argv[2]
deltaflow.set_tracking_uri(store)
if mode == "log":
    run = deltaflow.start_run()
    print(json.dumps({"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri}), flush=True)
    i = 0
    while True:
        deltaflow.pyfunc.log_model(name=f"m{i}", python_model=Blob(8 << 20), artifacts=None)
        i += 1
elif mode == "register":
    client = deltaflow.DeltaflowClient(store)
    client._registry.state()  # the engine and the log table are up before the first kill can land
    print("READY", flush=True)
    while True:
        client.register_model(sys.argv[3], "victim")
else:
    raise SystemExit(f"unknown mode {mode!r}")
