"""A process that logs (or registers) models in a loop until it is SIGKILLed (test_model_publish_crash.py).

argv: <store> log            -- start a run, log m0, print {"run_id": ..., "artifact_uri": ...}, then log
                                m1, m2, ... forever
      <store> register <dir> -- register the saved model at <dir> as "victim", print READY, then keep
                                registering it forever
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
    deltaflow.pyfunc.log_model(name="m0", python_model=Blob(8 << 20))  # warm: the kills land in steady state
    print(json.dumps({"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri}), flush=True)
    i = 1
    while True:
        deltaflow.pyfunc.log_model(name=f"m{i}", python_model=Blob(8 << 20))
        i += 1
elif mode == "register":
    client = deltaflow.DeltaflowClient(store)
    client.register_model(sys.argv[3], "victim")  # warm: the kills land in steady state
    print("READY", flush=True)
    while True:
        client.register_model(sys.argv[3], "victim")
else:
    raise SystemExit(f"unknown mode {mode!r}")
