"""Pure logic: validation rules, tracking-URI resolution, event folding, the public surface."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from deltaflow import config
from deltaflow.errors import DeltaflowError, InvalidArgument
from deltaflow.store.fold import fold_experiments, fold_latest_metrics, fold_params, fold_runs, fold_tags
from deltaflow.tracking import _validation as V


@pytest.mark.parametrize("key", ["a", "a.b", "a_b-c d/e:f", "x" * 250, "metric/sub", "1"])
def test_good_keys(key):
    assert V.validate_key(key, "metric") == key


@pytest.mark.parametrize(
    "key, fragment",
    [("", "must not be empty"), ("x" * 251, "limit is 250"), ("a$b", "invalid metric key"),
     ("../a", "invalid"), ("/a", "invalid"), ("a//b", "invalid"), ("a/./b", "invalid"), (None, "must be a string"),
     (3, "must be a string"), ("a\nb", "invalid")],
)
def test_bad_keys_name_the_key_and_rule(key, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        V.validate_key(key, "metric")


def test_metric_values():
    assert V.validate_metric("m", 1, 5, 2) == ("m", 1.0, 5, 2)
    assert math.isnan(V.validate_metric("m", float("nan"), 0, 0)[1])
    assert V.validate_metric("m", float("-inf"), 0, 0)[1] == -math.inf
    assert V.validate_metric("m", True, 0, 0)[1] == 1.0
    import numpy as np

    assert V.validate_metric("m", np.float32(0.5), np.int64(3), np.int32(1)) == ("m", 0.5, 3, 1)
    for bad, msg in [("1", "must be a number"), (None, "must be a number"), (1j, "must be a number")]:
        with pytest.raises(InvalidArgument, match=msg):
            V.validate_metric("m", bad, 0, 0)
    with pytest.raises(InvalidArgument, match="timestamp"):
        V.validate_metric("m", 1.0, 1.5, 0)
    with pytest.raises(InvalidArgument, match="64-bit"):
        V.validate_metric("m", 1.0, 0, 2**63)


def test_param_and_tag_limits():
    assert V.validate_param("p", 5) == ("p", "5")
    V.validate_param("p", "x" * 6000)
    with pytest.raises(InvalidArgument, match="6001 characters long; the limit is 6000"):
        V.validate_param("p", "x" * 6001)
    V.validate_tag("t", "x" * 8000)
    with pytest.raises(InvalidArgument, match="limit is 8000"):
        V.validate_tag("t", "x" * 8001)


def test_ids_and_names():
    assert V.validate_run_id("a" * 32) == "a" * 32
    for bad in ["A" * 32, "a" * 31, "'; DROP TABLE runs; --", None]:
        with pytest.raises(InvalidArgument, match="32 lowercase hex"):
            V.validate_run_id(bad)
    assert V.validate_experiment_id(12) == "12"
    with pytest.raises(InvalidArgument):
        V.validate_experiment_id("1 OR 1=1")
    with pytest.raises(InvalidArgument):
        V.validate_experiment_name("   ")


def test_errors_form_one_tree():
    from deltaflow import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, DeltaflowError)
        assert isinstance(cls.error_code, str) and cls.error_code
    assert issubclass(errors.InvalidArgument, ValueError)
    assert "pip install 'deltaflow[spark]'" in str(errors.MissingDependency.for_extra("X", "pyspark", "spark"))


def test_tracking_uri_forms(tmp_path, monkeypatch):
    monkeypatch.delenv(config.TRACKING_URI_ENV, raising=False)
    monkeypatch.delenv(config.ARTIFACT_ROOT_ENV, raising=False)
    config.set_tracking_uri(None)
    monkeypatch.chdir(tmp_path)
    default = config.resolve_location()
    assert default.kind == "path" and default.root == str(tmp_path / "deltaflow-store")
    assert default.table_path("runs") == str(tmp_path / "deltaflow-store" / "tables" / "runs")
    assert default.artifact_root == str(tmp_path / "deltaflow-store" / "artifacts")
    monkeypatch.setenv(config.TRACKING_URI_ENV, "dbfs:/ml/store/")
    dbfs = config.resolve_location()
    assert dbfs.root == "dbfs:/ml/store" and dbfs.artifact_root == "dbfs:/ml/store/artifacts"
    config.set_tracking_uri("file:///tmp/x")
    assert config.resolve_location().root == "/tmp/x"  # explicit beats env
    config.set_tracking_uri(None)
    uc = config.resolve_location("metastore:main.ml")
    assert uc.kind == "metastore" and uc.table_name("runs") == "main.ml.runs"
    assert uc.artifact_root == "/Volumes/main/ml/deltaflow_artifacts"
    assert config.resolve_location("metastore:db", artifact_root="s3a://b/a").artifact_root == "s3a://b/a"
    assert config.resolve_location("/Volumes/c/s/v/store").root == "/Volumes/c/s/v/store"
    for bad in ["metastore:", "metastore:a.b.c", "metastore:a;drop", "metastore:a b", "  "]:
        with pytest.raises(InvalidArgument):
            config.resolve_location(bad)
    with pytest.raises(InvalidArgument):
        config.set_tracking_uri("metastore:1bad")
    assert config.get_tracking_uri() == "dbfs:/ml/store/"  # a rejected URI changed nothing


def test_folds_latest_wins_first_param_wins_nan_ordering():
    ev = lambda t, s, **kw: {"event_time": t, "seq": s, **kw}  # noqa: E731
    runs = fold_runs([
        ev(2, 0, run_id="r", experiment_id="e", status="FINISHED", end_time=9, heartbeat_time=5),
        ev(1, 0, run_id="r", experiment_id="e", status="RUNNING", start_time=1, run_name="a", heartbeat_time=7),
        ev(2, 1, run_id="r", experiment_id="e", run_name="b"),
    ])
    assert runs["r"]["status"] == "FINISHED" and runs["r"]["run_name"] == "b"
    assert runs["r"]["start_time"] == 1 and runs["r"]["heartbeat_time"] == 7
    tags = fold_tags([ev(1, 0, run_id="r", key="k", value="v"), ev(2, 0, run_id="r", key="k", value=None),
                      ev(1, 1, run_id="r", key="j", value="x")], "run_id")
    assert tags == {"r": {"j": "x"}}
    params = fold_params([ev(2, 0, run_id="r", key="p", value="late"), ev(1, 0, run_id="r", key="p", value="first")])
    assert params == {"r": {"p": "first"}}
    m = fold_latest_metrics([
        {"run_id": "r", "key": "m", "value": 5.0, "step": 1, "timestamp": 10},
        {"run_id": "r", "key": "m", "value": 1.0, "step": 2, "timestamp": 1},
        {"run_id": "r", "key": "m", "value": float("nan"), "step": 2, "timestamp": 1},
    ])
    assert math.isnan(m["r"]["m"]["value"]) and m["r"]["m"]["step"] == 2
    exps = fold_experiments([ev(1, 0, experiment_id="1", name="a", creation_time=1, lifecycle_stage="active"),
                             ev(3, 0, experiment_id="1", lifecycle_stage="deleted")])
    assert exps["1"]["name"] == "a" and exps["1"]["lifecycle_stage"] == "deleted"
    assert exps["1"]["last_update_time"] == 3


def test_public_surface_and_import_cost():
    import deltaflow

    for name in deltaflow.__all__:
        assert hasattr(deltaflow, name), name
    exported = {n for n in dir(deltaflow) if not n.startswith("_")} | {"__version__"}
    assert set(deltaflow.__all__) <= exported
    code = ("import sys, deltaflow; heavy = [m for m in ('pyspark', 'pyarrow', 'pandas', 'delta') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import deltaflow pulled in {out}"


def test_documented_submodule_paths_work_after_a_plain_import():
    """`deltaflow.pyspark.ml.autolog` and `deltaflow.sql.register_views`, as the README writes them, need
    no extra import; `import deltaflow` alone still loads no pyspark."""
    code = ("import sys, deltaflow; before = 'pyspark' in sys.modules;"
            "f = deltaflow.pyspark.ml.autolog; g = deltaflow.sql.register_views;"
            "print(before, callable(f), callable(g))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False True True", out.stderr[-2000:]
