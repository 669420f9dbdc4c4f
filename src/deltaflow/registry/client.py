"""The registry half of the client: MlflowClient's model-registry methods plus Databricks' governance
(transition requests, comments, permissions, activity, webhooks). Mixed into
:class:`~deltaflow.tracking.client.DeltaflowClient`; every change is one registry revision."""

from __future__ import annotations

import uuid
import importlib
from typing import TYPE_CHECKING, Any, Optional, Sequence

from deltaflow.errors import InvalidArgument, InvalidState, NotFound
from deltaflow.registry import _rules as R

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.entities import PagedList
    from deltaflow.registry.entities import (
        Activity,
        Comment,
        ModelPermission,
        ModelVersion,
        RegisteredModel,
        RegistryIntegrity,
        TransitionRequest,
        Webhook,
        WebhookDelivery,
    )
    from deltaflow.registry.store import Decision, RegistryStore


def _acting_user() -> str:
    from deltaflow.config import acting_user

    return acting_user()


class _Lazy:
    """A module imported on first attribute access: ``import deltaflow`` must not pay for the registry."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


D = _Lazy("deltaflow.registry._decide")
S = _Lazy("deltaflow.registry.store")
E = _Lazy("deltaflow.registry.entities")
_state = _Lazy("deltaflow.registry.state")

__all__ = ["RegistryClientMixin"]

_MAX_MODELS_PAGE, _MAX_VERSIONS_PAGE = 1000, 200_000


def _tags(tags: Optional[dict[str, Any]]) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidArgument(f"tags must be a dict of key -> value, got {type(tags).__name__}")
    return dict(R.check_tag(k, v) for k, v in tags.items())


def _max_results(value: Any, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit:
        raise InvalidArgument(f"max_results {value!r} must be an integer from 1 to {limit}")
    return value


class RegistryClientMixin:
    _store: Any  # the TrackingStore, provided by DeltaflowClient

    @property
    def _registry(self) -> RegistryStore:
        return S.registry_store(self._store)

    def _read(self, name: str, refresh: bool = True) -> Any:
        """Current state, with ``name`` existing and readable by the current user. ``refresh=False``
        right after our own commit: the local state already holds it."""
        name = R.check_model_name(name)
        state = self._registry.state(refresh)
        S.need_level(state, S.need_model(state, name), _acting_user(), "CAN_READ", "reading")
        return state

    def _commit(self, decide: Any) -> Optional[dict[str, Any]]:
        return self._registry.commit(decide)

    # -- registered models ------------------------------------------------------------------
    def create_registered_model(self, name: str, tags: Optional[dict[str, Any]] = None,
                                description: Optional[str] = None) -> RegisteredModel:
        name = R.check_model_name(name)
        tags, description = _tags(tags), R.check_description(description)
        self._commit(lambda s, u: D.create_model(s, u, name, description, tags))
        return self._model_now(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._model_now(name, refresh=True)

    def _model_now(self, name: str, refresh: bool = False) -> RegisteredModel:
        state = self._read(name, refresh)
        return state.model_entity(state.models[name])

    def _version_now(self, name: str, version: int, refresh: bool = False) -> ModelVersion:
        state = self._read(name, refresh)
        model, v = S.need_version(state, name, version)
        return state.version_entity(model, v)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        name, new_name = R.check_model_name(name), R.check_model_name(new_name, "new registered model name")
        self._commit(lambda s, u: D.rename_model(s, u, name, new_name))
        return self._model_now(new_name)

    def update_registered_model(self, name: str, description: Optional[str] = None) -> RegisteredModel:
        name, description = R.check_model_name(name), R.check_description(description)

        def decide(s: Any, u: str) -> Decision:
            S.need_level(s, S.need_model(s, name), u, "CAN_EDIT", "updating the description")
            return S.Decision(action="UPDATE_REGISTERED_MODEL", name=name, details={"description": description})

        self._commit(decide)
        return self._model_now(name)

    def delete_registered_model(self, name: str) -> None:
        name = R.check_model_name(name)

        def decide(s: Any, u: str) -> Decision:
            S.need_level(s, S.need_model(s, name), u, "CAN_MANAGE", "deleting the model")
            return S.Decision(action="DELETE_REGISTERED_MODEL", name=name)

        self._commit(decide)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        name, (key, value) = R.check_model_name(name), R.check_tag(key, value)

        def decide(s: Any, u: str) -> Decision:
            S.need_level(s, S.need_model(s, name), u, "CAN_EDIT", "setting a tag")
            return S.Decision(action="SET_REGISTERED_MODEL_TAG", name=name, details={"key": key, "value": value})

        self._commit(decide)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        name, (key, _) = R.check_model_name(name), R.check_tag(key)

        def decide(s: Any, u: str) -> Decision:
            model = S.need_model(s, name)
            S.need_level(s, model, u, "CAN_EDIT", "deleting a tag")
            if key not in model.tags:
                raise NotFound(f"registered model {name!r} has no tag {key!r}")
            return S.Decision(action="DELETE_REGISTERED_MODEL_TAG", name=name, details={"key": key})

        self._commit(decide)

    def search_registered_models(self, filter_string: Optional[str] = None, max_results: int = 100,
                                 order_by: Optional[Sequence[str]] = None,
                                 page_token: Optional[str] = None) -> PagedList:
        from deltaflow.registry import _search

        return _search.search_models(self._registry.state(), filter_string, _max_results(max_results, _MAX_MODELS_PAGE),
                                     order_by, page_token)

    # -- versions ---------------------------------------------------------------------------
    def create_model_version(self, name: str, source: str, run_id: Optional[str] = None,
                             tags: Optional[dict[str, Any]] = None, run_link: Optional[str] = None,
                             description: Optional[str] = None, await_creation_for: int = 0) -> ModelVersion:
        """Register the model at ``source`` (any model URI) as the next version of ``name``.

        The model directory is copied into the registry's storage first, so the version does not
        depend on its run's artifacts; the version number is allocated when the change commits.
        """
        del await_creation_for  # versions are READY when this returns
        name, tags, description = R.check_model_name(name), _tags(tags), R.check_description(description)
        if not isinstance(source, str) or not source:
            raise InvalidArgument(f"source must be a model URI or path, got {source!r}")
        from deltaflow.registry.copies import checked_source

        # Check existence and permission before copying (the decision re-checks at commit time).
        self._check_can_edit(name)
        with checked_source(source, self._registry.location.uri) as (local, source_run):  # a torn model: refused
            return self._create_version_from(local, name, source, source_run, run_id, tags, run_link, description)

    def _create_version_from(self, local: str, name: str, source: str, source_run: Optional[str],
                             run_id: Optional[str], tags: dict[str, str], run_link: Optional[str],
                             description: Optional[str]) -> ModelVersion:
        """Copy the checked model folder ``local`` into the registry and commit the version's event."""
        from deltaflow.registry.copies import publish_copy

        registry = self._registry
        storage = publish_copy(registry.location.artifact_root, name, local)
        run_id = run_id or source_run
        event = self._commit(lambda s, u: D.create_version(s, u, name, source, storage, run_id, run_link,
                                                             description, tags))
        assert event is not None  # create_version always decides a change
        return self._version_now(name, event["version"])

    def _check_can_edit(self, name: str) -> None:
        state = self._registry.state()
        S.need_level(state, S.need_model(state, name), _acting_user(), "CAN_EDIT", "creating a model version")

    def register_model(self, model_uri: str, name: str, tags: Optional[dict[str, Any]] = None) -> ModelVersion:
        """MLflow's ``register_model``: create the registered model if needed, then a version."""
        from deltaflow.registry.copies import checked_source

        name, checked = R.check_model_name(name), _tags(tags)
        if not isinstance(model_uri, str) or not model_uri:
            raise InvalidArgument(f"model_uri must be a model URI or path, got {model_uri!r}")
        # An incomplete model is refused before the registered model is created.
        with checked_source(model_uri, self._registry.location.uri) as (local, source_run):
            self._commit(lambda s, u: D.create_model(s, u, name, None, {}, exist_ok=True))
            self._check_can_edit(name)
            return self._create_version_from(local, name, model_uri, source_run, None, checked, None, None)

    def get_model_version(self, name: str, version: Any) -> ModelVersion:
        return self._version_now(name, R.check_version(version), refresh=True)

    def get_model_version_download_uri(self, name: str, version: Any) -> str:
        return self.get_model_version(name, version).storage_location or ""

    def update_model_version(self, name: str, version: Any, description: Optional[str] = None) -> ModelVersion:
        name, version, description = R.check_model_name(name), R.check_version(version), R.check_description(description)

        def decide(s: Any, u: str) -> Decision:
            model, _ = S.need_version(s, name, version)
            S.need_level(s, model, u, "CAN_EDIT", "updating a version's description")
            return S.Decision(action="UPDATE_MODEL_VERSION", name=name, version=version,
                            details={"description": description})

        self._commit(decide)
        return self._version_now(name, version)

    def delete_model_version(self, name: str, version: Any) -> None:
        name, version = R.check_model_name(name), R.check_version(version)

        def decide(s: Any, u: str) -> Decision:
            model, v = S.need_version(s, name, version)
            S.need_level(s, model, u, "CAN_MANAGE", "deleting a version")
            return S.Decision(action="DELETE_MODEL_VERSION", name=name, version=version, from_stage=v.stage)

        self._commit(decide)

    def set_model_version_tag(self, name: str, version: Any = None, key: Optional[str] = None, value: Any = None,
                              stage: Optional[str] = None) -> None:
        name = R.check_model_name(name)
        key, value = R.check_tag(key, value)
        version = self._version_or_stage(name, version, stage)

        def decide(s: Any, u: str) -> Decision:
            model, _ = S.need_version(s, name, version)
            S.need_level(s, model, u, "CAN_EDIT", "setting a version tag")
            return S.Decision(action="SET_MODEL_VERSION_TAG", name=name, version=version,
                            details={"key": key, "value": value})

        self._commit(decide)

    def delete_model_version_tag(self, name: str, version: Any = None, key: Optional[str] = None,
                                 stage: Optional[str] = None) -> None:
        name = R.check_model_name(name)
        key, _ = R.check_tag(key)
        version = self._version_or_stage(name, version, stage)

        def decide(s: Any, u: str) -> Decision:
            model, v = S.need_version(s, name, version)
            S.need_level(s, model, u, "CAN_EDIT", "deleting a version tag")
            if key not in v.tags:
                raise NotFound(f"version {version} of {name!r} has no tag {key!r}")
            return S.Decision(action="DELETE_MODEL_VERSION_TAG", name=name, version=version, details={"key": key})

        self._commit(decide)

    def _version_or_stage(self, name: str, version: Any, stage: Optional[str]) -> int:
        if (version is None) == (stage is None):
            raise InvalidArgument("give exactly one of version and stage")
        if version is not None:
            return R.check_version(version)
        latest = self.get_latest_versions(name, [R.check_stage(stage)])
        if not latest:
            raise NotFound(f"model {name!r} has no version in stage {stage}")
        return latest[0].version

    def search_model_versions(self, filter_string: Optional[str] = None, max_results: int = 10_000,
                              order_by: Optional[Sequence[str]] = None,
                              page_token: Optional[str] = None) -> PagedList:
        from deltaflow.registry import _search

        return _search.search_versions(self._registry.state(), filter_string,
                                       _max_results(max_results, _MAX_VERSIONS_PAGE), order_by, page_token)

    def get_latest_versions(self, name: str, stages: Optional[Sequence[str]] = None) -> list[ModelVersion]:
        if isinstance(stages, str):
            raise InvalidArgument(f"stages must be a list of stage names, got the string {stages!r}")
        checked = [R.check_stage(s) for s in stages] if stages else None
        state = self._read(name)
        return state.latest_per_stage(state.models[name], checked)

    # -- stages and aliases -----------------------------------------------------------------
    def transition_model_version_stage(self, name: str, version: Any, stage: str,
                                       archive_existing_versions: bool = False,
                                       comment: Optional[str] = None) -> ModelVersion:
        name, version, stage = R.check_model_name(name), R.check_version(version), R.check_stage(stage)
        comment = R.check_description(comment, "comment")
        self._commit(lambda s, u: D.transition(s, u, name, version, stage, bool(archive_existing_versions), comment))
        return self._version_now(name, version)

    def set_registered_model_alias(self, name: str, alias: str, version: Any) -> None:
        name, alias, version = R.check_model_name(name), R.check_alias(alias), R.check_version(version)

        def decide(s: Any, u: str) -> Decision:
            model, _ = S.need_version(s, name, version)
            S.need_level(s, model, u, "CAN_MANAGE_PRODUCTION_VERSIONS", f"pointing alias {alias!r}")
            return S.Decision(action="SET_ALIAS", name=name, version=version,
                            details={"alias": alias, "previous": model.aliases.get(alias)})

        self._commit(decide)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        name, alias = R.check_model_name(name), R.check_alias(alias)

        def decide(s: Any, u: str) -> Decision:
            model = S.need_model(s, name)
            S.need_level(s, model, u, "CAN_MANAGE_PRODUCTION_VERSIONS", f"deleting alias {alias!r}")
            if alias not in model.aliases:
                raise NotFound(f"registered model {name!r} has no alias {alias!r}")
            return S.Decision(action="DELETE_ALIAS", name=name, version=model.aliases[alias], details={"alias": alias})

        self._commit(decide)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        alias = R.check_alias(alias)
        state = self._read(name)
        model = state.models[name]
        if alias not in model.aliases:
            known = ", ".join(sorted(model.aliases)) or "none"
            raise NotFound(f"registered model {name!r} has no alias {alias!r} (its aliases: {known})")
        return state.version_entity(model, model.versions[model.aliases[alias]])

    # -- transition requests and comments ---------------------------------------------------
    def create_transition_request(self, name: str, version: Any, stage: str,
                                  comment: Optional[str] = None) -> TransitionRequest:
        name, version = R.check_model_name(name), R.check_version(version)
        stage, comment = R.check_stage(stage), R.check_description(comment, "comment")
        event = self._commit(lambda s, u: D.request_transition(s, u, name, version, stage, comment))
        assert event is not None
        return self._read(name, refresh=False).models[name].requests[event["details"]["request_id"]]

    def approve_transition_request(self, name: str, version: Any, stage: str,
                                   archive_existing_versions: bool = False,
                                   comment: Optional[str] = None) -> ModelVersion:
        """Approve every pending request to move the version to ``stage``, and apply the move."""
        name, version = R.check_model_name(name), R.check_version(version)
        stage, comment = R.check_stage(stage), R.check_description(comment, "comment")
        self._commit(lambda s, u: D.resolve_requests(s, u, name, version, stage, True,
                                                     bool(archive_existing_versions), comment))
        return self._version_now(name, version)

    def reject_transition_request(self, name: str, version: Any, stage: str, comment: Optional[str] = None) -> None:
        name, version = R.check_model_name(name), R.check_version(version)
        stage, comment = R.check_stage(stage), R.check_description(comment, "comment")
        self._commit(lambda s, u: D.resolve_requests(s, u, name, version, stage, False, False, comment))

    def cancel_transition_request(self, name: str, version: Any, stage: str, creator: Optional[str] = None,
                                  comment: Optional[str] = None) -> None:
        """Withdraw your own pending request (or, with CAN_MANAGE, ``creator``'s)."""
        name, version = R.check_model_name(name), R.check_version(version)
        stage, comment = R.check_stage(stage), R.check_description(comment, "comment")
        self._commit(lambda s, u: D.cancel_request(s, u, name, version, stage, creator, comment))

    def list_transition_requests(self, name: str, version: Any = None,
                                 status: Optional[str] = "PENDING") -> list[TransitionRequest]:
        """Requests on a model (or one version), oldest first; ``status=None`` lists every status."""
        state = self._read(name)
        version = R.check_version(version) if version is not None else None
        if status is not None and status not in ("PENDING", "APPROVED", "REJECTED", "CANCELLED"):
            raise InvalidArgument(f"status {status!r} is not one of PENDING, APPROVED, REJECTED, CANCELLED (or None)")
        requests = [r for r in state.models[name].requests.values()
                    if (version is None or r.version == version) and (status is None or r.status == status)]
        return sorted(requests, key=lambda r: (r.creation_timestamp, r.request_id))

    def create_comment(self, name: str, version: Any, comment: str) -> Comment:
        name, version, text = R.check_model_name(name), R.check_version(version), R.check_comment(comment)
        comment_id = uuid.uuid4().hex

        def decide(s: Any, u: str) -> Decision:
            model, _ = S.need_version(s, name, version)
            S.need_level(s, model, u, "CAN_READ", "commenting")
            return S.Decision(action="CREATE_COMMENT", name=name, version=version, comment=text,
                            details={"comment_id": comment_id})

        self._commit(decide)
        return self._read(name, refresh=False).models[name].comments[comment_id]

    def _own_comment(self, s: Any, u: str, name: str, comment_id: str) -> Any:
        comment = S.need_model(s, name).comments.get(comment_id)
        if comment is None:
            raise NotFound(f"registered model {name!r} has no comment {comment_id!r}")
        if comment.user_id != u:
            S.need_level(s, s.models[name], u, "CAN_MANAGE", f"changing {comment.user_id!r}'s comment")
        return comment

    def update_comment(self, name: str, comment_id: str, comment: str) -> Comment:
        name, text = R.check_model_name(name), R.check_comment(comment)

        def decide(s: Any, u: str) -> Decision:
            found = self._own_comment(s, u, name, comment_id)
            return S.Decision(action="UPDATE_COMMENT", name=name, version=found.version, comment=text,
                            details={"comment_id": comment_id})

        self._commit(decide)
        return self._read(name, refresh=False).models[name].comments[comment_id]

    def delete_comment(self, name: str, comment_id: str) -> None:
        name = R.check_model_name(name)

        def decide(s: Any, u: str) -> Decision:
            found = self._own_comment(s, u, name, comment_id)
            return S.Decision(action="DELETE_COMMENT", name=name, version=found.version,
                            details={"comment_id": comment_id})

        self._commit(decide)

    def list_comments(self, name: str, version: Any) -> list[Comment]:
        version = R.check_version(version)
        state = self._read(name)
        S.need_version(state, name, version)
        return sorted((c for c in state.models[name].comments.values() if c.version == version),
                      key=lambda c: (c.creation_timestamp, c.comment_id))

    # -- permissions ------------------------------------------------------------------------
    def set_registered_model_permission(self, name: str, principal: str, level: Optional[str]) -> None:
        """Grant ``principal`` (a user, or ``"users"`` for everyone) ``level`` on ``name``; None revokes."""
        name, principal = R.check_model_name(name), R.check_principal(principal)
        level = R.check_level(level) if level is not None else None

        def decide(s: Any, u: str) -> Decision:
            model = S.need_model(s, name)
            S.need_level(s, model, u, "CAN_MANAGE", "changing permissions")
            if level is None and principal not in model.permissions:
                raise NotFound(f"{principal!r} holds no permission on {name!r} to revoke")
            return S.Decision(action="SET_PERMISSION", name=name,
                            details={"principal": principal, "level": level,
                                     "previous": model.permissions.get(principal)})

        self._commit(decide)

    def get_registered_model_permissions(self, name: str) -> list[ModelPermission]:
        state = self._read(name)
        return [E.ModelPermission(p, lvl) for p, lvl in sorted(state.models[name].permissions.items())]

    def get_registered_model_permission_level(self, name: str, user: Optional[str] = None) -> Optional[str]:
        """The level ``user`` (default: the current user) holds on ``name``, or None."""
        name = R.check_model_name(name)
        state = self._registry.state()
        return state.permission_of(S.need_model(state, name), user or _acting_user())

    # -- activity ---------------------------------------------------------------------------
    def get_model_version_activity(self, name: str, version: Any) -> list[Activity]:
        """Every change to one version, oldest first (from the audit log, including system archiving)."""
        version = R.check_version(version)
        self._read(name)
        return [_state.activity_of(e, version) for e in _lineage(self._registry.events(), name)
                if e.get("version") == version or any(v == version for v, _ in e["details"].get("archived") or ())]

    def get_registry_activity(self, name: Optional[str] = None) -> list[Activity]:
        """The audit log, oldest first: for one model (under every name it had) or, for registry
        admins, the whole registry."""
        if name is None:
            S.need_admin(self._registry.state(), _acting_user(), "reading the whole registry's activity (or pass "
                         "a model name)")
            return [_state.activity_of(e) for e in self._registry.events()]
        self._read(name)
        return [_state.activity_of(e) for e in _lineage(self._registry.events(), name)]

    # -- registry admins and integrity ------------------------------------------------------
    def list_registry_admins(self) -> list[str]:
        """The registry admins (CAN_MANAGE on every model; registry-wide webhooks and activity):
        whoever created the registry, then whoever an admin added."""
        return sorted(self._registry.state().admins)

    def add_registry_admin(self, user: str) -> None:
        """Make ``user`` a registry admin (you must be one); recorded in the audit trail."""
        principal = R.check_principal(user, allow_all_users=False)

        def decide(s: Any, u: str) -> Optional[Decision]:
            S.need_admin(s, u, "adding a registry admin")
            if principal in s.admins:
                return None
            return S.Decision(action="ADD_REGISTRY_ADMIN", name="", details={"principal": principal})

        self._commit(decide)

    def remove_registry_admin(self, user: str) -> None:
        """Remove ``user`` from the registry admins (you must be one; the last admin stays)."""
        principal = R.check_principal(user, allow_all_users=False)

        def decide(s: Any, u: str) -> Decision:
            S.need_admin(s, u, "removing a registry admin")
            if principal not in s.admins:
                raise NotFound(f"{principal!r} is not a registry admin (admins: {', '.join(sorted(s.admins))})")
            if s.admins == {principal}:
                raise InvalidState(f"{principal!r} is the last registry admin; add another admin before removing it")
            return S.Decision(action="REMOVE_REGISTRY_ADMIN", name="", details={"principal": principal})

        self._commit(decide)

    def seal_registry(self) -> RegistryIntegrity:
        """Make an unsigned registry (created without a registry key) signed from its next revision
        on: later rows count only when signed with this process's key. Admins only; the rows before
        the seal stay as they were. Returns :meth:`verify_registry`'s report."""
        from deltaflow.registry import _integrity

        key = _integrity.require_key("sealing the registry")

        def decide(s: Any, u: str) -> Optional[Decision]:
            S.need_admin(s, u, "sealing the registry")
            if s.key_id is not None:
                return None  # already signed
            return S.Decision(action="SEAL_REGISTRY", name="", details={"key_id": key.key_id})

        self._commit(decide)
        return self.verify_registry()

    def verify_registry(self) -> RegistryIntegrity:
        """Fold the whole registry log, checking every row's signature: whether the registry is
        signed (and with which key id), and the rows every reader ignores (forged or altered
        rows, written around the library). Registry admins only."""
        state = self._registry.verify()
        S.need_admin(state, _acting_user(), "verifying the registry log")
        return E.RegistryIntegrity(signed=state.key_id is not None, key_id=state.key_id, revision=state.revision,
                                   rejected=list(state.rejected))

    # -- webhooks ---------------------------------------------------------------------------
    def create_registry_webhook(self, events: Sequence[str], url: str, secret: Optional[str] = None,
                                model_name: Optional[str] = None, description: Optional[str] = None,
                                status: str = "ACTIVE") -> Webhook:
        """Call ``url`` on ``events`` for one model (or, as a registry admin, for every model)."""
        from deltaflow.registry.webhooks import check_target

        events_t, url = R.check_events(events), check_target(url)
        description, status = R.check_description(description), _webhook_status(status)
        _check_secret(secret)
        model_name = R.check_model_name(model_name) if model_name is not None else None
        webhook_id = uuid.uuid4().hex
        stored_secret = _secret_details(secret)

        def decide(s: Any, u: str) -> Decision:
            _check_webhook_rights(s, u, model_name)
            return S.Decision(action="CREATE_WEBHOOK", name=model_name or "",
                            details={"webhook_id": webhook_id, "events": list(events_t), "url": url,
                                     "status": status, "description": description, **stored_secret})

        self._commit(decide)
        return self._registry.state(refresh=False).webhooks[webhook_id].webhook

    def update_registry_webhook(self, webhook_id: str, events: Optional[Sequence[str]] = None,
                                url: Optional[str] = None, secret: Optional[str] = None,
                                status: Optional[str] = None, description: Optional[str] = None) -> Webhook:
        from deltaflow.registry.webhooks import check_target

        _check_secret(secret)
        changes = {"webhook_id": webhook_id,
                   "events": list(R.check_events(events)) if events is not None else None,
                   "url": check_target(url) if url is not None else None,
                   "status": _webhook_status(status) if status is not None else None,
                   "description": R.check_description(description), **_secret_details(secret)}

        def decide(s: Any, u: str) -> Decision:
            hook = _need_webhook(s, webhook_id)
            _check_webhook_rights(s, u, hook.webhook.model_name)
            return S.Decision(action="UPDATE_WEBHOOK", name=hook.webhook.model_name or "", details=changes)

        self._commit(decide)
        return self._registry.state(refresh=False).webhooks[webhook_id].webhook

    def delete_registry_webhook(self, webhook_id: str) -> None:
        def decide(s: Any, u: str) -> Decision:
            hook = _need_webhook(s, webhook_id)
            _check_webhook_rights(s, u, hook.webhook.model_name)
            return S.Decision(action="DELETE_WEBHOOK", name=hook.webhook.model_name or "",
                            details={"webhook_id": webhook_id})

        self._commit(decide)

    def list_registry_webhooks(self, model_name: Optional[str] = None) -> list[Webhook]:
        """The webhooks you may manage (a URL can carry a token): a model's need CAN_MANAGE on it,
        registry-wide ones registry admin. Without ``model_name``, every such webhook."""
        user = _acting_user()
        if model_name is None:
            state = self._registry.state()
            hooks = [h.webhook for h in state.webhooks.values() if _may_see_webhook(state, user, h.webhook.model_name)]
        else:
            state = self._read(model_name)
            _check_webhook_rights(state, user, model_name, "listing")
            hooks = [h.webhook for h in state.webhooks.values() if h.webhook.model_name == model_name]
        return sorted(hooks, key=lambda w: (w.creation_timestamp, w.webhook_id))

    def list_webhook_deliveries(self, webhook_id: Optional[str] = None) -> list[WebhookDelivery]:
        """Recorded delivery attempts of the webhooks you may manage, oldest first (call
        :meth:`wait_for_webhooks` first to see the outcome of changes just made)."""
        user = _acting_user()
        state = self._registry.state()
        if webhook_id is not None:
            _check_webhook_rights(state, user, _need_webhook(state, webhook_id).webhook.model_name, "reading")
            visible = None
        else:
            visible = {h for h, hook in state.webhooks.items() if _may_see_webhook(state, user, hook.webhook.model_name)}
        return [E.WebhookDelivery(timestamp=row.pop("event_time"), **row)
                for row in self._registry.deliveries(webhook_id) if visible is None or row["webhook_id"] in visible]

    def wait_for_webhooks(self, timeout: Optional[float] = None) -> bool:
        """Wait until this process's pending webhook deliveries and retries are finished."""
        return self._registry.wait_for_webhooks(timeout)


def _lineage(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The events of the model now called ``name``, under every name it had, back to its creation
    (a deleted model that had the same name earlier is another model)."""
    current, out = name, []
    for event in reversed(events):
        if event["action"] == "RENAME_REGISTERED_MODEL" and event["details"].get("new_name") == current:
            out.append(event)
            current = event["name"]
        elif event["name"] == current:
            out.append(event)
            if event["action"] == "CREATE_REGISTERED_MODEL":
                break
    return out[::-1]


def _check_secret(secret: Any) -> None:
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise InvalidArgument(f"webhook secret must be a non-empty string (or None for unsigned deliveries), "
                              f"got {type(secret).__name__}")


def _webhook_status(status: Any) -> str:
    if status not in ("ACTIVE", "DISABLED"):
        raise InvalidArgument(f"webhook status {status!r} is not ACTIVE or DISABLED")
    return status


def _need_webhook(state: Any, webhook_id: str) -> Any:
    hook = state.webhooks.get(webhook_id) if isinstance(webhook_id, str) else None
    if hook is None:
        raise NotFound(f"there is no registry webhook {webhook_id!r}")
    return hook


def _check_webhook_rights(state: Any, user: str, model_name: Optional[str], what: str = "managing") -> None:
    if model_name is None:
        S.need_admin(state, user, f"{what} a registry-wide webhook (give model_name for a model's webhook)")
        return
    S.need_level(state, S.need_model(state, model_name), user, "CAN_MANAGE", f"{what} the model's webhooks")


def _may_see_webhook(state: Any, user: str, model_name: Optional[str]) -> bool:
    if user in state.admins:
        return True
    model = state.models.get(model_name) if model_name is not None else None
    return model is not None and R.level_at_least(state.permission_of(model, user), "CAN_MANAGE")


def _secret_details(secret: Optional[str]) -> dict[str, Any]:
    """How a webhook secret is stored: encrypted with the registry key, never in plain text."""
    if secret is None:
        return {}
    from deltaflow.registry import _integrity

    key = _integrity.require_key("storing a webhook secret")
    return {"secret_enc": _integrity.encrypt_secret(key, secret)}
