"""``deltaflow run``: MLflow's ``mlflow run`` over deltaflow's store.

Imports only click at load time (``deltaflow --help`` stays instant); the runner loads when the
command runs. The entry point's output goes straight to this terminal; deltaflow's own lines (the run
id, the command, the outcome) go to stderr. Exit status: 0 when the run FINISHED, 1 when it ended
FAILED or KILLED, 2 for bad input (nothing run), 130 when interrupted (the entry point is stopped and
the run recorded KILLED).
"""

from __future__ import annotations

import sys
from typing import Optional

import click

__all__ = ["run"]


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="'-P'")
        if name in params:
            raise click.BadParameter(f"parameter {name!r} is given twice", param_hint="'-P'")
        params[name] = value
    return params


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: the entry point is stopped and the run recorded KILLED."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Interrupted()


@click.command("run")
@click.argument("uri")
@click.option("-e", "--entry-point", default="main", show_default=True, help="Entry point, or a .py/.sh file.")
@click.option("-v", "--version", default=None, help="Git commit, branch or tag (git projects).")
@click.option("-P", "--param-list", "param_list", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the entry point (repeatable); undeclared ones are passed as --NAME VALUE.")
@click.option("--experiment-name", default=None, help="Experiment (created if missing).")
@click.option("--experiment-id", default=None, help="Experiment id.")
@click.option("--run-name", default=None, help="Name of the run.")
@click.option("-b", "--backend", type=click.Choice(["local", "databricks"]), default="local", show_default=True)
@click.option("-c", "--backend-config", default=None, metavar="FILE|JSON",
              help="Backend configuration: a JSON file or a JSON object (databricks: the cluster spec).")
@click.option("--env-manager", type=click.Choice(["local", "virtualenv", "conda"]), default=None,
              help="Environment to run in [default: the project's python_env -> virtualenv, conda_env -> conda, "
                   "none -> local].")
@click.option("--run-id", default=None, help="Log into this existing run instead of creating one.")
@click.pass_context
def run(ctx: click.Context, uri: str, entry_point: str, version: Optional[str], param_list: tuple[str, ...],
        experiment_name: Optional[str], experiment_id: Optional[str], run_name: Optional[str], backend: str,
        backend_config: Optional[str], env_manager: Optional[str], run_id: Optional[str]) -> None:
    """Run an MLflow project (a folder or a git repository URI[#subdirectory]) and track it."""
    import logging
    import signal

    from deltaflow.projects.runner import run as run_project
    from deltaflow.projects.submitted import RunFailed

    parameters = _parse_params(param_list)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("deltaflow.projects")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    root = ctx.find_root().obj or {}
    try:
        submitted = run_project(uri, entry_point=entry_point, parameters=parameters, version=version,
                                experiment_name=experiment_name, experiment_id=experiment_id, run_name=run_name,
                                backend=backend, backend_config=backend_config, env_manager=env_manager,
                                # as `mlflow run`: local runs are waited for, Databricks runs are submitted
                                synchronous=backend == "local", run_id=run_id,
                                tracking_uri=root.get("tracking_uri"))
    except RunFailed as exc:
        click.echo(f"error: {exc.message}", err=True)
        ctx.exit(1)
    except KeyboardInterrupt:
        click.echo("error: interrupted (an entry point already started was stopped and its run recorded KILLED)",
                   err=True)
        ctx.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)
    if backend != "local":
        click.echo(f"deltaflow: run {submitted.run_id} submitted ({submitted.get_status()})", err=True)
