"""The registry's pure parts, without any storage: rules, the fold of the event log, webhook
signing and matching, and the registry search grammars."""

from __future__ import annotations

import json
import time

import pytest

from deltaflow.errors import InvalidArgument
from deltaflow.registry import _rules as R
from deltaflow.registry.state import RegistryState, activity_of
from deltaflow.registry.webhooks import deliveries_for, sign, verify_signature
from deltaflow.tracking._search import (
    evaluate,
    parse_model_version_filter,
    parse_model_version_order_by,
    parse_registered_model_filter,
)


def test_rules_accept_and_refuse():
    assert R.check_model_name("main.ml.churn") == "main.ml.churn"
    for bad in ("", " x", "a/b", "a@b", "a:b", "a%b", "a.b", "a..b.c", "x" * 300, 7):
        with pytest.raises(InvalidArgument):
            R.check_model_name(bad)
    assert R.check_stage("PRODUCTION") == "Production" and R.check_stage("none") == "None"
    with pytest.raises(InvalidArgument, match="'Prod' is not one of None, Staging, Production, Archived"):
        R.check_stage("Prod")
    assert R.check_version("12") == 12
    for bad in (0, -1, "v1", True, 1.5, None):
        with pytest.raises(InvalidArgument):
            R.check_version(bad)
    for bad in ("latest", "Latest", "v3", "V10", "", "a b", "x" * 256):
        with pytest.raises(InvalidArgument):
            R.check_alias(bad)
    assert R.check_alias("champion-2") == "champion-2"
    assert R.check_level("can_edit") == "CAN_EDIT"
    assert R.level_at_least("CAN_MANAGE", "CAN_MANAGE_PRODUCTION_VERSIONS")
    assert not R.level_at_least("CAN_MANAGE_STAGING_VERSIONS", "CAN_MANAGE_PRODUCTION_VERSIONS")
    assert not R.level_at_least(None, "CAN_READ")
    assert R.stage_level("Staging", "Production") == "CAN_MANAGE_PRODUCTION_VERSIONS"
    assert R.stage_level("Production", "Archived") == "CAN_MANAGE_PRODUCTION_VERSIONS"
    assert R.stage_level("None", "Staging") == "CAN_MANAGE_STAGING_VERSIONS"
    with pytest.raises(InvalidArgument, match="MODEL_DELETED"):
        R.check_events(["MODEL_DELETED"])
    with pytest.raises(InvalidArgument, match="http"):
        R.check_url("file:///etc/passwd")


def _event(revision, action, name="m", user="u", version=None, **extra):
    details = extra.pop("details", {})
    return {"revision": revision, "event_id": f"e{revision}", "event_time": 1000 + revision, "user_id": user,
            "action": action, "name": name, "version": version, "from_stage": extra.get("from_stage"),
            "to_stage": extra.get("to_stage"), "comment": extra.get("comment"), "details": details}


def _version(revision, number, name="m"):
    return _event(revision, "CREATE_MODEL_VERSION", name=name, version=number,
                  details={"source": "src", "storage_location": f"loc{number}"})


def test_fold_versions_stages_aliases_and_rename():
    state = RegistryState()
    state.apply_all([
        _event(1, "CREATE_REGISTERED_MODEL", user="owner", details={"permissions": {"users": "CAN_READ"}}),
        _version(2, 1), _version(3, 2), _version(4, 3),
        _event(5, "TRANSITION_STAGE", version=1, from_stage="None", to_stage="Production"),
        _event(6, "TRANSITION_STAGE", version=2, from_stage="None", to_stage="Production",
               details={"archived": [[1, "Production"]]}),
        _event(7, "SET_ALIAS", version=2, details={"alias": "champion"}),
        _event(8, "DELETE_MODEL_VERSION", version=3),
        _event(9, "RENAME_REGISTERED_MODEL", details={"new_name": "m2"}),
    ])
    assert state.revision == 9 and list(state.models) == ["m2"]
    model = state.models["m2"]
    assert {v: x.stage for v, x in model.versions.items()} == {1: "Archived", 2: "Production"}
    assert model.next_version == 4  # deleted numbers are never reused
    assert model.aliases == {"champion": 2} and model.updated == 1009
    entity = state.model_entity(model)
    assert [(v.version, v.current_stage) for v in entity.latest_versions] == [(1, "Archived"), (2, "Production")]
    assert state.permission_of(model, "owner") == "CAN_MANAGE"
    assert state.permission_of(model, "someone") == "CAN_READ"
    assert state.admins == {"owner"}  # whoever wrote revision 1 created the registry: its first admin
    state.apply(_event(10, "ADD_REGISTRY_ADMIN", name="", details={"principal": "someone"}))
    assert state.permission_of(model, "someone") == "CAN_MANAGE"
    state.apply(_event(11, "ADD_REGISTRY_ADMIN", name="", details={"principal": "users"}))  # reserved: ignored
    assert state.admins == {"owner", "someone"}
    with pytest.raises(ValueError, match="applied at revision"):
        state.apply(_event(13, "TRANSITION_STAGE"))  # a gap is refused, never silently folded


def test_fold_requests_and_activity_views():
    state = RegistryState()
    state.apply_all([
        _event(1, "CREATE_REGISTERED_MODEL"), _version(2, 1),
        _event(3, "CREATE_TRANSITION_REQUEST", user="ana", version=1, to_stage="Production",
               details={"request_id": "r1"}),
        _event(4, "APPROVE_TRANSITION_REQUEST", user="paula", version=1, from_stage="None", to_stage="Production",
               comment="ok", details={"request_ids": ["r1"], "archived": []}),
        _event(5, "FUTURE_ACTION_FROM_A_NEWER_RELEASE"),
    ])
    request = state.models["m"].requests["r1"]
    assert (request.status, request.resolved_by, request.resolution_comment) == ("APPROVED", "paula", "ok")
    assert state.models["m"].versions[1].stage == "Production" and state.revision == 5
    system = activity_of(_event(6, "TRANSITION_STAGE", version=2, to_stage="Production",
                                details={"archived": [[1, "Production"]], "secret": "x"}), for_version=1)
    assert (system.activity_type, system.version, system.from_stage, system.to_stage) == (
        "SYSTEM_TRANSITION", 1, "Production", "Archived")
    assert "secret" not in system.details


def test_webhook_signature_and_matching():
    body = b'{"event": "MODEL_VERSION_CREATED"}'
    stamp = int(time.time())
    headers = {"X-Deltaflow-Signature": sign("k", body, stamp, "d1", "MODEL_VERSION_CREATED"),
               "x-deltaflow-timestamp": str(stamp), "X-Deltaflow-Delivery": "d1",
               "X-Deltaflow-Event": "MODEL_VERSION_CREATED"}
    assert verify_signature("k", body, headers)
    assert not verify_signature("k2", body, headers)
    assert not verify_signature("k", body, {"X-Deltaflow-Signature": headers["X-Deltaflow-Signature"]})
    assert not verify_signature("k", body, headers, now=stamp + 301)

    state = RegistryState()
    state.apply_all([
        _event(1, "CREATE_REGISTERED_MODEL"),
        _event(2, "CREATE_WEBHOOK", name="m", details={"webhook_id": "w1", "url": "http://h/1", "secret": "s",
                                                       "events": ["MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"]}),
        _event(3, "CREATE_WEBHOOK", name="", details={"webhook_id": "w2", "url": "http://h/2", "secret": None,
                                                      "events": ["MODEL_VERSION_TRANSITIONED_STAGE"]}),
        _event(4, "CREATE_WEBHOOK", name="other", details={"webhook_id": "w3", "url": "http://h/3",
                                                           "events": ["MODEL_VERSION_TRANSITIONED_STAGE"]}),
    ])
    moved = _event(5, "TRANSITION_STAGE", version=1, from_stage="None", to_stage="Production", comment="go")
    deliveries = {(d.webhook_id, d.event) for d in deliveries_for(moved, state)}
    assert deliveries == {("w1", "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"),
                          ("w2", "MODEL_VERSION_TRANSITIONED_STAGE")}  # w3 watches another model
    payload = json.loads(next(d.body for d in deliveries_for(moved, state) if d.webhook_id == "w1"))
    assert len(payload.pop("delivery_id")) == 32
    assert payload == {"event": "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "webhook_id": "w1",
                       "event_timestamp": 1005, "revision": 5, "model_name": "m", "user_id": "u", "version": "1",
                       "from_stage": "None", "to_stage": "Production", "text": "go"}
    assert deliveries_for(_event(6, "UPDATE_MODEL_VERSION", version=1), state) == []


def test_registry_search_grammars():
    clauses = parse_model_version_filter("name = 'm' AND version_number >= 2 AND run_id IN ('a', 'b') "
                                         "AND tags.team LIKE 'gr%'")
    assert [(c.key, c.op) for c in clauses] == [("name", "="), ("version_number", ">="), ("run_id", "IN"),
                                                ("team", "LIKE")]
    assert evaluate(3, clauses[1]) and not evaluate(1, clauses[1]) and evaluate("growth", clauses[3])
    assert parse_model_version_order_by(["version_number DESC"])[0].ascending is False
    assert parse_registered_model_filter("tags.x IS NULL")[0].op == "IS NULL"
    for bad in ("name = 'x' OR 1=1", "metrics.a > 1", "version_number = 'x'", "run_id IN 'a'", "name = 'x"):
        with pytest.raises(InvalidArgument):
            parse_model_version_filter(bad)
