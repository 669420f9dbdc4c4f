"""Decisions: each registry change checked against the current state and turned into one event.

Each function takes the folded state and the acting user and either raises (InvalidArgument,
NotFound, AlreadyExists, InvalidState, PermissionDenied: nothing is written) or returns the event to
commit. They run inside :meth:`RegistryStore.commit`, so they always see the latest revision.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from deltaflow.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound
from deltaflow.registry import _rules as R
from deltaflow.registry.state import RegistryState
from deltaflow.registry.store import Decision, default_permission, need_level, need_model, need_version

__all__ = ["create_model", "rename_model", "create_version", "transition", "request_transition",
           "resolve_requests", "cancel_request"]


def create_model(state: RegistryState, user: str, name: str, description: Optional[str],
                 tags: dict[str, str], exist_ok: bool = False) -> Optional[Decision]:
    if name in state.models:
        if exist_ok:
            return None
        raise AlreadyExists(f"registered model {name!r} already exists; pick another name or add a version to it")
    level = default_permission()
    permissions = {R.ALL_USERS: level} if level is not None and user != R.ALL_USERS else {}
    return Decision(action="CREATE_REGISTERED_MODEL", name=name,
                    details={"description": description, "tags": tags, "permissions": permissions})


def rename_model(state: RegistryState, user: str, name: str, new_name: str) -> Decision:
    model = need_model(state, name)
    need_level(state, model, user, "CAN_MANAGE", "renaming")
    if new_name == name:
        raise InvalidArgument(f"registered model {name!r} already has that name")
    if new_name in state.models:
        raise AlreadyExists(f"cannot rename {name!r} to {new_name!r}: a registered model has that name")
    return Decision(action="RENAME_REGISTERED_MODEL", name=name, details={"new_name": new_name})


def create_version(state: RegistryState, user: str, name: str, source: str, storage_location: str,
                   run_id: Optional[str], run_link: Optional[str], description: Optional[str],
                   tags: dict[str, str]) -> Decision:
    model = need_model(state, name)
    need_level(state, model, user, "CAN_EDIT", "creating a model version")
    return Decision(action="CREATE_MODEL_VERSION", name=name, version=model.next_version, to_stage="None",
                    details={"source": source, "storage_location": storage_location, "run_id": run_id,
                             "run_link": run_link, "description": description, "tags": tags})


def _archived(state: RegistryState, name: str, version: int, stage: str, archive_existing: bool) -> list:
    if not archive_existing:
        return []
    if stage not in ("Staging", "Production"):
        raise InvalidArgument(f"archive_existing_versions=True needs a target stage of Staging or Production, "
                              f"not {stage!r} (only those stages are archived from)")
    model = state.models[name]
    return [[v.version, v.stage] for v in sorted(model.versions.values(), key=lambda v: v.version)
            if v.stage == stage and v.version != version]


def transition(state: RegistryState, user: str, name: str, version: int, stage: str,
               archive_existing: bool, comment: Optional[str]) -> Decision:
    model, v = need_version(state, name, version)
    need_level(state, model, user, R.stage_level(v.stage, stage), f"moving version {version} from {v.stage} to {stage}")
    archived = _archived(state, name, version, stage, archive_existing)
    return Decision(action="TRANSITION_STAGE", name=name, version=version, from_stage=v.stage, to_stage=stage,
                    comment=comment, details={"archived": archived})


def request_transition(state: RegistryState, user: str, name: str, version: int, stage: str,
                       comment: Optional[str]) -> Decision:
    model, v = need_version(state, name, version)
    need_level(state, model, user, "CAN_READ", "requesting a stage transition")
    if v.stage == stage:
        raise InvalidState(f"version {version} of {name!r} is already in {stage}")
    mine = [r for r in model.requests.values()
            if r.version == version and r.to_stage == stage and r.user_id == user and r.status == "PENDING"]
    if mine:
        raise AlreadyExists(f"user {user!r} already has a pending request to move version {version} of {name!r} "
                            f"to {stage} (request {mine[0].request_id})")
    return Decision(action="CREATE_TRANSITION_REQUEST", name=name, version=version, from_stage=v.stage,
                    to_stage=stage, comment=comment, details={"request_id": uuid.uuid4().hex})


def _pending(state: RegistryState, name: str, version: int, stage: str) -> list[Any]:
    model = state.models[name]
    return [r for r in model.requests.values()
            if r.version == version and r.to_stage == stage and r.status == "PENDING"]


def resolve_requests(state: RegistryState, user: str, name: str, version: int, stage: str, approve: bool,
                     archive_existing: bool, comment: Optional[str]) -> Decision:
    """Approve (and apply) or reject every pending request to move ``version`` to ``stage``."""
    model, v = need_version(state, name, version)
    verb = "approving" if approve else "rejecting"
    need_level(state, model, user, R.stage_level(v.stage, stage), f"{verb} a transition from {v.stage} to {stage}")
    pending = _pending(state, name, version, stage)
    if not pending:
        raise NotFound(f"there is no pending request to move version {version} of {name!r} to {stage}")
    ids = sorted(r.request_id for r in pending)
    if not approve:
        return Decision(action="REJECT_TRANSITION_REQUEST", name=name, version=version, from_stage=v.stage,
                        to_stage=stage, comment=comment, details={"request_ids": ids})
    archived = _archived(state, name, version, stage, archive_existing)
    return Decision(action="APPROVE_TRANSITION_REQUEST", name=name, version=version, from_stage=v.stage,
                    to_stage=stage, comment=comment, details={"request_ids": ids, "archived": archived})


def cancel_request(state: RegistryState, user: str, name: str, version: int, stage: str,
                   creator: Optional[str], comment: Optional[str]) -> Decision:
    model, v = need_version(state, name, version)
    creator = creator or user
    need_level(state, model, user, "CAN_READ", "cancelling a transition request")
    if creator != user:
        need_level(state, model, user, "CAN_MANAGE", f"cancelling {creator!r}'s transition request")
    mine = [r for r in _pending(state, name, version, stage) if r.user_id == creator]
    if not mine:
        raise NotFound(f"user {creator!r} has no pending request to move version {version} of {name!r} to {stage}")
    return Decision(action="CANCEL_TRANSITION_REQUEST", name=name, version=version, from_stage=v.stage,
                    to_stage=stage, comment=comment, details={"request_ids": [r.request_id for r in mine]})
