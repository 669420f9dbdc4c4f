"""The registry's current state, folded from its event log (pure; no storage).

The log is a single sequence of numbered revisions, each one change. :meth:`RegistryState.apply`
replays one event, :meth:`RegistryState.skip` passes over a revision whose row the store rejected
(a row of a signed registry without a valid signature); the store decides and validates a change against the folded state, then claims
the next revision for it. Because every reader folds the same dense sequence the same way, every
process sees the same registry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from deltaflow.config import RESERVED_PRINCIPALS
from deltaflow.registry._rules import ALL_USERS, STAGES
from deltaflow.registry.entities import (
    Activity,
    Comment,
    ModelVersion,
    RegisteredModel,
    TransitionRequest,
    Webhook,
)

__all__ = ["RegistryState", "ACTIVITY_TYPES", "Rejected"]

# Databricks' activity types for the actions that have one.
ACTIVITY_TYPES = {
    "TRANSITION_STAGE": "APPLIED_TRANSITION",
    "CREATE_TRANSITION_REQUEST": "REQUESTED_TRANSITION",
    "APPROVE_TRANSITION_REQUEST": "APPROVED_REQUEST",
    "REJECT_TRANSITION_REQUEST": "REJECTED_REQUEST",
    "CANCEL_TRANSITION_REQUEST": "CANCELLED_REQUEST",
    "CREATE_COMMENT": "NEW_COMMENT",
}


@dataclass
class _Version:
    version: int
    creation: int
    updated: int
    user_id: str
    source: str
    storage_location: str
    run_id: Optional[str]
    run_link: Optional[str]
    description: Optional[str] = None
    stage: str = "None"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Model:
    name: str
    creation: int
    updated: int
    owner: str
    description: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    versions: dict[int, _Version] = field(default_factory=dict)
    next_version: int = 1
    permissions: dict[str, str] = field(default_factory=dict)
    requests: dict[str, TransitionRequest] = field(default_factory=dict)
    comments: dict[str, Comment] = field(default_factory=dict)


@dataclass
class _Hook:
    webhook: Webhook
    secret: Optional[str]  # plaintext: only rows written before secrets were encrypted carry one
    secret_enc: Optional[str] = None  # encrypted with the registry key (see _integrity)


@dataclass(frozen=True)
class Rejected:
    """A log row the fold did not apply, and why."""

    revision: int
    event_id: str
    user_id: str
    action: str
    reason: str


def _reserved(user: Any) -> bool:
    return not isinstance(user, str) or user.strip().lower() in RESERVED_PRINCIPALS


class RegistryState:
    """Folded registry state at :attr:`revision` (0: empty).

    ``admins`` are the registry admins: the user of revision 1 (who created the registry), then
    whoever an admin adds. ``key_id`` is the registry key that signs the log (None: an unsigned
    registry), ``rejected`` the rows skipped so far."""

    def __init__(self) -> None:
        self.revision = 0
        self.models: dict[str, _Model] = {}
        self.webhooks: dict[str, _Hook] = {}
        self.admins: set[str] = set()
        self.key_id: Optional[str] = None
        self.rejected: list[Rejected] = []

    def copy(self) -> "RegistryState":
        return copy.deepcopy(self)

    # -- replay -----------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        revision = event["revision"]
        if revision != self.revision + 1:
            raise ValueError(f"registry event {revision} applied at revision {self.revision}")
        handler = getattr(self, "_on_" + event["action"].lower(), None)
        if handler is not None:  # an action from a newer release is skipped, not fatal
            handler(event, event.get("details") or {})
        if revision == 1 and not self.admins and not _reserved(event["user_id"]):
            self.admins.add(event["user_id"])  # whoever created the registry is its first admin
        name = event.get("name") or ""
        if event["action"] == "RENAME_REGISTERED_MODEL":
            name = (event.get("details") or {}).get("new_name", name)
        model = self.models.get(name)
        if model is not None:
            model.updated = event["event_time"]
        self.revision = revision

    def skip(self, revision: int, rejected: Iterable[Rejected]) -> None:
        """Pass over ``revision``: none of its rows may be applied."""
        if revision != self.revision + 1:
            raise ValueError(f"registry revision {revision} skipped at revision {self.revision}")
        self.rejected.extend(rejected)
        self.revision = revision

    def apply_all(self, events: Iterable[dict[str, Any]]) -> None:
        for event in sorted(events, key=lambda e: e["revision"]):
            self.apply(event)

    def _model(self, event: dict[str, Any]) -> _Model:
        return self.models[event["name"]]

    def _version(self, event: dict[str, Any]) -> _Version:
        return self.models[event["name"]].versions[event["version"]]

    def _touch(self, event: dict[str, Any]) -> None:
        self._version(event).updated = event["event_time"]

    def _on_create_registered_model(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        granted = {p: lvl for p, lvl in (d.get("permissions") or {}).items() if p == ALL_USERS or not _reserved(p)}
        owner = {} if _reserved(e["user_id"]) else {e["user_id"]: "CAN_MANAGE"}  # 'users' must not own
        self.models[e["name"]] = _Model(
            name=e["name"], creation=e["event_time"], updated=e["event_time"], owner=e["user_id"],
            description=d.get("description"), tags=dict(d.get("tags") or {}), permissions={**owner, **granted})

    def _on_rename_registered_model(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        model = self.models.pop(e["name"])
        model.name = d["new_name"]
        for request in list(model.requests):
            model.requests[request] = _replace(model.requests[request], name=model.name)
        for comment in list(model.comments):
            model.comments[comment] = _replace(model.comments[comment], name=model.name)
        self.models[model.name] = model
        for hook in self.webhooks.values():
            if hook.webhook.model_name == e["name"]:
                hook.webhook = _replace(hook.webhook, model_name=model.name)

    def _on_update_registered_model(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).description = d.get("description")

    def _on_delete_registered_model(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        del self.models[e["name"]]
        for hook_id in [h for h, hook in self.webhooks.items() if hook.webhook.model_name == e["name"]]:
            del self.webhooks[hook_id]

    def _on_set_registered_model_tag(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).tags[d["key"]] = d["value"]

    def _on_delete_registered_model_tag(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).tags.pop(d["key"], None)

    def _on_create_model_version(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        model = self._model(e)
        model.versions[e["version"]] = _Version(
            version=e["version"], creation=e["event_time"], updated=e["event_time"], user_id=e["user_id"],
            source=d["source"], storage_location=d["storage_location"], run_id=d.get("run_id"),
            run_link=d.get("run_link"), description=d.get("description"), tags=dict(d.get("tags") or {}))
        model.next_version = max(model.next_version, e["version"] + 1)

    def _on_update_model_version(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._version(e).description = d.get("description")
        self._touch(e)

    def _on_delete_model_version(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        model = self._model(e)
        del model.versions[e["version"]]
        model.aliases = {a: v for a, v in model.aliases.items() if v != e["version"]}
        for rid, request in list(model.requests.items()):
            if request.version == e["version"] and request.status == "PENDING":
                del model.requests[rid]

    def _on_set_model_version_tag(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._version(e).tags[d["key"]] = d["value"]
        self._touch(e)

    def _on_delete_model_version_tag(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._version(e).tags.pop(d["key"], None)
        self._touch(e)

    def _transition(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        model = self._model(e)
        model.versions[e["version"]].stage = e["to_stage"]
        self._touch(e)
        for other, _from_stage in d.get("archived") or ():
            if other in model.versions:
                model.versions[other].stage = "Archived"
                model.versions[other].updated = e["event_time"]

    def _on_transition_stage(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._transition(e, d)

    def _on_set_alias(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).aliases[d["alias"]] = e["version"]

    def _on_delete_alias(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).aliases.pop(d["alias"], None)

    def _on_create_transition_request(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).requests[d["request_id"]] = TransitionRequest(
            request_id=d["request_id"], name=e["name"], version=e["version"], to_stage=e["to_stage"],
            user_id=e["user_id"], creation_timestamp=e["event_time"], comment=e.get("comment"))

    def _resolve(self, e: dict[str, Any], d: dict[str, Any], status: str) -> None:
        model = self._model(e)
        for request_id in d.get("request_ids") or ():
            if request_id in model.requests:
                model.requests[request_id] = _replace(
                    model.requests[request_id], status=status, resolved_by=e["user_id"],
                    resolved_timestamp=e["event_time"], resolution_comment=e.get("comment"))

    def _on_approve_transition_request(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._resolve(e, d, "APPROVED")
        self._transition(e, d)

    def _on_reject_transition_request(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._resolve(e, d, "REJECTED")

    def _on_cancel_transition_request(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._resolve(e, d, "CANCELLED")

    def _on_create_comment(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).comments[d["comment_id"]] = Comment(
            comment_id=d["comment_id"], name=e["name"], version=e["version"], user_id=e["user_id"],
            comment=e["comment"], creation_timestamp=e["event_time"], last_updated_timestamp=e["event_time"])

    def _on_update_comment(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        model = self._model(e)
        model.comments[d["comment_id"]] = _replace(model.comments[d["comment_id"]], comment=e["comment"],
                                                   last_updated_timestamp=e["event_time"])

    def _on_delete_comment(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self._model(e).comments.pop(d["comment_id"], None)

    def _on_set_permission(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        if d["principal"] != ALL_USERS and _reserved(d["principal"]):
            return  # only rows written around the library's checks can carry one
        permissions = self._model(e).permissions
        if d.get("level") is None:
            permissions.pop(d["principal"], None)
        else:
            permissions[d["principal"]] = d["level"]

    def _on_create_webhook(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self.webhooks[d["webhook_id"]] = _Hook(Webhook(
            webhook_id=d["webhook_id"], events=tuple(d["events"]), url=d["url"], model_name=e.get("name") or None,
            status=d.get("status", "ACTIVE"), description=d.get("description"),
            creation_timestamp=e["event_time"], last_updated_timestamp=e["event_time"], user_id=e["user_id"],
            has_secret=bool(d.get("secret") or d.get("secret_enc"))), d.get("secret"), d.get("secret_enc"))

    def _on_update_webhook(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        hook = self.webhooks[d["webhook_id"]]
        changes = {k: (tuple(v) if k == "events" else v) for k, v in d.items()
                   if k in ("events", "url", "status", "description") and v is not None}
        hook.webhook = _replace(hook.webhook, last_updated_timestamp=e["event_time"], **changes)
        if d.get("secret_enc") is not None:
            hook.secret, hook.secret_enc = None, d["secret_enc"]
            hook.webhook = _replace(hook.webhook, has_secret=True)
        elif d.get("secret") is not None:
            hook.secret, hook.secret_enc = d["secret"], None
            hook.webhook = _replace(hook.webhook, has_secret=True)

    def _on_delete_webhook(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self.webhooks.pop(d["webhook_id"], None)

    def _on_add_registry_admin(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        if not _reserved(d["principal"]):
            self.admins.add(d["principal"])

    def _on_remove_registry_admin(self, e: dict[str, Any], d: dict[str, Any]) -> None:
        self.admins.discard(d["principal"])

    # -- reads ------------------------------------------------------------------------------
    def permission_of(self, model: _Model, user: str) -> Optional[str]:
        """The highest level ``user`` holds on ``model``: their own grant, the all-users grant, or
        CAN_MANAGE as a registry admin."""
        from deltaflow.registry._rules import PERMISSION_LEVELS

        if user in self.admins:
            return "CAN_MANAGE"
        held = [model.permissions.get(user), model.permissions.get(ALL_USERS)]
        held = [level for level in held if level is not None]
        return max(held, key=PERMISSION_LEVELS.index) if held else None

    def version_entity(self, model: _Model, v: _Version) -> ModelVersion:
        return ModelVersion(
            name=model.name, version=v.version, creation_timestamp=v.creation, last_updated_timestamp=v.updated,
            current_stage=v.stage, description=v.description, user_id=v.user_id, source=v.source,
            storage_location=v.storage_location, run_id=v.run_id, run_link=v.run_link, tags=dict(v.tags),
            aliases=sorted(a for a, n in model.aliases.items() if n == v.version))

    def latest_per_stage(self, model: _Model, stages: Optional[Iterable[str]] = None) -> list[ModelVersion]:
        wanted = tuple(stages) if stages else STAGES
        newest: dict[str, _Version] = {}
        for v in model.versions.values():
            if v.stage in wanted and (v.stage not in newest or v.version > newest[v.stage].version):
                newest[v.stage] = v
        return [self.version_entity(model, v) for v in sorted(newest.values(), key=lambda v: v.version)]

    def model_entity(self, model: _Model) -> RegisteredModel:
        return RegisteredModel(
            name=model.name, creation_timestamp=model.creation, last_updated_timestamp=model.updated,
            description=model.description, user_id=model.owner, tags=dict(model.tags),
            aliases=dict(model.aliases), latest_versions=self.latest_per_stage(model))


_PRIVATE_DETAILS = frozenset({"secret", "secret_enc", "_sig"})  # never in an activity view


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def activity_of(event: dict[str, Any], for_version: Optional[int] = None) -> Activity:
    """The audit view of one event; ``for_version`` names a version archived as a side effect, which
    then shows as Databricks' SYSTEM_TRANSITION to Archived."""
    details = {k: v for k, v in (event.get("details") or {}).items() if k not in _PRIVATE_DETAILS}
    if for_version is not None and for_version != event.get("version"):
        from_stage = next((stage for v, stage in details.get("archived") or () if v == for_version), None)
        return Activity(
            revision=event["revision"], timestamp=event["event_time"], user_id=event["user_id"],
            action=event["action"], activity_type="SYSTEM_TRANSITION", name=event["name"], version=for_version,
            from_stage=from_stage, to_stage="Archived", comment=event.get("comment"), details=details)
    return Activity(
        revision=event["revision"], timestamp=event["event_time"], user_id=event["user_id"],
        action=event["action"], activity_type=ACTIVITY_TYPES.get(event["action"]), name=event["name"],
        version=event.get("version"), from_stage=event.get("from_stage"), to_stage=event.get("to_stage"),
        comment=event.get("comment"), details=details)
