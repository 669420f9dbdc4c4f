"""The model registry: registered models, versions, stages, aliases and governance on Delta tables.

Use it through :class:`deltaflow.MlflowClient` (``create_registered_model``,
``transition_model_version_stage``, ``approve_transition_request`` ...) or the fluent
``deltaflow.register_model``. See ``store.py`` for how changes are serialised. The names below load
on first use, so ``import deltaflow`` does not pay for the registry.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Activity": "entities", "Comment": "entities", "ModelPermission": "entities", "ModelVersion": "entities",
    "RegisteredModel": "entities", "TransitionRequest": "entities", "Webhook": "entities",
    "WebhookDelivery": "entities", "PERMISSION_LEVELS": "_rules", "STAGES": "_rules", "WEBHOOK_EVENTS": "_rules",
    "verify_signature": "webhooks", "sign": "webhooks", "DeliveryGuard": "webhooks",
    "RegistryIntegrity": "entities",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deltaflow.registry' has no attribute {name!r}")
    return getattr(importlib.import_module(f"deltaflow.registry.{module}"), name)
