"""Pure model-format pieces, no Spark and no store: URIs, MLmodel, signatures, enforcement, environment."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from deltaflow.errors import InvalidArgument, NotFound
from deltaflow.models import (
    ColSpec,
    Model,
    ModelSignature,
    ParamSchema,
    ParamSpec,
    Schema,
    TensorSpec,
    download_model,
    infer_signature,
    parse_model_uri,
)
from deltaflow.models.enforce import enforce_params, enforce_schema
from deltaflow.models.environment import modules_in_pickle, requirements_for


# -- URIs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri, expected", [
    ("runs:/abc123/model", dict(kind="runs", run_id="abc123", artifact_path="model")),
    ("runs:/abc123/nested/dir/model", dict(kind="runs", run_id="abc123", artifact_path="nested/dir/model")),
    ("runs:/abc123", dict(kind="runs", run_id="abc123", artifact_path="")),
    ("models:/churn/3", dict(kind="models", name="churn", version=3)),
    ("models:/churn/Production", dict(kind="models", name="churn", stage="Production")),
    ("models:/churn/staging", dict(kind="models", name="churn", stage="Staging")),
    ("models:/churn/latest", dict(kind="models", name="churn", latest=True)),
    ("models:/main.ml.churn@champion", dict(kind="models", name="main.ml.churn", alias="champion")),
    ("models:/main.ml.churn/2", dict(kind="models", name="main.ml.churn", version=2)),
    ("/Volumes/cat/sch/vol/models/m1", dict(kind="local", path="/Volumes/cat/sch/vol/models/m1")),
    ("file:///tmp/some%20model", dict(kind="local", path="/tmp/some model")),
    ("dbfs:/ml/models/m1", dict(kind="storage", path="dbfs:/ml/models/m1")),
    ("s3a://bucket/models/m1", dict(kind="storage", path="s3a://bucket/models/m1")),
])
def test_parse_model_uri_forms(uri, expected):
    parsed = parse_model_uri(uri)
    for key, value in expected.items():
        assert getattr(parsed, key) == value, key


def test_relative_path_is_absolutised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_model_uri("my_model").path == str(tmp_path / "my_model")


@pytest.mark.parametrize("uri, part", [
    ("", "empty"),
    ("runs:/", "run id is missing"),
    ("runs://abc/model", "directly by the run id"),
    ("runs:/ab$c/model", "run id 'ab$c'"),
    ("runs:/abc/../../etc", "artifact path"),
    ("models:/", "name is empty"),
    ("models:/churn", "must be followed by"),
    ("models:/churn/Prod", "'Prod' is not a version number"),
    ("models:/churn/0", "positive integer"),
    ("models:/churn/1/extra", "extra path segments"),
    ("models:/churn@", "alias after '@' is empty"),
    ("models:/churn@bad alias", "alias 'bad alias'"),
    ("models:/main..churn/1", "empty part between dots"),
    ("models://churn/1", "directly by the model name"),
    ("ftp://host/model", "unknown scheme 'ftp:'"),
    ("file://otherhost/tmp/m", "remote"),
    ("dbfs:model", "dbfs:/<path>"),
])
def test_malformed_uris_name_the_wrong_part(uri, part):
    with pytest.raises(InvalidArgument) as err:
        parse_model_uri(uri)
    assert part in str(err.value)


def test_non_string_uri():
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_model_uri(42)  # type: ignore[arg-type]


def test_models_uri_of_unknown_model_names_it(tmp_path):
    from deltaflow.errors import NotFound

    with pytest.raises(NotFound, match="registered model 'churn' does not exist"):
        download_model("models:/churn/1", tracking_uri=str(tmp_path / "store"))


def test_missing_local_model_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        download_model(str(tmp_path / "nope"))


# -- MLmodel ----------------------------------------------------------------------------------
def test_mlmodel_round_trip_keeps_unknown_keys(tmp_path):
    sig = ModelSignature(Schema([ColSpec("double", "a"), ColSpec("string", "s", required=False)]),
                         Schema([ColSpec("long")]), ParamSchema([ParamSpec("k", "long", 3)]))
    model = Model(artifact_path="model", run_id="r1", signature=sig, mlflow_version="3.17.2",
                  prompts=None, some_future_key={"x": 1})
    model.add_flavor("python_function", loader_module="mlflow.sklearn", model_path="model.pkl")
    model.save(str(tmp_path / "MLmodel"))
    back = Model.load(str(tmp_path))
    assert back.to_dict() == model.to_dict()
    assert back.signature == sig and back.extra["some_future_key"] == {"x": 1}


def test_mlmodel_errors(tmp_path):
    with pytest.raises(NotFound, match="no MLmodel file"):
        Model.load(str(tmp_path))
    (tmp_path / "MLmodel").write_text("flavors: [1, 2]\n")
    with pytest.raises(InvalidArgument, match="'flavors' mapping"):
        Model.load(str(tmp_path))


def test_signature_json_matches_mlflow_strings():
    text = ('[{"type": "double", "name": "a", "required": true}, {"type": "long", "name": "b", '
            '"required": true}]')
    assert Schema.from_json(text).to_json() == text
    tensor = '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}]'
    assert Schema.from_json(tensor).to_json() == tensor
    params = '[{"name": "k", "default": 1, "shape": null, "type": "long"}]'
    assert ParamSchema.from_json(params).to_json() == params
    composite = '[{"type": "array", "items": {"type": "string"}, "name": "tags", "required": true}]'
    assert Schema.from_json(composite).to_dict() == json.loads(composite)


def test_bad_column_type_is_named():
    with pytest.raises(InvalidArgument, match="column type 'int64' for column 'x'"):
        ColSpec("int64", "x")


# -- inference --------------------------------------------------------------------------------
def _frame():
    return pd.DataFrame({
        "i32": np.array([1, 2], dtype=np.int32), "i64": [1, 2], "f32": np.array([1, 2], dtype=np.float32),
        "f64": [1.0, 2.5], "b": [True, False], "by": [b"x", b"y"], "s": ["a", "b"],
        "o": pd.Series(["a", "b"], dtype=object), "dt": pd.to_datetime(["2020-01-01", "2021-01-01"]),
    })


def test_infer_signature_types():
    sig = infer_signature(_frame(), pd.Series([1.0, 2.0]), params={"k": 1, "t": "x", "lst": [1, 2]})
    assert [(c.name, c.type) for c in sig.inputs] == [
        ("i32", "integer"), ("i64", "long"), ("f32", "float"), ("f64", "double"), ("b", "boolean"),
        ("by", "binary"), ("s", "string"), ("o", "string"), ("dt", "datetime")]
    assert sig.outputs.to_dict() == [{"type": "double", "required": True}]
    assert sig.params.to_json() == ('[{"name": "k", "default": 1, "shape": null, "type": "long"}, '
                                    '{"name": "t", "default": "x", "shape": null, "type": "string"}, '
                                    '{"name": "lst", "default": [1, 2], "shape": [-1], "type": "long"}]')
    tensor = infer_signature(np.zeros((3, 4)), np.array([0, 1, 1]))
    assert tensor.inputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]


def test_inferred_signatures_equal_mlflows():
    mlflow_sig = pytest.importorskip("mlflow.models.signature")
    frame = _frame()
    cases = [(frame, pd.Series([1.0, 2.0]), None), (np.zeros((3, 4)), np.array([0, 1, 1]), None),
             (frame[["f64", "s"]], pd.DataFrame({"p": [1, 2], "q": ["x", "y"]}), {"k": 1, "f": 0.5})]
    for inputs, outputs, params in cases:
        with _no_check():
            theirs = mlflow_sig.infer_signature(inputs, outputs, params=params).to_dict()
        assert infer_signature(inputs, outputs, params).to_dict() == theirs


class _no_check:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


# -- enforcement ------------------------------------------------------------------------------
SCHEMA = Schema([ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("string", "s")])


def test_enforce_allows_safe_conversions_and_drops_extra_columns():
    data = pd.DataFrame({"extra": [9, 9], "s": ["a", "b"], "n": np.array([1, 2], dtype=np.int32),
                         "x": np.array([1, 2], dtype=np.int32)})
    out = enforce_schema(data, SCHEMA)
    assert list(out.columns) == ["x", "n", "s"]
    assert out["x"].dtype == np.float64 and out["n"].dtype == np.int64


def test_enforce_reads_decimals_as_double_as_mlflow_does():
    from decimal import Decimal

    out = enforce_schema(pd.DataFrame({"x": [Decimal("0.10"), None, Decimal("12345678901.25")], "n": [1, 2, 3],
                                       "s": ["a", "b", "c"]}), SCHEMA)
    assert out["x"].dtype == np.float64
    np.testing.assert_array_equal(out["x"].to_numpy(), [0.1, np.nan, 12345678901.25])
    with pytest.raises(InvalidArgument, match="input column 'x' has type object"):  # decimals mixed with text
        enforce_schema(pd.DataFrame({"x": [Decimal("1"), "2"], "n": [1, 2], "s": ["a", "b"]}), SCHEMA)
    with pytest.raises(InvalidArgument, match="input column 'n' has type object"):  # only double takes them
        enforce_schema(pd.DataFrame({"x": [1.0], "n": [Decimal("1")], "s": ["a"]}), SCHEMA)


def test_enforce_missing_column_names_it():
    with pytest.raises(InvalidArgument, match="input column 'n' is required by the model signature but missing"):
        enforce_schema(pd.DataFrame({"x": [1.0], "s": ["a"]}), SCHEMA)


@pytest.mark.parametrize("column, value, expected", [
    ("n", [1.5], "'long'"),         # double -> long loses data
    ("x", ["a"], "'double'"),       # string -> double
    ("s", [1.0], "'string'"),       # double -> string
])
def test_enforce_unsafe_conversion_names_column_and_type(column, value, expected):
    data = {"x": [1.0], "n": [1], "s": ["a"]}
    data[column] = value
    with pytest.raises(InvalidArgument) as err:
        enforce_schema(pd.DataFrame(data), SCHEMA)
    assert f"input column {column!r}" in str(err.value) and expected in str(err.value)


def test_enforce_missing_values_hint():
    with pytest.raises(InvalidArgument, match="Hint: integer columns cannot hold missing values"):
        enforce_schema(pd.DataFrame({"x": [1.0], "n": [np.nan], "s": ["a"]}), SCHEMA)


def test_enforce_optional_column_and_tensors():
    schema = Schema([ColSpec("double", "x"), ColSpec("double", "opt", required=False)])
    assert list(enforce_schema(pd.DataFrame({"x": [1.0]}), schema).columns) == ["x"]
    tensor = Schema([TensorSpec("float64", (-1, 2))])
    assert enforce_schema(np.ones((3, 2), dtype=np.float32), tensor).dtype == np.float64
    with pytest.raises(InvalidArgument, match="shape"):
        enforce_schema(np.ones((3, 3)), tensor)
    with pytest.raises(InvalidArgument, match="dtype"):
        enforce_schema(np.ones((3, 2)), Schema([TensorSpec("int32", (-1, 2))]))


def test_enforce_params():
    schema = ParamSchema([ParamSpec("k", "long", 3), ParamSpec("t", "double", 0.5)])
    assert enforce_params({"k": 5, "zzz": 1}, schema) == {"k": 5, "t": 0.5}
    assert enforce_params({"t": 2}, schema) == {"k": 3, "t": 2.0}
    with pytest.raises(InvalidArgument, match="param 'k' has value 'x'.*'long'"):
        enforce_params({"k": "x"}, schema)


# -- environment ------------------------------------------------------------------------------
def test_requirements_pin_flavor_libraries_and_pickle_modules():
    import pickle

    data = pickle.dumps(pd.DataFrame({"a": [1]}))
    assert {"pandas", "numpy"} <= modules_in_pickle(data)
    reqs = requirements_for(["cloudpickle"], data)
    assert reqs[0].startswith(("mlflow==", "deltaflow==")) and any(r.startswith("deltaflow==") for r in reqs)
    names = {r.split("==")[0] for r in reqs}
    assert {"cloudpickle", "pandas", "numpy"} <= names
    assert requirements_for(["numpy"], pip_requirements=["x==1"]) == ["x==1"]
    assert requirements_for(["numpy"], extra_pip_requirements=["y>=2"])[-1] == "y>=2"


def test_import_stays_light():
    code = ("import sys, deltaflow.models, deltaflow.pyfunc, deltaflow.sklearn, deltaflow.spark;"
            "print([m for m in ('pyspark', 'pandas', 'pyarrow', 'numpy', 'sklearn', 'cloudpickle') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pickled_object_modules_are_pinned():
    cloudpickle = pytest.importorskip("cloudpickle")
    linear = pytest.importorskip("sklearn.linear_model")

    class Wrapper:  # a custom object holding an sklearn model: its pickle names sklearn's classes
        def __init__(self):
            self.inner = linear.LinearRegression()

    names = {r.split("==")[0] for r in requirements_for([], cloudpickle.dumps(Wrapper()))}
    assert "scikit-learn" in names


@pytest.mark.parametrize("module", ["deltaflow.models", "deltaflow.models.schema", "deltaflow.models.uri",
                                    "deltaflow.models.model", "deltaflow.models.infer",
                                    "deltaflow.models.enforce", "deltaflow.models.environment",
                                    "deltaflow.pyfunc", "deltaflow.sklearn", "deltaflow.spark"])
def test_public_surface(module):
    import importlib

    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_flavors_are_lazy_attributes_of_the_package():
    import deltaflow

    assert deltaflow.sklearn.FLAVOR_NAME == "sklearn" and deltaflow.pyfunc.FLAVOR_NAME == "python_function"
    assert deltaflow.spark.FLAVOR_NAME == "spark" and deltaflow.models.Model is Model


def test_unknown_loader_module_is_a_missing_dependency(tmp_path):
    import deltaflow.pyfunc
    from deltaflow.errors import MissingDependency

    model = Model().add_flavor("python_function", loader_module="mlflow.not_a_flavor_xyz")
    model.save(str(tmp_path / "MLmodel"))
    with pytest.raises(MissingDependency, match="'mlflow.not_a_flavor_xyz', which is not installed"):
        deltaflow.pyfunc.load_model(str(tmp_path))
    no_pyfunc = tmp_path / "spark_only"
    no_pyfunc.mkdir()
    Model().add_flavor("spark", model_data="sparkml").save(str(no_pyfunc / "MLmodel"))
    with pytest.raises(InvalidArgument, match="has no python_function flavor"):
        deltaflow.pyfunc.load_model(str(no_pyfunc))
