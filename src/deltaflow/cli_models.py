"""``deltaflow models``: browse the model registry, move versions between stages, point aliases, and run
the transition-request approval workflow from the shell.

Attached to the top-level ``deltaflow`` group in :mod:`deltaflow.cli`, whose error handling turns a
:class:`~deltaflow.errors.DeltaflowError` (unknown model, bad stage, PermissionDenied ...) into one
``error: <message>`` line on stderr and exit status 2. The acting user is the registry's
(:func:`deltaflow.config.acting_user`): the workspace user on Databricks, elsewhere ``DELTAFLOW_USER``,
else the OS user. ``admins``, ``verify``, ``seal`` and ``key`` manage the registry's trust settings. Like the rest of the CLI, nothing heavy is imported
until a command runs, so ``--help`` stays instant; this module does not import :mod:`deltaflow.cli`
at load time (that module imports this one), only inside the commands.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Optional

import click

from deltaflow._cli_lazy import LazyGroup

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.registry.entities import Activity, ModelVersion
    from deltaflow.tracking.client import DeltaflowClient

__all__ = ["models"]

STATUSES = ("PENDING", "APPROVED", "REJECTED", "CANCELLED", "ALL")
_OUTPUT_OPTION = click.option("--output", "output", type=click.Choice(["table", "json"]), default="table",
                              show_default=True, help="Aligned text table or JSON.")
_COMMENT_OPTION = click.option("--comment", default=None, help="Recorded with the change in the audit trail.")
_ARCHIVE_OPTION = click.option("--archive-existing", is_flag=True,
                               help="Move the model's other versions in the target stage (Staging or "
                                    "Production) to Archived.")
_VERSION_OPTION = click.option("--version", "version", type=click.IntRange(min=1), default=None,
                               help="One version instead of the whole model.")


# -- helpers ---------------------------------------------------------------------------------
def _ui() -> Any:
    """The shared output helpers of :mod:`deltaflow.cli` (format_table, _ms_to_iso, _echo_json)."""
    from deltaflow import cli

    return cli


def _client(ctx: click.Context) -> "DeltaflowClient":
    from deltaflow.tracking.client import DeltaflowClient

    return DeltaflowClient(ctx.obj.get("tracking_uri"))


def _stage(text: str) -> str:
    """The canonical stage (case-insensitive), checked before any store is opened."""
    from deltaflow.registry._rules import check_stage

    return check_stage(text)


def _filter_quote(text: str) -> str:
    """``text`` as a single-quoted string of the search grammar."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _all_versions(client: "DeltaflowClient", name: str) -> list["ModelVersion"]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_model_versions(f"name = {_filter_quote(name)}", page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda v: v.version)


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def _latest(versions: list["ModelVersion"]) -> str:
    return ", ".join(f"{v.current_stage}:{v.version}" for v in versions)


def _asdict(entity: Any) -> dict[str, Any]:
    return dataclasses.asdict(entity)


def _show_fields(fields: list[tuple[str, Any]]) -> None:
    width = max(len(label) for label, _ in fields) + 2
    for label, value in fields:
        click.echo(f"{label + ':':<{width}}{'' if value is None else value}".rstrip())


def _details(activity: "Activity") -> str:
    """The few details worth a table cell (the JSON output has them all)."""
    d = activity.details
    parts = []
    if d.get("alias"):
        parts.append(f"alias={d['alias']}")
    if d.get("key") is not None:
        parts.append(f"key={d['key']}" + (f" value={d['value']}" if "value" in d else ""))
    if d.get("principal"):
        parts.append(f"{d['principal']}={d.get('level') or 'revoked'}")
    if d.get("new_name"):
        parts.append(f"renamed to {d['new_name']}")
    if d.get("request_ids"):
        parts.append(f"{len(d['request_ids'])} request(s)")
    if d.get("archived") and activity.activity_type != "SYSTEM_TRANSITION":
        parts.append("archived " + ", ".join(f"v{v}" for v, _ in d["archived"]))
    return "; ".join(parts)


def _last_change(client: "DeltaflowClient", name: str, version: int, action: str) -> Optional["Activity"]:
    """The newest audit entry of ``action`` on ``version`` by the current user (to report side effects)."""
    from deltaflow.config import acting_user

    user = acting_user()
    found = [a for a in client.get_model_version_activity(name, version)
             if a.action == action and a.version == version and a.user_id == user]
    return found[-1] if found else None


def _archived_note(activity: Optional["Activity"]) -> str:
    archived = (activity.details.get("archived") if activity is not None else None) or ()
    return f"; archived version(s) {', '.join(str(v) for v, _ in archived)}" if archived else ""


# -- the group -------------------------------------------------------------------------------
@click.group("models", cls=LazyGroup, lazy_commands={
    "score": "deltaflow.serving.cli:score",
    "serve": "deltaflow.serving.cli_rest:serve",
    "export": "deltaflow.serving.cli_rest:export",
})
def models() -> None:
    """Browse registered models; move versions between stages; aliases; approve transition requests."""


@models.command("list")
@click.option("--filter", "filter_string", default=None,
              help="e.g. \"name LIKE 'churn%'\" or \"tags.team = 'growth'\".")
@click.option("--max-results", type=click.IntRange(min=1), default=None, help="At most this many.")
@_OUTPUT_OPTION
@click.pass_context
def models_list(ctx: click.Context, filter_string: Optional[str], max_results: Optional[int], output: str) -> None:
    """List the registered models you can read, with their newest version per stage and aliases."""
    from deltaflow.tracking._search import parse_registered_model_filter

    parse_registered_model_filter(filter_string)  # fail fast, before the store is opened
    client = _client(ctx)
    found: list[Any] = []
    token = None
    while max_results is None or len(found) < max_results:
        page = client.search_registered_models(filter_string, min((max_results or 1000) - len(found), 1000),
                                               page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    if output == "json":
        _ui()._echo_json([_asdict(m) for m in found])
        return
    ui = _ui()
    rows = [{"name": m.name, "latest_versions": _latest(m.latest_versions), "aliases": _pairs(m.aliases),
             "owner": m.user_id, "last_updated": ui._ms_to_iso(m.last_updated_timestamp)} for m in found]
    click.echo(ui.format_table(rows, ["name", "latest_versions", "aliases", "owner", "last_updated"]))


@models.command("describe")
@click.argument("name")
@_VERSION_OPTION
@_OUTPUT_OPTION
@click.pass_context
def models_describe(ctx: click.Context, name: str, version: Optional[int], output: str) -> None:
    """Show a registered model (tags, aliases, permissions, versions) or, with --version, one version."""
    ui, client = _ui(), _client(ctx)
    if version is not None:
        mv = client.get_model_version(name, version)
        if output == "json":
            ui._echo_json({**_asdict(mv), "model_uri": mv.model_uri})
            return
        _show_fields([
            ("name", mv.name), ("version", mv.version), ("stage", mv.current_stage),
            ("description", mv.description), ("created", ui._ms_to_iso(mv.creation_timestamp)),
            ("last updated", ui._ms_to_iso(mv.last_updated_timestamp)), ("user", mv.user_id),
            ("status", mv.status), ("run_id", mv.run_id), ("run_link", mv.run_link), ("source", mv.source),
            ("storage location", mv.storage_location), ("tags", _pairs(mv.tags)),
            ("aliases", ", ".join(mv.aliases)), ("model uri", mv.model_uri),
        ])
        return
    model = client.get_registered_model(name)
    permissions = {p.principal: p.level for p in client.get_registered_model_permissions(name)}
    versions = _all_versions(client, name)
    if output == "json":
        ui._echo_json({**_asdict(model), "permissions": permissions, "versions": [_asdict(v) for v in versions]})
        return
    _show_fields([
        ("name", model.name), ("description", model.description), ("owner", model.user_id),
        ("created", ui._ms_to_iso(model.creation_timestamp)),
        ("last updated", ui._ms_to_iso(model.last_updated_timestamp)), ("tags", _pairs(model.tags)),
        ("aliases", _pairs(model.aliases)), ("permissions", _pairs(permissions)),
        ("versions", len(versions)),
    ])
    if versions:
        click.echo("")
        rows = [{"version": v.version, "stage": v.current_stage, "aliases": ", ".join(v.aliases),
                 "run_id": v.run_id, "created": ui._ms_to_iso(v.creation_timestamp), "user": v.user_id,
                 "source": v.source} for v in versions]
        click.echo(ui.format_table(rows, ["version", "stage", "aliases", "run_id", "created", "user", "source"]))


@models.command("transition")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("stage")
@_ARCHIVE_OPTION
@_COMMENT_OPTION
@click.pass_context
def models_transition(ctx: click.Context, name: str, version: int, stage: str, archive_existing: bool,
                      comment: Optional[str]) -> None:
    """Move VERSION of NAME to STAGE (None, Staging, Production or Archived; any case)."""
    stage = _stage(stage)
    client = _client(ctx)
    mv = client.transition_model_version_stage(name, version, stage, archive_existing_versions=archive_existing,
                                               comment=comment)
    change = _last_change(client, name, version, "TRANSITION_STAGE")
    moved = f" from {change.from_stage}" if change is not None else ""
    click.echo(f"Moved version {mv.version} of {name!r}{moved} to {mv.current_stage}{_archived_note(change)}")


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(min=1), required=False)
@click.option("--delete", is_flag=True, help="Delete the alias instead of pointing it at VERSION.")
@click.pass_context
def models_alias(ctx: click.Context, name: str, alias: str, version: Optional[int], delete: bool) -> None:
    """Point ALIAS of NAME at VERSION, or delete it with --delete."""
    if delete == (version is not None):
        raise click.UsageError("give VERSION to set the alias, or --delete (without VERSION) to delete it")
    client = _client(ctx)
    if delete:
        client.delete_registered_model_alias(name, alias)
        click.echo(f"Deleted alias {alias!r} of {name!r}")
    else:
        client.set_registered_model_alias(name, alias, version)
        click.echo(f"Alias {alias!r} of {name!r} now points to version {version}")


@models.command("requests")
@click.argument("name")
@_VERSION_OPTION
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), default="PENDING", show_default=True,
              help="Which requests to list.")
@_OUTPUT_OPTION
@click.pass_context
def models_requests(ctx: click.Context, name: str, version: Optional[int], status: str, output: str) -> None:
    """List the stage-transition requests on a model (or one version), oldest first."""
    ui = _ui()
    status = status.upper()
    found = _client(ctx).list_transition_requests(name, version, None if status == "ALL" else status)
    if output == "json":
        ui._echo_json([_asdict(r) for r in found])
        return
    rows = [{"request_id": r.request_id, "version": r.version, "to_stage": r.to_stage, "status": r.status,
             "user": r.user_id, "created": ui._ms_to_iso(r.creation_timestamp), "comment": r.comment,
             "resolved_by": r.resolved_by, "resolved": ui._ms_to_iso(r.resolved_timestamp),
             "resolution_comment": r.resolution_comment} for r in found]
    click.echo(ui.format_table(rows, ["request_id", "version", "to_stage", "status", "user", "created", "comment",
                                      "resolved_by", "resolved", "resolution_comment"]))


@models.command("request")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("stage")
@_COMMENT_OPTION
@click.pass_context
def models_request(ctx: click.Context, name: str, version: int, stage: str, comment: Optional[str]) -> None:
    """Ask for VERSION of NAME to be moved to STAGE (needs only CAN_READ); someone entitled approves it."""
    stage = _stage(stage)
    request = _client(ctx).create_transition_request(name, version, stage, comment=comment)
    click.echo(f"Requested moving version {request.version} of {name!r} to {request.to_stage} "
               f"(request {request.request_id}, by {request.user_id})")


@models.command("approve")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("stage")
@_ARCHIVE_OPTION
@_COMMENT_OPTION
@click.pass_context
def models_approve(ctx: click.Context, name: str, version: int, stage: str, archive_existing: bool,
                   comment: Optional[str]) -> None:
    """Approve the pending requests to move VERSION of NAME to STAGE, and move it."""
    stage = _stage(stage)
    client = _client(ctx)
    mv = client.approve_transition_request(name, version, stage, archive_existing_versions=archive_existing,
                                           comment=comment)
    change = _last_change(client, name, version, "APPROVE_TRANSITION_REQUEST")
    count = len(change.details.get("request_ids") or ()) if change is not None else 0
    click.echo(f"Approved {count} request(s): version {mv.version} of {name!r} is now in {mv.current_stage}"
               f"{_archived_note(change)}")


@models.command("reject")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("stage")
@_COMMENT_OPTION
@click.pass_context
def models_reject(ctx: click.Context, name: str, version: int, stage: str, comment: Optional[str]) -> None:
    """Reject the pending requests to move VERSION of NAME to STAGE (the version stays where it is)."""
    stage = _stage(stage)
    client = _client(ctx)
    client.reject_transition_request(name, version, stage, comment=comment)
    change = _last_change(client, name, version, "REJECT_TRANSITION_REQUEST")
    count = len(change.details.get("request_ids") or ()) if change is not None else 0
    click.echo(f"Rejected {count} request(s) to move version {version} of {name!r} to {stage}")


@models.command("history")
@click.argument("name")
@_VERSION_OPTION
@_OUTPUT_OPTION
@click.pass_context
def models_history(ctx: click.Context, name: str, version: Optional[int], output: str) -> None:
    """The audit trail of a model (or one version), oldest first: who changed what, when."""
    ui, client = _ui(), _client(ctx)
    found = (client.get_registry_activity(name) if version is None
             else client.get_model_version_activity(name, version))
    if output == "json":
        ui._echo_json([_asdict(a) for a in found])
        return
    rows = [{"revision": a.revision, "time": ui._ms_to_iso(a.timestamp), "user": a.user_id, "version": a.version,
             "action": a.action, "type": a.activity_type, "from_stage": a.from_stage, "to_stage": a.to_stage,
             "comment": a.comment, "details": _details(a)} for a in found]
    click.echo(ui.format_table(rows, ["revision", "time", "user", "version", "action", "type", "from_stage",
                                      "to_stage", "comment", "details"]))


# -- registry trust: admins, log verification, the registry key ------------------------------
@models.command("admins")
@click.argument("action", type=click.Choice(["list", "add", "remove"]), default="list")
@click.argument("user", required=False)
@click.pass_context
def models_admins(ctx: click.Context, action: str, user: Optional[str]) -> None:
    """List the registry admins, or (as an admin) add or remove USER. Whoever created the registry
    is its first admin; admins hold CAN_MANAGE on every model."""
    client = _client(ctx)
    if action != "list":
        if not user:
            raise click.UsageError(f"`models admins {action}` needs the USER to {action}")
        (client.add_registry_admin if action == "add" else client.remove_registry_admin)(user)
        click.echo(f"{'Added' if action == 'add' else 'Removed'} registry admin {user!r}")
    for name in client.list_registry_admins():
        click.echo(name)


@models.command("verify")
@_OUTPUT_OPTION
@click.pass_context
def models_verify(ctx: click.Context, output: str) -> None:
    """Check every registry log row's signature (admins only). Exit status 1 when rows were ignored
    as forged or altered."""
    report = _client(ctx).verify_registry()
    if output == "json":
        _ui()._echo_json(_asdict(report))
    else:
        state = f"signed with registry key {report.key_id}" if report.signed else \
            "unsigned (created without a registry key: forged rows cannot be told apart)"
        click.echo(f"registry log: {report.revision} revisions, {state}")
        for bad in report.rejected:
            click.echo(f"ignored: revision {bad.revision} row {bad.event_id} ({bad.action} as {bad.user_id!r}): "
                       f"{bad.reason}")
    if report.rejected:
        ctx.exit(1)


@models.command("seal")
@click.pass_context
def models_seal(ctx: click.Context) -> None:
    """Make an unsigned registry signed from now on (admins; needs the registry key)."""
    report = _client(ctx).seal_registry()
    click.echo(f"registry log signed with registry key {report.key_id} from revision {report.revision} on")


@models.command("key")
@click.option("--create", is_flag=True, help="Write a new random key to the key file (mode 0600).")
def models_key(create: bool) -> None:
    """Show where this process's registry key comes from and its id (never the key itself)."""
    from deltaflow.registry import _integrity

    if create:
        made = _integrity.create_key_file()
        click.echo(f"created {made.source} (key id {made.key_id}); give every process using the registry the "
                   f"same key ({_integrity.KEY_ENV} or this file)")
        return
    key = _integrity.load_key()
    if key is None:
        click.echo(f"no registry key: set {_integrity.KEY_ENV} or run `deltaflow models key --create` "
                   f"({_integrity.key_file()})")
    else:
        click.echo(f"registry key id {key.key_id} from {key.source}")
