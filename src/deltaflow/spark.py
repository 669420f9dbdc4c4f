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
        from deltaflow._spark import get_spark

        spark = get_spark()
    return spark


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
        return _SparkImpl(spark_model).predict(example).to_numpy()

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


class _SparkImpl:
    """Scores pandas DataFrames with the Spark model through the active SparkSession."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, data: Any, params: Optional[dict[str, Any]] = None) -> Any:
        import pandas as pd

        spark = _session()
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        col = _prediction_col(self.model)
        rows = self.model.transform(spark.createDataFrame(frame)).select(col).collect()
        return pd.Series([r[0] for r in rows], name=col, index=frame.index)


def _load_pyfunc_impl(model_dir: str, meta: Model, model_config: Optional[dict[str, Any]] = None) -> Any:
    return _SparkImpl(_load_from_dir(model_dir, meta))
