"""``deltaflow models score``: batch-score a Delta table into a Delta table from the shell.

A thin front for :func:`deltaflow.serving.batch.batch_score`: the same arguments, the lineage it
recorded printed afterwards. Only click is imported here; Spark starts when the command runs (the
running session when there is one, else a local one with Delta). Errors are DeltaflowErrors, which
the root group prints as one ``error: …`` line with exit status 2.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import click

__all__ = ["score"]

_MODES = ("append", "overwrite", "merge")  # deltaflow.serving.batch.MODES, kept literal: no import at load


def _param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not name=value", param_hint="--param")
    try:
        return name, json.loads(raw)  # numbers and booleans keep their type, as the signature checks them
    except ValueError:
        return name, raw


@click.command("score")
@click.option("-m", "--model-uri", required=True,
              help="runs:/…, models:/name/1, models:/name/Production, models:/name/latest, models:/name@alias, or a path.")
@click.option("-i", "--input", "input_table", required=True, help="Delta table to score: a path or a catalog name.")
@click.option("-o", "--output", "output_table", required=True, help="Delta table to write: a path or a catalog name.")
@click.option("--mode", type=click.Choice(_MODES), default="append", show_default=True,
              help="append, overwrite, or merge (upsert by --key).")
@click.option("--key", "keys", multiple=True, help="Merge key column (repeat for a composite key).")
@click.option("--version", type=click.IntRange(min=0), default=None,
              help="Input table version to score (default: its latest, pinned before reading).")
@click.option("--output-col", default="prediction", show_default=True, help="Column for the predictions.")
@click.option("--result-type", default=None, help="Spark type of the predictions (default: from the signature).")
@click.option("--env-manager", type=click.Choice(["local", "virtualenv"]), default="local", show_default=True)
@click.option("--param", "params", multiple=True, help="Inference parameter name=value (repeatable).")
@click.option("--output-format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def score(ctx: click.Context, model_uri: str, input_table: str, output_table: str, mode: str,
          keys: tuple[str, ...], version: Optional[int], output_col: str, result_type: Optional[str],
          env_manager: str, params: tuple[str, ...], output_format: str) -> None:
    """Score a Delta table with a model into a Delta table, recording which model produced the rows
    (in lineage columns and in the output commit's userMetadata)."""
    from deltaflow.serving.batch import batch_score

    root = ctx.find_root().obj or {}
    parsed = dict(_param(p) for p in params) or None
    key: Any = None if not keys else (keys[0] if len(keys) == 1 else list(keys))
    result = batch_score(input_table, model_uri, output_table, mode, key, version, output_col=output_col,
                         result_type=result_type, params=parsed, env_manager=env_manager,
                         tracking_uri=root.get("tracking_uri"))
    if output_format == "json":
        click.echo(json.dumps(result.as_dict(), sort_keys=True, default=str))
        return
    click.echo(f"scored {result.rows if result.rows is not None else '?'} rows into {result.output} "
               f"(version {result.output_version}, {result.mode})")
    facts = result.lineage
    width = max(len(k) for k in facts) + 2
    for name in sorted(facts):
        value = facts[name]
        click.echo(f"  {name + ':':<{width}}{'' if value is None else value}")
