"""The executors' half of spark_udf: runs inside Spark's Python workers.

Each worker keeps the models it has loaded in a process-wide cache keyed by the payload's content
hash, so a model is extracted once per machine and loaded once per Python worker (Spark reuses its
Python workers across tasks and jobs), never once per batch. Each batch of rows arrives as pandas
(Arrow underneath), is checked against the signature, scored, and converted to the result type.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["UdfPlan", "run", "scratch_root", "loaded_keys"]

_LOADED: dict[tuple[str, Optional[str]], Any] = {}
_TARGET_BYTES = 64 * 2**20
_KEEP = 4  # models kept loaded per Python worker
_LOCK = threading.Lock()


@dataclass(frozen=True)
class UdfPlan:
    """Everything a worker needs, pickled into the UDF: small, except ``source`` on Spark Connect."""

    key: str  # content hash of the model folder
    source: Any  # a Broadcast of the payload (classic Spark) or the payload bytes (Spark Connect)
    names: Optional[tuple[str, ...]]  # the model's names for positional arguments
    required: int  # how many positional arguments the signature requires
    schema: Any  # the signature's inputs (deltaflow.models.schema.Schema) or None
    params: Optional[dict[str, Any]]
    result_type: Any
    env: Any = None  # an _env.EnvSpec for env_manager="virtualenv"


def scratch_root() -> str:
    root = os.environ.get("DELTAFLOW_SCORING_DIR") or os.path.join(tempfile.gettempdir(),
                                                                    f"deltaflow-scoring-{os.getuid()}")
    os.makedirs(root, exist_ok=True)
    return root


def loaded_keys() -> list[tuple[str, Optional[str]]]:
    """The (model key, environment key) pairs this process has loaded (for diagnostics)."""
    return list(_LOADED)


def _model_dir(key: str, source: Any) -> str:
    """The model folder on this machine, extracted from the payload the first time."""
    root = os.path.join(scratch_root(), "models")
    final = os.path.join(root, key)
    model = os.path.join(final, "model")
    if os.path.isfile(os.path.join(model, "MLmodel")):
        return model
    os.makedirs(root, exist_ok=True)
    data = source.value if hasattr(source, "value") else source
    staging = tempfile.mkdtemp(prefix=f".{key}-", dir=root)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, no links leading out
        os.rename(staging, final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isfile(os.path.join(model, "MLmodel")):  # not another worker's finished copy
            raise
    return model


class _LocalPredictor:
    """The model loaded in this Python worker (env_manager="local")."""

    def __init__(self, model_dir: str) -> None:
        from deltaflow.pyfunc import load_model

        # The signature is enforced once per batch by the caller; the raw implementation predicts.
        self._impl = load_model(model_dir)._impl

    def predict(self, frame: Any, params: Optional[dict[str, Any]]) -> Any:
        return self._impl.predict(frame, params)


def _predictor(plan: UdfPlan) -> Any:
    """The loaded model for ``plan``: from this worker's cache, else loaded now (the least recently
    used one is dropped beyond ``_KEEP`` models, so a long-lived worker does not hoard them)."""
    cache_key = (plan.key, plan.env.key if plan.env is not None else None)
    with _LOCK:
        found = _LOADED.pop(cache_key, None)
        if found is None:
            model_dir = _model_dir(plan.key, plan.source)
            if plan.env is None:
                found = _LocalPredictor(model_dir)
            else:
                from deltaflow.serving._env import EnvPredictor, ensure_env

                found = EnvPredictor(ensure_env(plan.env), model_dir, scratch_root())
        _LOADED[cache_key] = found  # re-inserted: the newest entry
        while len(_LOADED) > _KEEP:
            oldest = next(iter(_LOADED))
            getattr(_LOADED.pop(oldest), "close", lambda: None)()  # a virtualenv child exits
    return found


class _Enforcer:
    """The signature's column rules on every batch. A batch whose column names and dtypes match one
    that enforcement only selected columns from (no conversion) is just selected the same way: the
    answer depends on the dtypes alone, except for object columns, which are always checked."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._clean: dict[tuple, list[Any]] = {}

    def __call__(self, frame: Any) -> Any:
        if self.schema is None or not self.schema.inputs:
            return frame
        from deltaflow.models.enforce import enforce_schema

        if self.schema.is_tensor_spec:  # tensors: enforce_schema returns arrays, checked every time
            return enforce_schema(frame, self.schema)
        shape = (tuple(frame.columns), tuple(str(t) for t in frame.dtypes))
        kept = self._clean.get(shape)
        if kept is not None:
            return frame if kept == list(frame.columns) else frame[kept]
        out = enforce_schema(frame, self.schema)
        if "object" not in shape[1] and all(c in frame.columns and frame[c].dtype == out[c].dtype
                                            for c in out.columns):
            self._clean[shape] = list(out.columns)
        return out


def _frame(args: tuple, plan: UdfPlan) -> Any:
    import pandas as pd

    if len(args) == 1 and isinstance(args[0], pd.DataFrame):
        return args[0]  # one struct argument: its field names are the column names
    if plan.names is not None:
        if len(args) < plan.required:
            raise InvalidArgument(f"the model expects {plan.required} input columns {list(plan.names)}, and the "
                                  f"UDF received {len(args)} (unnamed columns are matched by position)")
        args = args[:len(plan.names)]
        names = plan.names
    else:
        names = tuple(str(i) for i in range(len(args)))
    # A struct among several arguments travels as one dict per row, as MLflow passes it.
    return pd.DataFrame({names[i]: a if isinstance(a, pd.Series) else pd.Series(a.to_dict("records"))
                         for i, a in enumerate(args)}, columns=list(names[:len(args)]))


def _target_rows() -> int:
    try:
        return max(1, int(os.environ.get("DELTAFLOW_UDF_BATCH_ROWS", "100000")))
    except ValueError:
        raise InvalidArgument(f"DELTAFLOW_UDF_BATCH_ROWS must be a whole number of rows, got "
                              f"{os.environ['DELTAFLOW_UDF_BATCH_ROWS']!r}") from None


def run(plan: UdfPlan, batches: Iterator[Any]) -> Iterator[Any]:
    """Score the iterator pandas UDF's batches (tuples of Series, or one DataFrame for a struct).

    Spark's Arrow batches hold 10,000 rows by default; consecutive batches are scored together up to
    ``DELTAFLOW_UDF_BATCH_ROWS`` rows (100,000) or 64 MiB, because each ``predict`` call has a fixed
    cost (input validation, thread pools in scikit-learn's ensembles) that is worth paying once for
    many rows. Spark matches the output to the input rows by position, not by batch, and a
    partition's last rows are scored when its input ends.
    """
    import pandas as pd

    from deltaflow.serving._convert import to_result

    predictor = _predictor(plan)
    enforce = _Enforcer(plan.schema)
    target_rows, pending, rows, size = _target_rows(), [], 0, 0

    def scored() -> Any:
        frame = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
        frame = enforce(frame)
        return to_result(predictor.predict(frame, plan.params), plan.result_type, len(frame))

    for batch in batches:
        args = (batch,) if isinstance(batch, (pd.Series, pd.DataFrame)) else tuple(batch)
        if len(args[0]) == 0:
            continue
        frame = _frame(args, plan)
        pending.append(frame)
        rows += len(frame)
        size += int(frame.memory_usage(index=False).sum())
        if rows >= target_rows or size >= _TARGET_BYTES:
            yield scored()
            pending, rows, size = [], 0, 0
    if pending:
        yield scored()
