"""``deltaflow models ...`` as users run it: real CLI subprocesses against one real store (rust engine,
no JVM), set up once for the module by a script that logs scikit-learn models as user ``olivia``.

Each test works on its own registered model, so the tests do not depend on each other's changes:
``churn``/``fraud`` are only read (list, describe, the error cases), ``promo`` is moved between stages
and aliased, ``gated`` goes through the request -> approve/reject workflow with a second user
(``alice``, who holds only the CAN_READ every user gets). Outcomes are checked through the Python
client in this process, not only through the CLI's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
pytest.importorskip("sklearn")

TIMEOUT = 180
OWNER, ALICE = "olivia", "alice"

SEED = """
import json
import numpy as np
from sklearn.linear_model import LogisticRegression
import deltaflow
import deltaflow.sklearn

X, Y = np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1]
run_ids = []
for c in (0.5, 1.0, 2.0):
    with deltaflow.start_run() as run:
        deltaflow.sklearn.log_model(LogisticRegression(C=c).fit(X, Y), name="m", registered_model_name="churn")
        run_ids.append(run.info.run_id)
client = deltaflow.MlflowClient()
client.update_registered_model("churn", description="Predicts churn")
client.set_registered_model_tag("churn", "team", "growth")
client.set_model_version_tag("churn", 2, "validated", "true")
client.set_registered_model_alias("churn", "baseline", 1)
client.create_registered_model("fraud", tags={"team": "risk"})
for name in ("promo", "gated"):
    for run_id in run_ids:
        client.register_model(f"runs:/{run_id}/m", name)
deltaflow.flush()
print(json.dumps(run_ids))
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The store (three churn versions from three runs; fraud; promo and gated with three versions)."""
    root = tmp_path_factory.mktemp("cli-models")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DELTAFLOW_REGISTRY_ADMINS", "DELTAFLOW_REGISTRY_DEFAULT_PERMISSION")}
    env.update({"DELTAFLOW_TRACKING_URI": str(root / "store"), "DELTAFLOW_ENGINE": "rust",
                "DELTAFLOW_WAREHOUSE_DIR": str(root / "warehouse"), "DELTAFLOW_FLUSH_INTERVAL_S": "1.0",
                "DELTAFLOW_USER": OWNER, "PYTHONUNBUFFERED": "1"})
    seed = subprocess.run([sys.executable, "-c", SEED], cwd=root, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    run_ids = json.loads(ok(seed).strip().splitlines()[-1])
    from deltaflow import DeltaflowClient

    return {"root": root, "env": env, "run_ids": run_ids,
            "client": DeltaflowClient(str(root / "store"), engine="rust")}


def cli(world: dict[str, Any], *args: str, user: str = OWNER) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deltaflow.cli", *args], cwd=world["root"],
                          env=dict(world["env"], DELTAFLOW_USER=user), capture_output=True, text=True,
                          timeout=TIMEOUT)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def fails(proc: subprocess.CompletedProcess[str], message: str) -> str:
    """A clean failure: exit 2, nothing on stdout, one line on stderr starting with ``message``."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr.strip()


def table(text: str) -> list[list[str]]:
    """The data rows of a format_table output, split on runs of 2+ spaces (cells may hold one)."""
    import re

    lines = text.rstrip("\n").splitlines()
    assert set(lines[1]) <= {"-", " "}, text
    return [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]


def events(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> int:
    """How many registry revisions exist (read as the registry admin: the seed created the registry)."""
    with monkeypatch.context() as m:
        m.setenv("DELTAFLOW_USER", OWNER)
        return len(world["client"].get_registry_activity())


def stages(world: dict[str, Any], name: str) -> dict[int, str]:
    found = world["client"].search_model_versions(f"name = '{name}'")
    return {v.version: v.current_stage for v in found}


HELP = {
    "models": "transition", "models list": "--max-results", "models describe": "--version",
    "models transition": "--archive-existing", "models alias": "--delete", "models requests": "--status",
    "models request": "STAGE", "models approve": "--archive-existing", "models reject": "--comment",
    "models history": "--output",
}
HELP_CODE = """
import json, sys
from click.testing import CliRunner
import deltaflow.cli
out = {}
for command in json.loads(sys.argv[1]):
    result = CliRunner().invoke(deltaflow.cli.cli, [*command.split(), "--help"], prog_name="deltaflow")
    out[command] = [result.exit_code, result.output]
out["heavy"] = sorted(m for m in ("pyspark", "py4j", "pyarrow", "pandas", "deltalake") if m in sys.modules)
print(json.dumps(out))
"""


def test_help_for_every_models_command_without_heavy_imports(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "deltaflow.cli", "models", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    listed = ok(proc)
    assert "Usage: deltaflow models [OPTIONS] COMMAND" in listed
    for command in ("list", "describe", "transition", "alias", "requests", "request", "approve", "reject",
                    "history"):
        assert f"\n  {command} " in listed, (command, listed)
    proc = subprocess.run([sys.executable, "-c", HELP_CODE, json.dumps(list(HELP))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    out = json.loads(ok(proc))
    assert out.pop("heavy") == []
    for command, expected in HELP.items():
        code, text = out[command]
        assert code == 0 and f"Usage: deltaflow {command}" in text and expected in text, (command, text)


def test_list_table_filter_max_results_and_json(world: dict[str, Any]) -> None:
    text = ok(cli(world, "models", "list"))
    assert text.splitlines()[0].split() == ["name", "latest_versions", "aliases", "owner", "last_updated"]
    rows = {row[0]: row for row in table(text)}
    assert set(rows) == {"churn", "fraud", "gated", "promo"}
    assert rows["churn"][1:4] == ["None:3", "baseline=1", OWNER]
    assert rows["fraud"][1] == OWNER  # no versions, no aliases: empty cells
    filtered = json.loads(ok(cli(world, "models", "list", "--filter", "tags.team = 'risk'", "--output", "json")))
    assert [(m["name"], m["tags"], m["latest_versions"]) for m in filtered] == [("fraud", {"team": "risk"}, [])]
    first = json.loads(ok(cli(world, "models", "list", "--max-results", "2", "--output", "json")))
    assert [m["name"] for m in first] == ["churn", "fraud"]
    assert first[0]["aliases"] == {"baseline": 1} and first[0]["description"] == "Predicts churn"
    assert [(v["version"], v["current_stage"]) for v in first[0]["latest_versions"]] == [(3, "None")]


def test_describe_model_and_version(world: dict[str, Any]) -> None:
    run_ids = world["run_ids"]
    text = ok(cli(world, "models", "describe", "churn"))
    head, _, versions = text.partition("\n\n")
    fields = dict(line.split(":", 1) for line in head.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["name"] == "churn" and fields["description"] == "Predicts churn" and fields["owner"] == OWNER
    assert fields["tags"] == "team=growth" and fields["aliases"] == "baseline=1"
    assert fields["permissions"] == f"{OWNER}=CAN_MANAGE, users=CAN_READ" and fields["versions"] == "3"
    assert versions.splitlines()[0].split() == ["version", "stage", "aliases", "run_id", "created", "user", "source"]
    rows = table(versions)
    assert [(r[0], r[1]) for r in rows] == [("1", "None"), ("2", "None"), ("3", "None")]
    assert rows[0][2:4] == ["baseline", run_ids[0]] and rows[0][-1] == f"runs:/{run_ids[0]}/m"
    assert [r[2] for r in rows[1:]] == run_ids[1:]  # no alias: the run id follows the stage

    version = ok(cli(world, "models", "describe", "churn", "--version", "2"))
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in version.splitlines())}
    assert fields["version"] == "2" and fields["stage"] == "None" and fields["tags"] == "validated=true"
    assert fields["run_id"] == run_ids[1] and fields["source"] == f"runs:/{run_ids[1]}/m"
    assert fields["model uri"] == "models:/churn/2" and fields["aliases"] == ""
    assert (Path(fields["storage location"]) / "MLmodel").is_file()  # the registry's own copy

    data = json.loads(ok(cli(world, "models", "describe", "churn", "--version", "1", "--output", "json")))
    assert (data["version"], data["aliases"], data["run_id"]) == (1, ["baseline"], run_ids[0])
    assert data["storage_location"] == world["client"].get_model_version_download_uri("churn", 1)


def test_transition_with_archive_existing(world: dict[str, Any]) -> None:
    out = ok(cli(world, "models", "transition", "promo", "1", "production"))
    assert out.strip() == "Moved version 1 of 'promo' from None to Production"
    ok(cli(world, "models", "transition", "promo", "2", "Staging"))
    assert stages(world, "promo") == {1: "Production", 2: "Staging", 3: "None"}
    out = ok(cli(world, "models", "transition", "promo", "3", "Production", "--archive-existing",
                 "--comment", "retrained"))
    assert out.strip() == "Moved version 3 of 'promo' from None to Production; archived version(s) 1"
    assert stages(world, "promo") == {1: "Archived", 2: "Staging", 3: "Production"}  # Staging untouched

    history = json.loads(ok(cli(world, "models", "history", "promo", "--version", "1", "--output", "json")))
    assert [(a["user_id"], a["action"], a["activity_type"], a["from_stage"], a["to_stage"], a["comment"])
            for a in history] == [
        (OWNER, "CREATE_MODEL_VERSION", None, None, "None", None),
        (OWNER, "TRANSITION_STAGE", "APPLIED_TRANSITION", "None", "Production", None),
        (OWNER, "TRANSITION_STAGE", "SYSTEM_TRANSITION", "Production", "Archived", "retrained"),
    ]
    assert all(a["version"] == 1 for a in history)
    assert [a["revision"] for a in history] == sorted(a["revision"] for a in history)


def test_alias_set_denied_and_delete(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from deltaflow.errors import NotFound

    client = world["client"]
    out = ok(cli(world, "models", "alias", "promo", "champion", "2"))
    assert out.strip() == "Alias 'champion' of 'promo' now points to version 2"
    assert client.get_model_version_by_alias("promo", "champion").version == 2
    before = events(world, monkeypatch)
    fails(cli(world, "models", "alias", "promo", "champion", "3", user=ALICE),
          "error: user 'alice' lacks CAN_MANAGE_PRODUCTION_VERSIONS on registered model 'promo'")
    assert events(world, monkeypatch) == before
    assert client.get_model_version_by_alias("promo", "champion").version == 2
    proc = cli(world, "models", "alias", "promo", "champion", "2", "--delete")
    assert proc.returncode == 2 and "give VERSION to set the alias, or --delete" in proc.stderr

    assert ok(cli(world, "models", "alias", "promo", "champion", "--delete")).strip() == \
        "Deleted alias 'champion' of 'promo'"
    with pytest.raises(NotFound):
        client.get_model_version_by_alias("promo", "champion")
    fails(cli(world, "models", "alias", "promo", "champion", "--delete"),
          "error: registered model 'promo' has no alias 'champion'")


def test_request_approve_reject_workflow_and_history(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    client = world["client"]
    out = ok(cli(world, "models", "request", "gated", "1", "Production", "--comment", "ready", user=ALICE))
    assert out.startswith("Requested moving version 1 of 'gated' to Production (request ") and "by alice" in out
    [pending] = json.loads(ok(cli(world, "models", "requests", "gated", "--output", "json")))
    assert (pending["user_id"], pending["version"], pending["to_stage"], pending["status"], pending["comment"]) == \
        (ALICE, 1, "Production", "PENDING", "ready")

    # alice may ask but not approve; a refused approval writes nothing
    before = events(world, monkeypatch)
    line = fails(cli(world, "models", "approve", "gated", "1", "Production", user=ALICE), "error: ")
    assert "PermissionDenied" not in line  # the message itself, not a class name
    assert "'alice'" in line and "CAN_MANAGE_PRODUCTION_VERSIONS" in line and "holds CAN_READ" in line
    assert events(world, monkeypatch) == before
    assert stages(world, "gated")[1] == "None"
    assert [r.status for r in client.list_transition_requests("gated", status=None)] == ["PENDING"]

    out = ok(cli(world, "models", "approve", "gated", "1", "Production", "--comment", "ship it"))
    assert out.strip() == "Approved 1 request(s): version 1 of 'gated' is now in Production"
    [approved] = client.list_transition_requests("gated", 1, status="APPROVED")
    assert (approved.request_id, approved.resolved_by, approved.resolution_comment) == \
        (pending["request_id"], OWNER, "ship it")

    ok(cli(world, "models", "request", "gated", "2", "staging", user=ALICE))
    out = ok(cli(world, "models", "reject", "gated", "2", "Staging", "--comment", "needs tests"))
    assert out.strip() == "Rejected 1 request(s) to move version 2 of 'gated' to Staging"
    assert stages(world, "gated") == {1: "Production", 2: "None", 3: "None"}
    [rejected] = client.list_transition_requests("gated", 2, status="REJECTED")
    assert (rejected.user_id, rejected.resolved_by, rejected.resolution_comment) == (ALICE, OWNER, "needs tests")
    listed = table(ok(cli(world, "models", "requests", "gated", "--status", "all")))
    assert [(r[1], r[2], r[3], r[4]) for r in listed] == [("1", "Production", "APPROVED", ALICE),
                                                          ("2", "Staging", "REJECTED", ALICE)]
    assert table(ok(cli(world, "models", "requests", "gated"))) == []  # nothing pending now

    text = ok(cli(world, "models", "history", "gated"))
    assert text.splitlines()[0].split() == ["revision", "time", "user", "version", "action", "type", "from_stage",
                                            "to_stage", "comment", "details"]
    rows = table(text)
    assert rows[0][2:4] == [OWNER, "CREATE_REGISTERED_MODEL"]  # no version: the cell is empty
    workflow = [r[2:9] for r in rows if any("TRANSITION_REQUEST" in cell for cell in r)]
    assert workflow == [
        [ALICE, "1", "CREATE_TRANSITION_REQUEST", "REQUESTED_TRANSITION", "None", "Production", "ready"],
        [OWNER, "1", "APPROVE_TRANSITION_REQUEST", "APPROVED_REQUEST", "None", "Production", "ship it"],
        [ALICE, "2", "CREATE_TRANSITION_REQUEST", "REQUESTED_TRANSITION", "None", "Staging"],
        [OWNER, "2", "REJECT_TRANSITION_REQUEST", "REJECTED_REQUEST", "None", "Staging", "needs tests"],
    ]
    times = [r[1] for r in rows]
    assert all(len(t) == 19 and t[4] == "-" and t[10] == " " for t in times) and times == sorted(times)
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)


@pytest.mark.parametrize(("args", "user", "message"), [
    (["describe", "nosuch"], OWNER, "error: registered model 'nosuch' does not exist"),
    (["transition", "nosuch", "1", "Staging"], OWNER, "error: registered model 'nosuch' does not exist"),
    (["transition", "churn", "1", "Prod"], OWNER,
     "error: stage 'Prod' is not one of None, Staging, Production, Archived"),
    (["request", "churn", "1", "Prod"], ALICE, "error: stage 'Prod' is not one of"),
    (["transition", "churn", "9", "Staging"], OWNER, "error: model 'churn' has no version 9; its versions are 1, 2, 3"),
    (["transition", "churn", "1", "Production"], ALICE,
     "error: user 'alice' lacks CAN_MANAGE_PRODUCTION_VERSIONS on registered model 'churn' (holds CAN_READ)"),
    (["approve", "churn", "1", "Staging"], OWNER, "error: there is no pending request to move version 1"),
    (["list", "--filter", "nme = 'x'"], OWNER, "error: Invalid"),
], ids=["describe-unknown", "transition-unknown", "bad-stage", "request-bad-stage", "unknown-version",
        "permission-denied", "nothing-pending", "bad-filter"])
def test_errors_are_one_clean_line_and_write_nothing(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     args: list[str], user: str, message: str) -> None:
    before = events(world, monkeypatch)
    fails(cli(world, "models", *args, user=user), message)
    assert events(world, monkeypatch) == before
    assert stages(world, "churn") == {1: "None", 2: "None", 3: "None"}


def test_usage_errors_exit_2(world: dict[str, Any]) -> None:
    proc = cli(world, "models", "requests", "churn", "--status", "BOGUS")
    assert proc.returncode == 2 and "Invalid value for '--status'" in proc.stderr and proc.stdout == ""
    proc = cli(world, "models", "transition", "churn", "one", "Staging")
    assert proc.returncode == 2 and "Invalid value for 'VERSION'" in proc.stderr and proc.stdout == ""
