"""Registry entities: plain dataclasses with MLflow's (and Databricks') field names.

``RegisteredModel`` and ``ModelVersion`` carry the fields of ``mlflow.entities.model_registry``;
``TransitionRequest``, ``Activity``, ``Comment`` and ``Webhook`` those of the Databricks workspace
registry API. Versions are ints (MLflow's own stores return ints too; ``str(version)`` gives the REST
form). Nothing here touches storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "RegisteredModel", "ModelVersion", "TransitionRequest", "Activity", "Comment", "Webhook",
    "WebhookDelivery", "ModelPermission",
]  # fmt: skip


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    creation_timestamp: int
    last_updated_timestamp: int
    current_stage: str = "None"
    description: Optional[str] = None
    user_id: Optional[str] = None
    source: Optional[str] = None  # the model URI it was registered from
    storage_location: Optional[str] = None  # where the registry keeps its own copy
    run_id: Optional[str] = None
    run_link: Optional[str] = None
    status: str = "READY"
    status_message: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: Optional[str] = None
    user_id: Optional[str] = None  # the creator
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_versions: list[ModelVersion] = field(default_factory=list)  # newest per stage


@dataclass(frozen=True)
class TransitionRequest:
    request_id: str
    name: str
    version: int
    to_stage: str
    user_id: str
    creation_timestamp: int
    comment: Optional[str] = None
    status: str = "PENDING"  # PENDING, APPROVED, REJECTED, CANCELLED
    resolved_by: Optional[str] = None
    resolved_timestamp: Optional[int] = None
    resolution_comment: Optional[str] = None


@dataclass(frozen=True)
class Activity:
    """One registry change, as the audit table records it."""

    revision: int
    timestamp: int
    user_id: str
    action: str  # CREATE_MODEL_VERSION, TRANSITION_STAGE, APPROVE_TRANSITION_REQUEST, ...
    activity_type: Optional[str]  # Databricks' name: APPLIED_TRANSITION, REQUESTED_TRANSITION, ...
    name: str
    version: Optional[int] = None
    from_stage: Optional[str] = None
    to_stage: Optional[str] = None
    comment: Optional[str] = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Comment:
    comment_id: str
    name: str
    version: int
    user_id: str
    comment: str
    creation_timestamp: int
    last_updated_timestamp: int


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    events: tuple[str, ...]
    url: str
    model_name: Optional[str]  # None: every model in the registry
    status: str  # ACTIVE, DISABLED
    description: Optional[str]
    creation_timestamp: int
    last_updated_timestamp: int
    user_id: str
    has_secret: bool = True

    def __repr__(self) -> str:  # never show the secret (it is not even held here)
        return (f"Webhook(webhook_id={self.webhook_id!r}, events={self.events!r}, url={self.url!r}, "
                f"model_name={self.model_name!r}, status={self.status!r})")


@dataclass(frozen=True)
class WebhookDelivery:
    delivery_id: str
    webhook_id: str
    event: str
    revision: int
    attempt: int
    status: str  # DELIVERED, FAILED (will retry), GAVE_UP
    http_status: Optional[int]
    error: Optional[str]
    timestamp: int


@dataclass(frozen=True)
class ModelPermission:
    principal: str  # a user name, or "users" for every user
    level: str


@dataclass(frozen=True)
class RegistryIntegrity:
    """What :meth:`verify_registry` found: ``signed`` (rows must carry a valid signature made with
    the registry key ``key_id``), the folded ``revision``, and the ``rejected`` rows (each with its
    revision, event id, claimed user and action, and why it was ignored)."""

    signed: bool
    key_id: Optional[str]
    revision: int
    rejected: list[Any]
