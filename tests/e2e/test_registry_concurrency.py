"""Eight processes register the same model name at once: versions are exactly 1..8, and the
registry log keeps exactly one row per revision, with no gap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WORKERS = Path(__file__).parent / "workers"

# Which engine each of the eight registering processes uses: all delta-rs, and a mix in which two
# Spark processes race six delta-rs ones on the same table.
MIXES = {"rust": ["rust"] * 8, "mixed": ["spark", "rust", "rust", "rust", "spark", "rust", "rust", "rust"]}


def _saved_model(path: Path) -> str:
    import deltaflow.pyfunc

    class Constant(deltaflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [7] * len(model_input)

    deltaflow.pyfunc.save_model(str(path), python_model=Constant())
    return str(path)


@pytest.mark.parametrize("mix", list(MIXES))
def test_eight_processes_register_the_same_name(tmp_path, mix, request):
    if "spark" in MIXES[mix]:
        request.getfixturevalue("spark")  # the reader below uses Spark too
    store = str(tmp_path / "store")
    model_dir = _saved_model(tmp_path / "model")
    go = tmp_path / "go"
    procs = []
    for i, engine in enumerate(MIXES[mix]):
        env = dict(os.environ, DELTAFLOW_ENGINE=engine, WORKER_INDEX=str(i), DELTAFLOW_DRIVER_MEMORY="600m")
        procs.append(subprocess.Popen([sys.executable, str(WORKERS / "register_worker.py"), store, model_dir, str(go)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    for p in procs:  # every worker is up before any registers
        line = p.stdout.readline()
        assert line.strip() == "READY", p.stderr.read()[-3000:]
    go.write_text("go")
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert sorted(r["version"] for r in results) == list(range(1, 9))  # no duplicate, no gap
    assert len({r["storage"] for r in results}) == 8  # each version has its own copy
    # The registrations really raced: writers lost claims to each other and decided again.
    assert sum(r["lost_claims"] for r in results) > 0

    from deltaflow import DeltaflowClient
    from deltaflow.config import resolve_location
    from deltaflow.store.factory import make_engine

    for reader in sorted(set(MIXES[mix])):
        rows = make_engine(resolve_location(store), reader).read("registry_events").to_pylist()
        revisions = sorted(r["revision"] for r in rows)
        assert revisions == list(range(1, len(rows) + 1)), reader  # one row per revision, dense
        actions = [r["action"] for r in sorted(rows, key=lambda r: r["revision"])]
        assert actions[0] == "CREATE_REGISTERED_MODEL" and actions.count("CREATE_REGISTERED_MODEL") == 1
        assert actions.count("CREATE_MODEL_VERSION") == 8
        client = DeltaflowClient(store, engine=reader)
        versions = client.search_model_versions("name = 'churn'")
        assert sorted(v.version for v in versions) == list(range(1, 9))
        assert sorted(v.tags["worker"] for v in versions) == [str(i) for i in range(8)]
