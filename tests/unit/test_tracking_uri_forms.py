"""Tracking URI forms: the supported ones resolve; every other form is refused by
``set_tracking_uri`` itself with one error naming the value and the supported forms."""

from __future__ import annotations

import os
import sys

import pytest

from deltaflow.config import resolve_location, set_tracking_uri
from deltaflow.errors import InvalidArgument


@pytest.mark.parametrize("uri", [
    "databricks", "databricks://my-profile", "databricks-uc", "databricks-uc://prof", "uc:databricks",
    "http://localhost:5000", "https://mlflow.example.com", "sqlite:///mlflow.db", "postgresql://u:p@h/db",
    "mysql+pymysql://u@h/db", "mssql://h/db", "runs:/abc/model", "models:/m/1", "ftp://host/x",
])
def test_unsupported_forms_are_refused_with_the_supported_ones(uri: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    had_spark = "pyspark" in sys.modules
    with pytest.raises(InvalidArgument) as info:
        set_tracking_uri(uri)
    message = str(info.value)
    assert repr(uri) in message
    for form in ("./store", "file:///", "dbfs:/", "/Volumes/", "s3://", "abfss://", "metastore:<catalog>.<schema>"):
        assert form in message, (form, message)
    assert os.listdir(tmp_path) == []  # nothing created
    if not had_spark:
        assert "pyspark" not in sys.modules


@pytest.mark.parametrize("uri", ["databricks", "databricks://profile", "databricks-uc"])
def test_databricks_says_what_to_use_instead(uri: str) -> None:
    with pytest.raises(InvalidArgument, match="MLflow tracking server") as info:
        resolve_location(uri)
    message = str(info.value)
    assert "metastore:<catalog>.<schema>" in message and "/Volumes/<catalog>/<schema>/<volume>" in message
    assert "./databricks" in message  # how to mean a local folder of that name


def test_http_says_deltaflow_is_not_a_tracking_server_client() -> None:
    with pytest.raises(InvalidArgument, match="tracking server"):
        resolve_location("http://localhost:5000")


@pytest.mark.parametrize(("uri", "kind"), [
    ("./store", "path"), ("store", "path"), ("/abs/store", "path"), ("file:///abs/store", "path"),
    ("file:/abs/store", "path"), ("~/store", "path"), ("./databricks", "path"), ("dbfs:/ml/store", "path"),
    ("/Volumes/c/s/v/store", "path"), ("s3://b/store", "path"), ("s3a://b/store", "path"), ("gs://b/store", "path"),
    ("abfss://c@acct.dfs.core.windows.net/x", "path"), ("az://c/x", "path"), ("hdfs://nn:8020/x", "path"),
    ("wasbs://c@acct.blob.core.windows.net/x", "path"), ("metastore:main.ml", "metastore"),
    ("metastore:ml", "metastore"),
])
def test_supported_forms_resolve(uri: str, kind: str) -> None:
    assert resolve_location(uri).kind == kind
