"""Small helpers shared by the Databricks tests: quick polling and a hand-built wheel."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any


def wait_run(w: Any, run_id: int, timeout: float = 90.0) -> Any:
    """Polls runs/get every 50 ms (the SDK's own waiter sleeps a second or more between polls)."""
    deadline = time.time() + timeout
    while True:
        run = w.jobs.get_run(run_id)
        if run.state.life_cycle_state.value in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
            return run
        if time.time() > deadline:
            raise TimeoutError(f"run {run_id} still {run.state.life_cycle_state} after {timeout}s")
        time.sleep(0.05)


def make_wheel(name: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> bytes:
    """A minimal pure-Python wheel: modules, METADATA, WHEEL, entry_points.txt and RECORD."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = dict(modules)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()
