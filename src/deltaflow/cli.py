"""The ``deltaflow`` command line: check the set-up, browse experiments and runs, maintain the store.

Everything heavy (pyspark, pyarrow, the store) is imported inside the commands, so ``deltaflow
--help`` stays instant. A :class:`~deltaflow.errors.DeltaflowError` becomes ``error: <message>`` on
stderr and exit status 2, and so does an ``OSError`` (a storage or file error), in plain text: a user
error never prints a traceback. Commands that only read refuse a location that holds no store
rather than create one; only writes (``experiments create``) create a store. ``doctor`` exits 1
when it finds problems.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional, Sequence

import click

from deltaflow._cli_lazy import LazyGroup
from deltaflow.errors import DeltaflowError, InvalidArgument

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.entities import Run
    from deltaflow.store.tracking_store import TrackingStore

__all__ = ["cli", "main", "format_table", "parse_older_than"]

VIEWS = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}
_VIEW_OPTION = click.option("--view", type=click.Choice(list(VIEWS)), default="active", show_default=True,
                            help="Which lifecycle stages to list.")
_OUTPUT_OPTION = click.option("--output", "output", type=click.Choice(["table", "json"]), default="table",
                              show_default=True, help="Aligned text table or JSON.")


# -- helpers ---------------------------------------------------------------------------------
def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """An aligned plain-text table (header, rule, rows); None prints as empty."""
    cells = [[("" if r.get(c) is None else str(r.get(c))).replace("\n", " ") for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _ms_to_iso(ms: Optional[int]) -> Optional[str]:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def parse_older_than(text: str, now_ms: Optional[int] = None) -> int:
    """``30d``/``12h``/``45m``/``90s`` before now, or an ISO date/time (UTC when naive), as epoch ms."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", text)
    if match:
        seconds = float(match.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[match.group(2)]
        return now_ms - int(seconds * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(f"--older-than {text!r} is not valid; use e.g. 30d, 12h, 45m or 2026-01-01") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _split_ids(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise InvalidArgument(f"id list {text!r} is empty; give comma-separated ids")
    return ids


def _store(ctx: click.Context, *, must_exist: bool = True) -> "TrackingStore":
    """The store of ``--tracking-uri``; unless ``must_exist`` is False (commands that create a
    store), a location that holds no store is an error rather than an empty new store."""
    from deltaflow.config import resolve_location
    from deltaflow.errors import NotFound
    from deltaflow.store.factory import get_store, store_exists

    uri = ctx.obj.get("tracking_uri")
    if must_exist:
        location = resolve_location(uri)
        if not store_exists(location):
            raise NotFound(f"no deltaflow store at {location.uri!r}: it holds no deltaflow tables (check the "
                           "path or --tracking-uri / DELTAFLOW_TRACKING_URI). A store is created by its first "
                           "write: `deltaflow experiments create NAME`, or a script that logs a run to it")
    return get_store(uri)


def _check_experiments_exist(store: "TrackingStore", experiment_ids: Sequence[str]) -> None:
    """Every id names an experiment of the store (NotFound naming the first one that does not)."""
    for experiment_id in experiment_ids:
        store.get_experiment(experiment_id)


def _check_runs_exist(store: "TrackingStore", run_ids: Sequence[str]) -> None:
    from deltaflow.errors import NotFound

    known = {row["run_id"] for row in store._run_state_rows(list(run_ids))}
    unknown = [run_id for run_id in run_ids if run_id not in known]
    if len(unknown) == 1:
        raise NotFound(f"run {unknown[0]!r} does not exist in store {store.location.uri!r}")
    if unknown:
        raise NotFound(f"runs {', '.join(map(repr, unknown))} do not exist in store {store.location.uri!r}")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _run_dict(run: "Run") -> dict[str, Any]:
    return {"info": dataclasses.asdict(run.info), "data": dataclasses.asdict(run.data),
            "inputs": [dataclasses.asdict(i) for i in run.inputs.dataset_inputs]}


class _Group(LazyGroup):
    """Turns deltaflow's own errors, and storage and file errors (``OSError``, delta-rs's errors),
    into one plain ``error:`` line and exit status 2, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeltaflowError as exc:
            click.echo(f"error: {_ANSI.sub('', exc.message)}", err=True)
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - storage errors only; anything else is re-raised
            if not isinstance(exc, OSError) and not any(c.__name__ == "DeltaError" for c in type(exc).__mro__):
                raise
            from deltaflow.store.factory import plain_text

            click.echo(f"error: {type(exc).__name__}: {plain_text(exc)}", err=True)
            ctx.exit(2)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# Commands of other packages, imported when they run.
_LAZY_COMMANDS = {
    "run": "deltaflow.projects.cli:run",
    "jobs": "deltaflow.projects.cli_jobs:jobs",
}


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             lazy_commands=_LAZY_COMMANDS)
@click.option("--tracking-uri", envvar="DELTAFLOW_TRACKING_URI", default=None, metavar="URI",
              help="Store location: a folder, dbfs:/..., s3a://... or metastore:<schema> "
                   "[env DELTAFLOW_TRACKING_URI; default ./deltaflow-store].")
@click.version_option(package_name="deltaflow", prog_name="deltaflow")
@click.pass_context
def cli(ctx: click.Context, tracking_uri: Optional[str]) -> None:
    """deltaflow: MLflow-compatible tracking stored in Delta tables."""
    # delta-rs logs its storage retries as WARN lines on stderr; the command reports the error itself.
    os.environ.setdefault("RUST_LOG", "error")
    ctx.ensure_object(dict)
    ctx.obj["tracking_uri"] = tracking_uri


# -- doctor ----------------------------------------------------------------------------------
def _java() -> tuple[Optional[str], Optional[str]]:
    """(java binary, version) honouring JAVA_HOME as Spark's launcher does; (None, None) when missing."""
    import shutil
    import subprocess

    home = os.environ.get("JAVA_HOME")
    binary = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not binary or not os.path.isfile(binary):
        return None, None
    try:
        proc = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None, None
    match = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
    return binary, match.group(1) if match else (proc.stderr.strip().splitlines() or ["unknown"])[0]


def _dist_version(name: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _maven_reachable() -> bool:
    import urllib.request

    from deltaflow._spark import MAVEN_CENTRAL

    if os.environ.get("DELTAFLOW_OFFLINE"):
        return False
    try:
        urllib.request.urlopen(urllib.request.Request(MAVEN_CENTRAL + "/", method="HEAD"), timeout=5)
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot download now"
        return False


def _rust_check() -> str:
    import shutil
    import tempfile

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    started = time.monotonic()
    folder = tempfile.mkdtemp(prefix="deltaflow-doctor-")
    try:
        write_deltalake(os.path.join(folder, "t"), pa.table({"id": [0, 1, 2]}))
        count = DeltaTable(os.path.join(folder, "t")).to_pyarrow_table().num_rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if count != 3:
        raise RuntimeError(f"wrote 3 rows but read back {count}")
    return f"ok (delta-rs: wrote and read a Delta table in {(time.monotonic() - started) * 1000:.0f} ms)"


def _delta_check() -> str:
    import shutil
    import tempfile

    from deltaflow._spark import get_spark, require_delta

    started = time.monotonic()
    spark = require_delta(get_spark(), "the spark check")
    folder = tempfile.mkdtemp(prefix="deltaflow-doctor-")
    try:
        path = os.path.join(folder, "t")
        spark.range(3).write.format("delta").save(path)
        count = spark.read.format("delta").load(path).count()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if count != 3:
        raise RuntimeError(f"wrote 3 rows but read back {count}")
    return f"ok (Spark {spark.version}: wrote and read a Delta table in {time.monotonic() - started:.1f} s)"


def _check_running_session(show: Any, problems: list[str]) -> None:
    """The SparkSession already running in this process (doctor called from a notebook or a script),
    which deltaflow uses instead of building its own: Delta must be configured in it."""
    from deltaflow._spark import delta_configured, is_connect, no_delta_message
    from deltaflow.store.factory import running_spark_session

    session = running_spark_session()
    if session is None:
        show("spark session", "none running (deltaflow builds a local one with Delta when needed)")
    elif is_connect(session):
        show("spark session", "Spark Connect (path stores use the rust engine)")
    elif delta_configured(session):
        show("spark session", f"running, Spark {session.version}, Delta configured")
    else:
        show("spark session", f"running, Spark {session.version}, NO Delta configured")
        problems.append(no_delta_message("deltaflow's spark engine (output_format='spark', deltaflow.sql, "
                                         "metastore and Hadoop-only stores)"))


@cli.command()
@click.option("--fetch-jars", is_flag=True, help="Download the Delta JARs from Maven Central first.")
@click.option("--no-spark-check", is_flag=True, help="Skip starting Spark and writing a test Delta table.")
@click.pass_context
def doctor(ctx: click.Context, fetch_jars: bool, no_spark_check: bool) -> None:
    """Check Python, Java, Spark, Delta and the store location; exit 1 on problems."""
    from deltaflow._spark import delta_jars, fetch_delta_jars, jars_dir
    from deltaflow.config import resolve_location

    problems: list[str] = []

    def show(label: str, value: str) -> None:
        click.echo(f"{label + ':':<15}{value}")

    show("python", f"{sys.version.split()[0]} ({sys.executable})")
    java, java_version = _java()
    if java is None:
        show("java", "not found" + (f" (JAVA_HOME={os.environ['JAVA_HOME']})" if os.environ.get("JAVA_HOME") else ""))
    else:
        show("java", f"{java_version} ({java})")
    try:
        location = resolve_location(ctx.obj.get("tracking_uri"))
    except DeltaflowError as exc:
        location = None
        problems.append(f"tracking URI is not valid: {exc.message}")
    deltalake_version = _dist_version("deltalake")
    show("deltalake", deltalake_version or "not installed")
    if deltalake_version is None:
        problems.append("deltalake (the rust engine) is not installed: pip install --force-reinstall deltaflow")
    versions = {name: _dist_version(name) for name in ("pyspark", "delta-spark")}
    spark_installed = None not in versions.values()
    for name, version in versions.items():
        show(name, version or "not installed (the spark engine: pip install 'deltaflow[spark]')")
    # Spark is optional: only a store that only Spark can serve makes its absence a problem.
    needs_spark = False
    if location is not None:
        from deltaflow.store.factory import choose_engine
        from deltaflow.store.rust_engine import supports

        needs_spark = not supports(location)
        try:
            show("engine", f"{choose_engine(location)} (DELTAFLOW_ENGINE={os.environ.get('DELTAFLOW_ENGINE') or 'auto'})")
        except DeltaflowError as exc:
            problems.append(exc.message)
    if needs_spark and not spark_installed:
        problems.append(f"store {location.uri} needs the spark engine: pip install 'deltaflow[spark]'")
    if spark_installed:
        _check_running_session(show, problems)
        if java is None:
            problems.append("Java 17 not found: install it or set JAVA_HOME (needed by the spark engine)")
        if fetch_jars:
            try:
                fetch_delta_jars(quiet=False)
            except DeltaflowError as exc:
                problems.append(f"could not fetch the Delta JARs: {exc.message}")
        missing = [p for p in delta_jars() if not p.exists()]
        if not missing:
            show("delta jars", f"cached in {jars_dir()}")
        elif _maven_reachable():
            show("delta jars", f"not cached in {jars_dir()} (downloaded on first use)")
        else:
            show("delta jars", f"not cached in {jars_dir()}")
            problems.append(f"Delta JARs not cached in {jars_dir()} and Maven Central is unreachable: "
                            "run `deltaflow doctor --fetch-jars` once while online")
    if location is not None:
        show("tracking uri", location.uri)
        show("store kind", location.kind)
        show("tables", location.table_path("<table>") if location.kind == "path" else location.table_name("<table>"))
        show("artifact root", location.artifact_root)
    if deltalake_version is not None:
        try:
            show("rust check", _rust_check())
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            show("rust check", "FAILED")
            problems.append(f"delta-rs could not write and read a Delta table: {str(exc)[:300]}")
    if no_spark_check or not spark_installed:
        show("spark check", "skipped" + (" (--no-spark-check)" if no_spark_check else " (no pyspark)"))
    elif problems:
        show("spark check", "skipped (fix the problems above first)")
    else:
        try:
            show("spark check", _delta_check())
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            show("spark check", "FAILED")
            problems.append(f"Spark could not write and read a Delta table: {first[:300]}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        ctx.exit(1)
    click.echo("all checks passed")


# -- experiments -----------------------------------------------------------------------------
@cli.group(cls=_Group)
def experiments() -> None:
    """List, create, delete and restore experiments."""


@experiments.command("list")
@_VIEW_OPTION
@click.option("--max-results", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option("--filter", "filter_string", default=None, help="e.g. \"name LIKE 'prod-%'\".")
@_OUTPUT_OPTION
@click.pass_context
def experiments_list(ctx: click.Context, view: str, max_results: Optional[int], filter_string: Optional[str],
                     output: str) -> None:
    """List experiments."""
    from deltaflow.tracking._search import parse_experiment_filter

    parse_experiment_filter(filter_string)  # fail fast, before Spark starts
    store = _store(ctx)
    found: list[Any] = []
    token = None
    while max_results is None or len(found) < max_results:
        page, token = store.search_experiments(VIEWS[view], min((max_results or 50_000) - len(found), 50_000),
                                               filter_string, None, token)
        found.extend(page)
        if not token:
            break
    if output == "json":
        _echo_json([dataclasses.asdict(e) for e in found])
        return
    rows = [{"experiment_id": e.experiment_id, "name": e.name, "lifecycle_stage": e.lifecycle_stage,
             "created": _ms_to_iso(e.creation_time), "artifact_location": e.artifact_location} for e in found]
    click.echo(format_table(rows, ["experiment_id", "name", "lifecycle_stage", "created", "artifact_location"]))


@experiments.command("create")
@click.argument("name")
@click.option("--artifact-location", default=None, help="Where the experiment's artifacts go.")
@click.pass_context
def experiments_create(ctx: click.Context, name: str, artifact_location: Optional[str]) -> None:
    """Create an experiment and print its id."""
    experiment_id = _store(ctx, must_exist=False).create_experiment(name, artifact_location)
    click.echo(f"Created experiment {name!r} with id {experiment_id}")


def _lifecycle_command(group: click.Group, kind: str, verb: str, doc: str) -> None:
    """Register ``<group> delete|restore ID`` for experiments or runs."""

    @group.command(verb, help=doc)
    @click.argument(f"{kind}_id", metavar=f"{kind.upper()}_ID")
    @click.pass_context
    def command(ctx: click.Context, **kwargs: str) -> None:
        store, object_id = _store(ctx), kwargs[f"{kind}_id"]
        stage = "deleted" if verb == "delete" else "active"
        if kind == "experiment":
            (store.delete_experiment if verb == "delete" else store.restore_experiment)(object_id)
        else:
            store.set_run_lifecycle(object_id, stage)
        store.flush()
        click.echo(f"{verb.capitalize()}d {kind} {object_id}")


_lifecycle_command(experiments, "experiment", "delete", "Mark an experiment and its runs deleted (gc purges them).")
_lifecycle_command(experiments, "experiment", "restore", "Restore a deleted experiment and its runs.")


# -- runs ------------------------------------------------------------------------------------
@cli.group(cls=_Group)
def runs() -> None:
    """Search, describe, delete and restore runs."""


@runs.command("list")
@click.option("--experiment-id", "experiment_ids", multiple=True, help="Experiment id (repeatable).")
@click.option("--experiment-name", "experiment_names", multiple=True, help="Experiment name (repeatable).")
@click.option("--filter", "filter_string", default="", help="e.g. \"metrics.loss < 0.2 AND params.lr = '0.1'\".")
@click.option("--order-by", multiple=True, help="e.g. 'metrics.loss ASC' (repeatable).")
@click.option("--max-results", type=click.IntRange(1, 50_000), default=1000, show_default=True)
@_VIEW_OPTION
@_OUTPUT_OPTION
@click.pass_context
def runs_list(ctx: click.Context, experiment_ids: tuple[str, ...], experiment_names: tuple[str, ...],
              filter_string: str, order_by: tuple[str, ...], max_results: int, view: str, output: str) -> None:
    """Search the runs of one or more experiments."""
    from deltaflow.errors import NotFound
    from deltaflow.tracking._search import parse_run_filter, parse_run_order_by

    if not experiment_ids and not experiment_names:
        raise click.UsageError("give --experiment-id or --experiment-name")
    parse_run_filter(filter_string)  # fail fast, before Spark starts
    parse_run_order_by(list(order_by) or None)
    store = _store(ctx)
    ids = list(experiment_ids)
    _check_experiments_exist(store, ids)
    for name in experiment_names:
        experiment = store.get_experiment_by_name(name)
        if experiment is None:
            raise NotFound(f"experiment named {name!r} does not exist in store {store.location.uri!r}")
        ids.append(experiment.experiment_id)
    found, _ = store.search_runs(ids, filter_string, VIEWS[view], max_results, list(order_by) or None)
    if output == "json":
        _echo_json([_run_dict(r) for r in found])
        return
    rows = [{"run_id": r.info.run_id, "run_name": r.info.run_name, "experiment_id": r.info.experiment_id,
             "status": r.info.status, "start_time": _ms_to_iso(r.info.start_time),
             "metrics": ", ".join(f"{k}={v:.6g}" for k, v in sorted(r.data.metrics.items()))[:60]}
            for r in found]
    click.echo(format_table(rows, ["run_id", "run_name", "experiment_id", "status", "start_time", "metrics"]))


@runs.command("describe")
@click.argument("run_id")
@click.option("--output", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
@click.pass_context
def runs_describe(ctx: click.Context, run_id: str, output: str) -> None:
    """Show a run: info, params, latest metrics, tags and inputs."""
    data = _run_dict(_store(ctx).get_run(run_id))
    if output == "json":
        _echo_json(data)
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


_lifecycle_command(runs, "run", "delete", "Mark a run deleted (gc purges it).")
_lifecycle_command(runs, "run", "restore", "Restore a deleted run.")


# -- maintenance -----------------------------------------------------------------------------
@cli.command()
@click.option("--older-than", default=None, metavar="AGE|DATE",
              help="Only what was deleted before: 30d, 12h, 45m, or an ISO date (UTC) like 2026-01-01.")
@click.option("--run-ids", default=None, metavar="A,B", help="Purge exactly these deleted runs.")
@click.option("--experiment-ids", default=None, metavar="A,B", help="Purge these deleted experiments.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option("--mark-dead", is_flag=True, help="First end RUNNING runs whose writer stopped heartbeating.")
@click.option("--model-grace", default="24h", metavar="AGE", show_default=True,
              help="Remove registry model copies no registry event references, and staging folders crashed "
                   "model writes left, once older than this (30d, 12h, 45m, 90s).")
@click.pass_context
def gc(ctx: click.Context, older_than: Optional[str], run_ids: Optional[str], experiment_ids: Optional[str],
       dry_run: bool, mark_dead: bool, model_grace: str) -> None:
    """Permanently remove deleted runs and experiments, with their artifacts, and what interrupted
    model writes and registrations left behind."""
    from deltaflow.registry.copies import gc_model_files
    from deltaflow.store import maintenance

    now_ms = int(time.time() * 1000)
    if not re.fullmatch(r"\s*\d+(?:\.\d+)?\s*[dhms]\s*", model_grace):
        raise InvalidArgument(f"--model-grace {model_grace!r} is not valid; use an age such as 24h, 30m or 0s")
    grace_s = (now_ms - parse_older_than(model_grace, now_ms)) / 1000
    cutoff = parse_older_than(older_than) if older_than else None
    run_list, exp_list = _split_ids(run_ids), _split_ids(experiment_ids)
    store = _store(ctx)
    if run_list:
        _check_runs_exist(store, run_list)
    if exp_list:
        _check_experiments_exist(store, exp_list)
    verb = "would " if dry_run else ""
    if mark_dead:
        dead = maintenance.mark_dead_runs(store, dry_run=dry_run)
        for run_id in dead:
            click.echo(f"{verb}mark killed: run {run_id}")
        click.echo(f"{len(dead)} dead run(s) {'found' if dry_run else 'marked KILLED'}")
    report = maintenance.gc(store, older_than_ms=cutoff, run_ids=run_list, experiment_ids=exp_list,
                            dry_run=dry_run)
    store.flush()
    for experiment_id in report.experiment_ids:
        click.echo(f"{verb}remove experiment {experiment_id}")
    for run_id in report.run_ids:
        click.echo(f"{verb}remove run {run_id}")
    for uri in report.artifact_uris:
        click.echo(f"{verb}remove artifacts {uri}")
    click.echo(f"{'would remove' if dry_run else 'removed'} {len(report.run_ids)} run(s) and "
               f"{len(report.experiment_ids)} experiment(s)")
    files = gc_model_files(store, grace_s=grace_s, dry_run=dry_run)
    for path in files.registry_copies:
        click.echo(f"{verb}remove unreferenced registry copy {path}")
    for path in files.staging_paths:
        click.echo(f"{verb}remove abandoned staging {path}")
    click.echo(f"{'would remove' if dry_run else 'removed'} {len(files.registry_copies)} unreferenced registry "
               f"copy(ies) and {len(files.staging_paths)} staging path(s)")


@cli.command()
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable); default all.")
@click.option("--no-zorder", is_flag=True, help="Plain compaction, no Z-ORDER.")
@click.option("--vacuum-hours", type=click.FloatRange(min=0), default=None,
              help="VACUUM retention in hours (default 168, Delta's safe minimum).")
@click.option("--no-vacuum", is_flag=True, help="Skip VACUUM.")
@click.option("--force", is_flag=True, help="Allow a retention below 168 h (only when no job is running).")
@click.pass_context
def optimize(ctx: click.Context, tables: tuple[str, ...], no_zorder: bool, vacuum_hours: Optional[float],
             no_vacuum: bool, force: bool) -> None:
    """Compact (Z-ordered) the store's tables, then VACUUM old files."""
    from deltaflow.store import maintenance

    if no_vacuum and vacuum_hours is not None:
        raise click.UsageError("--vacuum-hours and --no-vacuum exclude each other")
    hours = None if no_vacuum else (maintenance.DEFAULT_VACUUM_HOURS if vacuum_hours is None else vacuum_hours)
    if hours is not None and hours < maintenance.DEFAULT_VACUUM_HOURS and not force:  # before Spark starts
        raise InvalidArgument(f"vacuum retention {hours:g}h is below the safe "
                              f"{maintenance.DEFAULT_VACUUM_HOURS:.0f}h; pass --force if no job is running")
    results = maintenance.optimize(_store(ctx), list(tables) or None, zorder=not no_zorder,
                                   vacuum_hours=hours, force=force)
    columns = ["table", "files_before", "files_after"] + ([] if hours is None else ["files_after_vacuum"])
    click.echo(format_table(results, columns))


# -- model registry: deltaflow models ... (in cli_models.py) ---------------------------------
from deltaflow.cli_models import models as _models  # noqa: E402 - after cli is defined

cli.add_command(_models)


def main(argv: Optional[Sequence[str]] = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="deltaflow")


if __name__ == "__main__":
    main()
