"""MLflow Projects on deltaflow: run a project's entry point and track it in a Delta-backed run.

``deltaflow.projects.run(uri, entry_point="main", parameters=...)`` (and ``deltaflow run``) fetches a
project (a local folder or a git repository), validates its MLproject and the parameters against their
declared types, creates the tracking run, prepares the environment and launches the entry point on a
backend (``local``, or ``databricks``). It returns a :class:`SubmittedRun`.

Importing this package is cheap: the store, git and environment code load when a run starts.
"""

from __future__ import annotations

from deltaflow.projects.runner import run
from deltaflow.projects.spec import load_project
from deltaflow.projects.submitted import LocalSubmittedRun, RunFailed, SubmittedRun

__all__ = ["run", "load_project", "SubmittedRun", "LocalSubmittedRun", "RunFailed"]
