"""Building Arrow data without pyarrow's pandas probe.

``pa.array``, ``pa.scalar`` and every compute call given a Python literal first ask whether the
object is a pandas object, which imports pandas: ~0.3 s, a third of the one-second budget of a
script that logs ten metrics or of ``deltaflow runs list``. Arrays are therefore built with arro3
(a dependency of deltalake) and handed to pyarrow through the Arrow C data interface, and literals
become one-element arrays' scalars. The results are ordinary pyarrow objects.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["array", "scalar", "table", "table_from_pylist", "empty_table", "to_numpy", "from_numpy"]


def _arro3_type(type_: pa.DataType) -> Any:
    from arro3.core import DataType

    if type_ == pa.string():
        return DataType.string()
    if type_ == pa.int64():
        return DataType.int64()
    if type_ == pa.float64():
        return DataType.float64()
    if type_ == pa.bool_():
        return DataType.bool()
    raise TypeError(f"no arro3 mapping for {type_}")  # pragma: no cover - our schemas use these four


def array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """``pa.array(values, type_)`` for Python values (None is NULL)."""
    try:
        from arro3.core import Array
    except ImportError:  # pragma: no cover - deltalake brings arro3; fall back to the slow path
        return pa.array(values, type_)
    return pa.array(Array(list(values), type=_arro3_type(type_)))


def scalar(value: Any, type_: pa.DataType) -> pa.Scalar:
    return array([value], type_)[0]


def table(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([array(columns[f.name], f.type) for f in schema], schema=schema)


def table_from_pylist(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    rows = list(rows)
    return table({f.name: [r.get(f.name) for r in rows] for f in schema}, schema)


def empty_table(schema: pa.Schema) -> pa.Table:
    return table({f.name: [] for f in schema}, schema)


_NUMPY = {pa.int64(): np.int64, pa.uint64(): np.uint64, pa.int32(): np.int32, pa.uint32(): np.uint32,
          pa.float64(): np.float64, pa.uint8(): np.uint8}


def to_numpy(values: Any, dtype: Any) -> np.ndarray:
    """A null-free numeric or bool Arrow array (or chunked array) as a numpy array of ``dtype``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.type == pa.bool_():
        values = values.cast(pa.uint8())  # bool is bit-packed in Arrow
    data = np.frombuffer(values.buffers()[1], dtype=_NUMPY[values.type])
    return data[values.offset:values.offset + len(values)].astype(dtype, copy=False)


def from_numpy(values: np.ndarray, type_: pa.DataType, null_mask: Any = None) -> pa.Array:
    """A numeric numpy array as Arrow (int64/float64), with NULL where ``null_mask`` is true."""
    values = np.ascontiguousarray(values, dtype=_NUMPY[type_])
    validity = None
    nulls = 0
    if null_mask is not None and np.any(null_mask):
        bits = np.packbits(~np.asarray(null_mask, dtype=bool), bitorder="little")
        validity = pa.py_buffer(bits.tobytes())
        nulls = int(np.count_nonzero(null_mask))
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(values.tobytes())], null_count=nulls)
