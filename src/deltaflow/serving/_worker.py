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


_ZIP_STAMPS: dict[str, tuple[int, int]] = {}


def _keep_unchanged_zip_listings() -> None:
    """Make ``zipimporter.invalidate_caches`` re-read an archive only when the file changed.

    Spark's Python worker calls ``importlib.invalidate_caches()`` at the start of every task, and on
    Python 3.10-3.12 that makes every zipimporter re-parse its archive's whole directory in pure
    Python. A pip-installed pyspark puts pyspark.zip, py4j's zip and the spark-core JAR on the
    workers' ``sys.path`` with one importer per package imported from them, so each task re-read
    those archives about a dozen times: measured here at ~0.1 s per task, 28% of a worker's time
    scoring a RandomForest over 1M rows in 8 partitions. An archive whose size and modification
    time are unchanged keeps its listing; a changed or new one is read as before.
    """
    import zipimport

    original = zipimport.zipimporter.invalidate_caches
    if getattr(original, "_deltaflow_keeps_listings", False):
        return
    listings = zipimport._zip_directory_cache  # type: ignore[attr-defined]  # the module's own cache

    def invalidate_caches(self: Any) -> None:
        try:
            info = os.stat(self.archive)
            stamp: Optional[tuple[int, int]] = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp is not None and _ZIP_STAMPS.get(self.archive) == stamp and self.archive in listings:
            self._files = listings[self.archive]
            return
        original(self)
        if stamp is not None:
            _ZIP_STAMPS[self.archive] = stamp

    invalidate_caches._deltaflow_keeps_listings = True  # type: ignore[attr-defined]
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]


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


def _numeric_columns(args: tuple, plan: UdfPlan) -> Optional[list[Any]]:
    """The batch's columns as numpy arrays when every argument is a plain numeric Series (the common
    case: feature columns), else None (structs, strings, extension types go through ``_frame``)."""
    import numpy as np
    import pandas as pd

    if plan.names is not None and len(args) < plan.required:
        return None  # _frame raises the error that names the columns
    columns = []
    for arg in args[:len(plan.names)] if plan.names is not None else args:
        if not isinstance(arg, pd.Series) or not isinstance(arg.dtype, np.dtype) or arg.dtype.kind not in "biuf":
            return None
        columns.append(arg.to_numpy())
    return columns


def _numeric_frame(parts: list[list[Any]], plan: UdfPlan) -> Any:
    """One DataFrame from the batches' column arrays, copied once. Columns of one dtype share a single
    row-major block, which scikit-learn and most numeric models take as their array without copying."""
    import numpy as np
    import pandas as pd

    width = len(parts[0])
    names = list(plan.names[:width]) if plan.names is not None else [str(i) for i in range(width)]
    columns = [[part[j] for part in parts] for j in range(width)]
    dtypes = {np.result_type(*chunks) for chunks in columns}
    if len(dtypes) == 1:
        rows = sum(len(chunk) for chunk in columns[0])
        block = np.empty((rows, width), dtype=dtypes.pop())
        for j, chunks in enumerate(columns):
            np.concatenate(chunks, out=block[:, j])
        return pd.DataFrame(block, columns=names, copy=False)
    return pd.DataFrame({name: np.concatenate(chunks) for name, chunks in zip(names, columns)}, copy=False)


def run(plan: UdfPlan, batches: Iterator[Any]) -> Iterator[Any]:
    """Score the iterator pandas UDF's batches (tuples of Series, or one DataFrame for a struct).

    Spark's Arrow batches hold 10,000 rows by default; consecutive batches are scored together up to
    ``DELTAFLOW_UDF_BATCH_ROWS`` rows (100,000) or 64 MiB, because each ``predict`` call has a fixed
    cost (input validation, thread pools in scikit-learn's ensembles) that is worth paying once for
    many rows. Spark matches the output to the input rows by position, not by batch, and a
    partition's last rows are scored when its input ends. Numeric columns are gathered as arrays and
    copied once into the frame that is scored (building a frame per batch and concatenating them
    cost ~20% of a worker's time on 10 feature columns).
    """
    import pandas as pd

    from deltaflow.serving._convert import to_result

    _keep_unchanged_zip_listings()
    predictor = _predictor(plan)
    enforce = _Enforcer(plan.schema)
    target_rows = _target_rows()
    frames: list[Any] = []  # batches that needed _frame
    arrays: list[list[Any]] = []  # batches of plain numeric columns
    rows = size = 0

    def scored() -> Any:
        if arrays:
            frame = _numeric_frame(arrays, plan)
        else:
            frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        frame = enforce(frame)
        return to_result(predictor.predict(frame, plan.params), plan.result_type, len(frame))

    for batch in batches:
        args = (batch,) if isinstance(batch, (pd.Series, pd.DataFrame)) else tuple(batch)
        if len(args[0]) == 0:
            continue
        columns = _numeric_columns(args, plan)
        if (frames if columns is not None else arrays):  # the kind changed: score what is gathered
            yield scored()
            frames, arrays, rows, size = [], [], 0, 0
        if columns is not None:
            arrays.append(columns)
            size += sum(c.nbytes for c in columns)
        else:
            frame = _frame(args, plan)
            frames.append(frame)
            size += int(frame.memory_usage(index=False).sum())
        rows += len(args[0])
        if rows >= target_rows or size >= _TARGET_BYTES:
            yield scored()
            frames, arrays, rows, size = [], [], 0, 0
    if frames or arrays:
        yield scored()
