"""The ``spark`` flavor: fitted pyspark.ml models (PipelineModel or single models), in MLflow's layout.

Mirrors ``mlflow.spark``: the model is written by Spark's own writer into the ``sparkml`` folder (a
single model as a one-stage PipelineModel, as MLflow saves it, so ``load_model`` returns a
PipelineModel), MLmodel records ``model_class`` and ``pyspark_version``, and the python_function flavor
(``loader_module: mlflow.spark``) scores a pandas DataFrame through the active SparkSession. pyspark
is imported only inside these functions.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import uuid
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, MissingDependency
from deltaflow.models.model import Model, ModelInfo

__all__ = ["save_model", "log_model", "load_model", "FLAVOR_NAME"]

FLAVOR_NAME = "spark"
_DATA = "sparkml"
# What scoring needs: pyspark.ml imports numpy, and the python_function flavor takes pandas frames
# (MLflow's inferred requirements for a Spark model pin both too).
_LIBRARIES = ("pyspark", "numpy", "pandas")


def _require_pyspark(feature: str) -> None:
    if importlib.util.find_spec("pyspark") is None:
        raise MissingDependency.for_extra(feature, "pyspark", "spark")


def _session() -> Any:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        from pyspark import TaskContext

        if TaskContext.get() is not None:
            return _task_session()
        from deltaflow._spark import get_spark

        spark = get_spark()
    return spark


def _task_session() -> Any:
    """Inside a Spark task (a Python worker scoring through spark_udf) no session exists: a small
    local one, as MLflow builds it there (one JVM per Python worker, kept for the worker's life)."""
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[1]").appName("deltaflow-task-model")
            .config("spark.executor.allowSparkContext", "true")  # Spark refuses a context in a task otherwise
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.memory", "512m")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .getOrCreate())


def _is_local(spark: Any) -> bool:
    """Spark executors see the driver's local disk only in local mode; otherwise go through a DFS."""
    try:
        return spark.sparkContext.master.startswith("local")
    except Exception:  # noqa: BLE001 - Spark Connect has no sparkContext: treat as remote
        return False


def _dfs_tmp() -> str:
    root = os.environ.get("DELTAFLOW_DFS_TMP", "dbfs:/tmp/deltaflow")
    return f"{root.rstrip('/')}/{uuid.uuid4().hex}"


def save_model(spark_model: Any, path: str, *, signature: Any = None, input_example: Any = None,
               pip_requirements: Any = None, extra_pip_requirements: Any = None,
               metadata: Optional[dict[str, Any]] = None, mlflow_model: Optional[Model] = None) -> Model:
    """Save a fitted pyspark.ml model to a new local directory ``path`` (Spark writes ``sparkml/``)."""
    from deltaflow.models._save import save_model_dir

    _require_pyspark("The spark model flavor")
    from pyspark.ml.util import MLWritable

    if not isinstance(spark_model, MLWritable) or not hasattr(spark_model, "transform"):
        raise InvalidArgument(f"spark_model must be a fitted pyspark.ml model (a Transformer with write()), "
                              f"got {type(spark_model).__module__}.{type(spark_model).__name__}; fit the "
                              "Pipeline/estimator first")
    import pyspark
    from pyspark.ml import PipelineModel

    if not isinstance(spark_model, PipelineModel):
        # MLflow stores every Spark model as a PipelineModel (a lone model becomes a one-stage
        # pipeline) and loads the folder with PipelineModel.load, so a bare model's folder would not
        # load there. Same layout here.
        spark_model = PipelineModel([spark_model])
    cls = type(spark_model)

    def write(dir_: str) -> None:
        target = os.path.join(dir_, _DATA)
        spark = _session()
        if _is_local(spark):
            spark_model.write().overwrite().save(target)
            return
        from deltaflow.artifacts import HadoopArtifactRepository

        tmp = _dfs_tmp()  # executors write to a DFS; then the driver copies it down
        repo = HadoopArtifactRepository(tmp, spark)
        try:
            spark_model.write().overwrite().save(tmp)
            repo.download_artifacts("", target if os.path.isdir(target) else _mkdir(target))
        finally:
            repo.delete_artifacts()

    flavor = {"pyspark_version": pyspark.__version__, "model_data": _DATA, "code": None,
              "model_class": f"{cls.__module__}.{cls.__name__}"}
    pyfunc = {"loader_module": "mlflow.spark", "data": _DATA}

    def predict(example: Any, _dir: str) -> Any:
        # One small Spark job on the example rows, as MLflow does, to describe the outputs; as an
        # array so the output is one unnamed column, as in MLflow's signature.
        import numpy as np

        return np.asarray(_SparkImpl(spark_model).predict(example))

    return save_model_dir(path, flavor=FLAVOR_NAME, flavor_conf=flavor, pyfunc_conf=pyfunc, write_data=write,
                          libraries=_LIBRARIES, signature=signature, input_example=input_example, predict=predict,
                          metadata=metadata, mlflow_model=mlflow_model, pip_requirements=pip_requirements,
                          extra_pip_requirements=extra_pip_requirements)


def _mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def log_model(spark_model: Any, artifact_path: Optional[str] = None, *, name: Optional[str] = None,
              registered_model_name: Optional[str] = None, run_id: Optional[str] = None,
              **kwargs: Any) -> ModelInfo:
    """Save the model under the active (or given) run's artifacts; returns its ModelInfo."""
    from deltaflow.models._save import log_model_dir

    return log_model_dir(save_model, name=name, artifact_path=artifact_path, run_id=run_id,
                         registered_model_name=registered_model_name, spark_model=spark_model, **kwargs)


def _model_class(name: str) -> Any:
    module, _, cls = name.rpartition(".")
    if not module.startswith("pyspark.ml"):
        raise InvalidArgument(f"model_class {name!r} is not a pyspark.ml class; refusing to import it")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgument(f"model_class {name!r} cannot be imported with this pyspark: {exc}") from exc


def _load_from_dir(model_dir: str, meta: Model) -> Any:
    _require_pyspark("Loading a spark model")
    conf = meta.flavor(FLAVOR_NAME, model_dir)
    from deltaflow.models._trust import model_file

    cls = _model_class(conf.get("model_class") or "pyspark.ml.pipeline.PipelineModel")
    local = model_file(model_dir, conf.get("model_data") or _DATA, f"{FLAVOR_NAME}.model_data")
    spark = _session()
    if _is_local(spark):
        return cls.load(local)
    from deltaflow.artifacts import HadoopArtifactRepository

    tmp = _dfs_tmp()  # executors read from a DFS: copy the driver-local folder up first
    HadoopArtifactRepository(tmp, spark).log_artifacts(local)
    return cls.load(tmp)


def load_model(model_uri: str, dst_path: Optional[str] = None) -> Any:
    """The fitted pyspark.ml model (PipelineModel or the saved class) at ``model_uri``."""
    from deltaflow.models.uri import download_model

    from deltaflow.models._trust import open_model

    local = download_model(model_uri, dst_path)
    return _load_from_dir(local, open_model(local))


def _prediction_col(model: Any) -> str:
    stages = getattr(model, "stages", None) or [model]
    for stage in reversed(stages):
        if stage.hasParam("predictionCol"):
            return stage.getOrDefault("predictionCol")
    return "prediction"


def _vector_columns(schema: Any, columns: list[Any]) -> list[Any]:
    """The columns a signature declares as Spark ML vectors (an unnamed one is the first column)."""
    if schema is None:
        return []
    return [spec.name if spec.name is not None else columns[0] for spec in schema.inputs
            if isinstance(getattr(spec, "type", None), dict) and spec.type.get("type") == "sparkml_vector"]


def _features_as_vectors(sdf: Any, model: Any) -> Any:
    """Without a vector signature (no signature, or an old one): the last stage's ``featuresCol``, when
    it is an array of doubles, becomes a vector, as MLflow does."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql.types import ArrayType, DoubleType

    stages = getattr(model, "stages", None) or [model]
    stage = stages[-1]
    if stage.hasParam("featuresCol"):
        name = stage.getOrDefault("featuresCol")
        arrays = (ArrayType(DoubleType(), True), ArrayType(DoubleType(), False))
        if name in sdf.columns and sdf.schema[name].dataType in arrays:
            return sdf.withColumn(name, array_to_vector(name))
    return sdf


class _SparkImpl:
    """Scores pandas DataFrames with the Spark model through the active SparkSession, as MLflow's
    spark flavor does: vector inputs (signature type ``sparkml_vector``) arrive as lists and become
    vectors, the predictions are the ``prediction`` column, returned as a list."""

    def __init__(self, model: Any, signature: Any = None) -> None:
        self.model = model
        self.signature = signature

    def _prediction_column(self, sdf: Any) -> str:
        from pyspark.ml import PipelineModel

        # MLflow's rule: a pipeline ending in a transformer with an outputCol writes "prediction".
        if isinstance(self.model, PipelineModel) and self.model.stages[-1].hasParam("outputCol"):
            if "prediction" not in self.model.transform(sdf.limit(0)).columns:  # analysis only
                self.model.stages[-1].setOutputCol("prediction")
        return "prediction"

    def predict(self, data: Any, params: Optional[dict[str, Any]] = None) -> Any:
        import pandas as pd
        from pyspark.ml.functions import array_to_vector, vector_to_array

        spark = _session()
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        inputs = self.signature.inputs if self.signature is not None else None
        vectors = _vector_columns(inputs, list(frame.columns))
        if vectors:
            frame = frame.copy()
            for name in vectors:  # numpy arrays and numpy floats would break Spark's type inference
                frame[name] = frame[name].map(lambda a: None if a is None else [float(x) for x in a])
        text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
        if text:  # pandas 3's Arrow-backed strings: pyspark 3.5's Arrow path takes object columns only
            frame = frame.astype({c: object for c in text})
        sdf = spark.createDataFrame(frame)
        for name in vectors:
            sdf = sdf.withColumn(name, array_to_vector(name))
        sdf = _features_as_vectors(sdf, self.model)
        column = self._prediction_column(sdf)
        out = self.model.transform(sdf).select(column)
        outputs = self.signature.outputs if self.signature is not None else None
        if _vector_columns(outputs, [column]):
            out = out.withColumn(column, vector_to_array(column))
        return [row[0] for row in out.collect()]


def _load_pyfunc_impl(model_dir: str, meta: Model, model_config: Optional[dict[str, Any]] = None) -> Any:
    return _SparkImpl(_load_from_dir(model_dir, meta), meta.signature)
