"""``deltaflow models serve`` (MLflow's scoring protocol over HTTP) and ``deltaflow models export``
(a self-contained folder that predicts without Spark, the store or deltaflow).

Only click is imported here; the server stack (starlette, uvicorn) and the model code load when a
command runs. ``serve`` resolves and loads the model in the command's own process first, so a bad URI
or a model the server cannot run is one ``error:`` line before any port is opened.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Optional

import click

__all__ = ["serve", "export", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+)\s*(?:([kmg])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str) -> int:
    """Bytes in ``text``: a whole number, optionally with a K, M or G suffix (powers of 1024)."""
    from deltaflow.errors import InvalidArgument

    match = _SIZE.match(str(text))
    if match is None or int(match.group(1)) <= 0:
        raise InvalidArgument(f"body size {text!r} is not a positive number of bytes; write e.g. 1048576, "
                              "512K, 64M or 1G (powers of 1024)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None]


def _tracking_uri(ctx: click.Context) -> Optional[str]:
    obj = ctx.find_root().obj or {}
    return obj.get("tracking_uri")


@click.command("serve")
@click.option("-m", "--model-uri", required=True, metavar="URI",
              help="models:/name@alias, models:/name/<version|stage|latest>, runs:/<run_id>/<path> or a folder.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="DELTAFLOW_SERVE_HOST",
              help="Interface to listen on (0.0.0.0 for every interface).")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=5000, show_default=True,
              envvar="DELTAFLOW_SERVE_PORT", help="Port to listen on.")
@click.option("-w", "--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="DELTAFLOW_SERVE_WORKERS", help="Worker processes, each with its own copy of the model.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=10.0, show_default=True,
              envvar="DELTAFLOW_SERVE_POLL_INTERVAL", metavar="SECONDS",
              help="How often each worker checks the registry when the URI names an alias, a stage or "
                   "latest; a moved pointer is loaded beside the served model and swapped in. 0: never.")
@click.option("--max-body-size", default="64M", show_default=True, envvar="DELTAFLOW_SERVE_MAX_BODY_SIZE",
              metavar="SIZE", help="Largest request body accepted (bytes, or with a K/M/G suffix); larger "
                                   "bodies get 413.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              envvar="DELTAFLOW_SERVE_TIMEOUT", metavar="SECONDS", help="Longest a prediction may take (504 after).")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="Log one line per request (uvicorn's access log).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
@click.pass_context
def serve(ctx: click.Context, model_uri: str, host: str, port: int, workers: int, poll_interval: float,
          max_body_size: str, timeout: float, access_log: bool, log_level: str) -> None:
    """Serve a model over HTTP with MLflow's scoring protocol (/invocations, /ping, /health, /version)."""
    import os

    from deltaflow.errors import MissingDependency
    from deltaflow.serving.rest_app import SPEC_ENV, ServeSettings, app_for, configure_logging
    from deltaflow.serving.rest_models import load_served, watches_registry

    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependency.for_extra("deltaflow models serve", module, "serving") from exc
    import uvicorn

    limit = parse_size(max_body_size)
    tracking_uri = _tracking_uri(ctx)
    configure_logging(log_level)
    served = load_served(model_uri, tracking_uri)
    watching = poll_interval > 0 and watches_registry(model_uri)
    settings = ServeSettings(model_uri, tracking_uri, served.version, poll_interval if watching else 0.0,
                             limit, timeout, log_level)
    click.echo(f"deltaflow: serving {served.label} on http://{host}:{port} with {workers} worker(s)"
               + (f"; checking the registry every {poll_interval:g} s" if watching else ""), err=True)
    from deltaflow.serving import rest_app

    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": access_log,
                              "timeout_graceful_shutdown": 10, "http": rest_app.NoDelayHTTPProtocol}
    if workers == 1:
        uvicorn.run(app_for(settings, served), **common)
    else:
        # Each worker process loads the version resolved here and then polls on its own.
        os.environ[SPEC_ENV] = settings.to_json()
        del served
        uvicorn.run("deltaflow.serving.rest_app:create_app", factory=True, workers=workers, **common)
    sys.exit(0)


@click.command("export")
@click.option("-m", "--model-uri", required=True, metavar="URI",
              help="models:/name@alias, models:/name/<version|stage|latest>, runs:/<run_id>/<path> or a folder.")
@click.option("-o", "--output", "output_dir", required=True, metavar="DIR",
              help="A new (or empty) folder to write the bundle to.")
@click.pass_context
def export(ctx: click.Context, model_uri: str, output_dir: str) -> None:
    """Write a folder that predicts without Spark, the store or deltaflow: the model, predict.py,
    pinned requirements.txt."""
    from deltaflow.serving.export import export_model

    bundle = export_model(model_uri, output_dir, tracking_uri=_tracking_uri(ctx))
    version = f" (version {bundle.version})" if bundle.version is not None else ""
    kind = {"sklearn": "scikit-learn", "python_model": "custom Python"}.get(bundle.kind, bundle.kind)
    click.echo(f"exported {bundle.source}{version}, a {kind} model, to {bundle.path}")
    click.echo(f"  pip install -r {bundle.path}/requirements.txt   # {', '.join(bundle.requirements)}")
    click.echo(f"  python {bundle.path}/predict.py input.csv")
