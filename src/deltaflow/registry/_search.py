"""search_registered_models / search_model_versions over the folded registry (it is small: the whole
state is in memory after one incremental read). Filters use the shared MLflow grammar; only models
the current user can read are returned."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from deltaflow.entities import PagedList
from deltaflow.registry import _rules as R
from deltaflow.registry.state import RegistryState

__all__ = ["search_models", "search_versions"]


def _readable(state: RegistryState) -> list[Any]:
    from deltaflow.config import acting_user

    user = acting_user()
    return [m for m in state.models.values() if R.level_at_least(state.permission_of(m, user), "CAN_READ")]


def _sort_key(value: Any) -> tuple:
    return (value is None, value if value is not None else 0)


def _page(items: list[Any], orders: Sequence[Any], value: Callable[[Any, str, str], Any], default: Sequence[Any],
          max_results: int, page_token: Optional[str]) -> PagedList:
    from deltaflow.store.tracking_store import decode_page_token, encode_page_token

    offset = decode_page_token(page_token)
    for order in reversed(list(orders) + list(default)):
        items.sort(key=lambda x, o=order: _sort_key(value(x, o.entity, o.key)), reverse=not order.ascending)
    page = items[offset:offset + max_results]
    token = encode_page_token(offset + max_results) if len(items) > offset + max_results else None
    return PagedList(page, token)


def search_models(state: RegistryState, filter_string: Optional[str], max_results: int,
                  order_by: Optional[Sequence[str]], page_token: Optional[str]) -> PagedList:
    from deltaflow.tracking._search import (
        OrderBy,
        evaluate,
        parse_registered_model_filter,
        parse_registered_model_order_by,
    )

    clauses = parse_registered_model_filter(filter_string)
    orders = parse_registered_model_order_by(list(order_by) if order_by else None)

    def value(entity: Any, kind: str, key: str) -> Any:
        if kind == "tag":
            return entity.tags.get(key)
        return getattr(entity, key)

    models = [state.model_entity(m) for m in _readable(state)]
    models = [m for m in models if all(evaluate(value(m, c.entity, c.key), c) for c in clauses)]
    return _page(models, orders, value, [OrderBy("attribute", "name", True)], max_results, page_token)


_VERSION_ATTRS = {"version_number": "version", "source_path": "source", "current_stage": "current_stage"}


def search_versions(state: RegistryState, filter_string: Optional[str], max_results: int,
                    order_by: Optional[Sequence[str]], page_token: Optional[str]) -> PagedList:
    from deltaflow.tracking._search import (
        OrderBy,
        evaluate,
        parse_model_version_filter,
        parse_model_version_order_by,
    )

    clauses = parse_model_version_filter(filter_string)
    orders = parse_model_version_order_by(list(order_by) if order_by else None)

    def value(entity: Any, kind: str, key: str) -> Any:
        if kind == "tag":
            return entity.tags.get(key)
        return getattr(entity, _VERSION_ATTRS.get(key, key))

    versions = [state.version_entity(m, v) for m in _readable(state) for v in m.versions.values()]
    versions = [v for v in versions if all(evaluate(value(v, c.entity, c.key), c) for c in clauses)]
    # MLflow's default order: newest version first within a name.
    default = [OrderBy("attribute", "name", True), OrderBy("attribute", "version_number", False)]
    return _page(versions, orders, value, default, max_results, page_token)
