"""The scoring child of ``env_manager="virtualenv"``: runs inside the model's own environment, loads the
model once, then answers batches until its stdin closes.

Wire format, both directions: one kind byte, an 8-byte little-endian length, the body. Requests
(no kind byte) carry a 4-byte JSON header length, the JSON header (``params``) and an Arrow IPC
stream of the input rows. Replies: ``R`` ready (JSON: pid, sys.prefix), ``K`` an Arrow IPC stream of
the predictions, ``E`` an error text. The protocol uses a private copy of stdout; anything the
model prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import traceback
from typing import Any, BinaryIO

__all__ = ["main"]


def _send(out: BinaryIO, kind: bytes, body: bytes) -> None:
    out.write(kind + struct.pack("<Q", len(body)) + body)
    out.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _as_table(result: Any) -> Any:
    import pyarrow as pa

    from deltaflow.serving._convert import _frame

    frame = _frame(result)
    frame.columns = [str(c) for c in frame.columns]
    return pa.Table.from_pandas(frame, preserve_index=False)


def main(model_dir: str) -> int:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the model's own prints must not corrupt the protocol
    inp = sys.stdin.buffer
    try:
        import pyarrow as pa

        from deltaflow.pyfunc import load_model

        impl = load_model(model_dir)._impl  # the signature is enforced by the caller, before sending
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        _send(out, b"E", traceback.format_exc().encode())
        return 1
    _send(out, b"R", json.dumps({"pid": os.getpid(), "prefix": sys.prefix}).encode())
    while True:
        try:
            (size,) = struct.unpack("<Q", _read_exact(inp, 8))
            body = _read_exact(inp, size)
        except EOFError:
            return 0
        try:
            (header_len,) = struct.unpack("<I", body[:4])
            params = json.loads(body[4:4 + header_len]).get("params")
            frame = pa.ipc.open_stream(body[4 + header_len:]).read_pandas()
            table = _as_table(impl.predict(frame, params))
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            _send(out, b"K", sink.getvalue().to_pybytes())
        except Exception:  # noqa: BLE001 - the parent raises it with this text
            _send(out, b"E", traceback.format_exc(limit=8).encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
