"""The executors' half of spark_udf, driven directly with the batches Spark's Python worker hands it
(tuples of pandas Series): no JVM needed, the model is a real saved one shipped as its payload bytes
(as on Spark Connect)."""

from __future__ import annotations

import os
import zipfile
import zipimport

import numpy as np
import pandas as pd
import pytest

import deltaflow.sklearn
from deltaflow.errors import InvalidArgument
from deltaflow.serving import _worker

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    from sklearn.linear_model import LinearRegression

    train = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) % 7, "c": np.arange(30.0) ** 0.5})
    model = LinearRegression().fit(train, train["a"] * 2 - train["b"] + 3 * train["c"])
    path = str(tmp_path_factory.mktemp("worker") / "model")
    deltaflow.sklearn.save_model(model, path, input_example=train.head(2))
    return model, path


def _plan(path: str, tmp_path, monkeypatch) -> _worker.UdfPlan:
    """The plan the driver would build: the model resolved and packed by the driver's own code."""
    from pyspark.sql.types import DoubleType

    from deltaflow.serving._model import resolve

    monkeypatch.setenv("DELTAFLOW_SCORING_DIR", str(tmp_path / "scratch"))
    resolved = resolve(path)
    try:
        key, data = resolved.payload()
        schema = resolved.meta.signature.inputs
    finally:
        resolved.cleanup()
    return _worker.UdfPlan(key, data, NAMES, 3, schema, None, DoubleType())


def _batch(start: int, rows: int) -> tuple[pd.Series, ...]:
    a = pd.Series(np.arange(start, start + rows, dtype="float64"))
    b = pd.Series(np.arange(start, start + rows, dtype="float64") % 5)
    c = pd.Series(np.linspace(0, 1, rows))
    return a, b, c


def test_batches_are_gathered_into_one_predict_with_identical_results(linear, tmp_path, monkeypatch):
    model, path = linear
    plan = _plan(path, tmp_path, monkeypatch)
    monkeypatch.setenv("DELTAFLOW_UDF_BATCH_ROWS", "250")
    batches = [_batch(0, 100), _batch(100, 100), _batch(200, 100), _batch(300, 40)]
    out = list(_worker.run(plan, iter(batches)))
    # 300 rows reach the 250-row target after the third batch; the last 40 are scored at the end.
    assert [len(s) for s in out] == [300, 40]
    frame = pd.concat([pd.DataFrame(dict(zip(NAMES, b))) for b in batches], ignore_index=True)
    expected = model.predict(frame.astype("float64"))
    np.testing.assert_allclose(pd.concat(out, ignore_index=True).to_numpy(), expected, rtol=1e-12)


def test_a_column_whose_dtype_changes_between_batches_and_a_general_batch(linear, tmp_path, monkeypatch):
    """Spark hands an int column as int32 in one batch and float64 in the next (it had nulls there); a
    batch with an object column goes through the general path, and what was gathered is scored first."""
    model, path = linear
    plan = _plan(path, tmp_path, monkeypatch)
    first = _batch(0, 50)
    first = (first[0], first[1].astype("int32"), first[2])  # an int column (no nulls in this batch)
    second = _batch(50, 50)  # the same column as float64 (it had nulls)
    third = _batch(100, 30)
    third = (third[0], third[1], third[2].astype(object))  # not a plain numeric column: the general path
    out = list(_worker.run(plan, iter([first, second, third])))
    assert [len(s) for s in out] == [100, 30]
    frame = pd.concat([pd.DataFrame(dict(zip(NAMES, (pd.Series(np.asarray(s, dtype="float64")) for s in b))))
                       for b in (first, second, third)], ignore_index=True)
    np.testing.assert_allclose(pd.concat(out, ignore_index=True).to_numpy(), model.predict(frame), rtol=1e-12)


def test_too_few_columns_is_refused_naming_the_expected_ones(linear, tmp_path, monkeypatch):
    _model, path = linear
    plan = _plan(path, tmp_path, monkeypatch)
    a, b, _c = _batch(0, 10)
    with pytest.raises(InvalidArgument, match=r"expects 3 input columns \['a', 'b', 'c'\]"):
        list(_worker.run(plan, iter([(a, b)])))


def test_zip_listings_are_reread_only_when_the_archive_changes(tmp_path, monkeypatch):
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("one.py", "X = 1\n")
    importer = zipimport.zipimporter(str(archive))
    _worker._keep_unchanged_zip_listings()
    _worker._keep_unchanged_zip_listings()  # applying it twice wraps once
    reads = []
    real = zipimport._read_directory
    monkeypatch.setattr(zipimport, "_read_directory", lambda path: reads.append(path) or real(path))

    importer.invalidate_caches()
    importer.invalidate_caches()
    zipimport.zipimporter(str(archive) + "/").invalidate_caches()  # another importer of the same archive
    assert len(reads) == 1  # read at its first invalidation only, then kept

    with zipfile.ZipFile(archive, "a") as zf:  # the archive changes: it is read again
        zf.writestr("two.py", "Y = 2\n")
    os.utime(archive, ns=(os.stat(archive).st_atime_ns, os.stat(archive).st_mtime_ns + 10**9))
    before = len(reads)
    importer.invalidate_caches()
    assert len(reads) == before + 1
    assert importer.find_spec("two") is not None
