"""Runs one LocalDatabricks task inside its subprocess and records the outcome for ``runs/get-output``.

Started as ``python _dbx_task_runner.py task.json`` (by path, standard library only, so the "cluster"
needs nothing of deltaflow's emulator). The task is a Python file (``spark_python_task``), a wheel's
entry point (``python_wheel_task``) or a source-format notebook (``notebook_task``). Notebooks get a
``dbutils`` with ``widgets`` (parameters) and ``notebook.exit``; everything else runs as the same code
would under plain ``python``. The result file holds ``status``, ``error`` (the exception's one-line
form), ``error_trace`` and a notebook's exit value.
"""

from __future__ import annotations

import builtins
import json
import os
import runpy
import sys
import traceback
from typing import Any, Optional

__all__ = ["main"]


class _NotebookExit(BaseException):
    """``dbutils.notebook.exit(value)``: ends the notebook successfully with a result."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class _Widgets:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)
        self._defaults: dict[str, str] = {}

    def text(self, name: str, defaultValue: str = "", label: Optional[str] = None) -> None:  # noqa: N803
        self._defaults[name] = str(defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: Any = (), label: Optional[str] = None) -> None:  # noqa: N803
        self._defaults[name] = str(defaultValue)

    combobox = dropdown
    multiselect = dropdown

    def get(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        if name in self._defaults:
            return self._defaults[name]
        raise ValueError(f"InputWidgetNotDefined: No input widget named {name} is defined")

    def getArgument(self, name: str, defaultValue: Optional[str] = None) -> Optional[str]:  # noqa: N802,N803
        try:
            return self.get(name)
        except ValueError:
            return defaultValue

    def getAll(self) -> dict[str, str]:  # noqa: N802
        return {**self._defaults, **self._values}

    def removeAll(self) -> None:  # noqa: N802
        self._defaults.clear()


class _Notebook:
    @staticmethod
    def exit(value: Any) -> None:
        raise _NotebookExit(str(value))


class _DbUtils:
    """The part of ``dbutils`` a notebook job task uses: widgets and notebook.exit."""

    def __init__(self, widgets: dict[str, str]) -> None:
        self.widgets = _Widgets(widgets)
        self.notebook = _Notebook()


def _run_wheel(spec: dict[str, Any]) -> None:
    from importlib import import_module, metadata

    package, name = spec["package"], spec["entry_point"]
    sys.argv = [package, *spec["argv"]]
    try:
        points = [ep for ep in metadata.distribution(package).entry_points if ep.name == name]
    except metadata.PackageNotFoundError:
        points = []
    if points:
        points[0].load()()
        return
    # Databricks falls back to calling <package_name>.<entry_point>() when the metadata has no such entry.
    try:
        module = import_module(package.replace("-", "_"))
    except ImportError:
        raise ModuleNotFoundError(f"No entry point {name!r} in package {package!r}, and no module "
                                  f"{package.replace('-', '_')!r} to call it on.") from None
    getattr(module, name)()


def _run(spec: dict[str, Any]) -> Optional[str]:
    kind = spec["kind"]
    if kind == "python_file":
        sys.argv = [spec["path"], *spec["argv"]]
        sys.path.insert(0, os.path.dirname(spec["path"]))
        runpy.run_path(spec["path"], run_name="__main__")
    elif kind == "wheel":
        _run_wheel(spec)
    else:
        sys.argv = [spec["notebook_path"]]
        builtins.dbutils = _DbUtils(spec.get("widgets", {}))  # type: ignore[attr-defined]
        try:
            runpy.run_path(spec["path"], run_name="__main__")
        except _NotebookExit as done:
            return done.value
    return None


def main(spec_path: str) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # the runner's folder is no task's
    with open(spec_path) as fh:
        spec = json.load(fh)
    if spec.get("site"):
        sys.path.insert(0, spec["site"])
    outcome: dict[str, Any] = {"status": "ok"}
    try:
        outcome["notebook_result"] = _run(spec)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            outcome = {"status": "error", "error": f"SystemExit: {exc.code}",
                       "error_trace": traceback.format_exc()}
    except BaseException as exc:  # noqa: BLE001 - the task's own failure is what the run reports
        traceback.print_exc()
        outcome = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "error_trace": traceback.format_exc()}
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = spec["result"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(outcome, fh)
    os.replace(tmp, spec["result"])
    return 0 if outcome["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
