"""Governance on a real store: the approval workflow, permissions, comments, the audit table, and
webhooks delivered to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time

import pytest

from deltaflow.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound, PermissionDenied
from deltaflow.registry import verify_signature
from tests.registry.conftest import Receiver as _Receiver
from tests.registry.conftest import log_size

pytestmark = pytest.mark.parametrize("engine", ["rust"], indirect=True)


@pytest.fixture()
def churn(client, model_dir, user):
    """Model 'churn' owned by 'owner', two versions; paula may manage Production, sam Staging."""
    client.create_registered_model("churn")
    client.create_model_version("churn", model_dir(1.0))
    client.create_model_version("churn", model_dir(2.0))
    client.set_registered_model_permission("churn", "paula", "CAN_MANAGE_PRODUCTION_VERSIONS")
    client.set_registered_model_permission("churn", "sam", "CAN_MANAGE_STAGING_VERSIONS")
    return "churn"


def test_approval_workflow(client, churn, user):
    user("alice")  # every user holds CAN_READ on a new model
    assert client.get_registered_model_permission_level("churn") == "CAN_READ"
    request = client.create_transition_request("churn", 1, "production", comment="AUC up 3 points")
    assert (request.status, request.user_id, request.to_stage) == ("PENDING", "alice", "Production")
    before = log_size(client)
    for attempt in (lambda: client.approve_transition_request("churn", 1, "Production"),
                    lambda: client.transition_model_version_stage("churn", 1, "Production")):
        with pytest.raises(PermissionDenied) as denied:
            attempt()
        assert "user 'alice' lacks CAN_MANAGE_PRODUCTION_VERSIONS on registered model 'churn' (holds CAN_READ)" \
            in str(denied.value)
    user("sam")  # the staging level does not reach Production
    with pytest.raises(PermissionDenied, match="user 'sam' lacks CAN_MANAGE_PRODUCTION_VERSIONS"):
        client.approve_transition_request("churn", 1, "Production")
    assert log_size(client) == before  # refusals wrote nothing
    assert client.get_model_version("churn", 1).current_stage == "None"

    user("paula")
    approved = client.approve_transition_request("churn", 1, "Production", comment="approved after review")
    assert approved.current_stage == "Production"
    (resolved,) = client.list_transition_requests("churn", 1, status=None)
    assert (resolved.status, resolved.resolved_by, resolved.resolution_comment) == (
        "APPROVED", "paula", "approved after review")
    assert client.list_transition_requests("churn") == []  # nothing pending any more

    # Staging moves need only the staging level; a rejected request changes no stage.
    user("alice")
    client.create_transition_request("churn", 2, "Staging")
    user("sam")
    client.reject_transition_request("churn", 2, "Staging", comment="needs calibration")
    assert client.get_model_version("churn", 2).current_stage == "None"
    user("alice")
    client.create_transition_request("churn", 2, "Staging")
    with pytest.raises(AlreadyExists, match="already has a pending request"):
        client.create_transition_request("churn", 2, "Staging")
    client.cancel_transition_request("churn", 2, "Staging")
    user("sam")
    with pytest.raises(NotFound, match="no pending request"):
        client.approve_transition_request("churn", 2, "Staging")
    with pytest.raises(InvalidState, match="already in Production"):
        client.create_transition_request("churn", 1, "Production")

    # Every step is in the audit trail with the user who took it.
    steps = [(a.user_id, a.activity_type, a.from_stage, a.to_stage, a.comment)
             for a in client.get_model_version_activity("churn", 1)]
    assert steps[1:] == [
        ("alice", "REQUESTED_TRANSITION", "None", "Production", "AUC up 3 points"),
        ("paula", "APPROVED_REQUEST", "None", "Production", "approved after review"),
    ]
    assert steps[0][:2] == ("owner", None)  # the version's creation
    v2 = [(a.user_id, a.activity_type) for a in client.get_model_version_activity("churn", 2)][1:]
    assert v2 == [("alice", "REQUESTED_TRANSITION"), ("sam", "REJECTED_REQUEST"),
                  ("alice", "REQUESTED_TRANSITION"), ("alice", "CANCELLED_REQUEST")]


def test_audit_table_is_the_delta_log_of_changes(client, churn, user, store_uri):
    """The audit trail is a plain Delta table: queryable, one row per change, append-only history."""
    from deltalake import DeltaTable

    user("paula")
    client.transition_model_version_stage("churn", 2, "Production", comment="hotfix")
    table = DeltaTable(client._store.location.table_path("registry_events"))
    rows = sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["revision"])
    assert [r["revision"] for r in rows] == list(range(1, len(rows) + 1))
    last = rows[-1]
    assert (last["user_id"], last["action"], last["name"], last["version"], last["from_stage"], last["to_stage"],
            last["comment"]) == ("paula", "TRANSITION_STAGE", "churn", 2, "None", "Production", "hotfix")
    assert [r["action"] for r in rows[:3]] == ["CREATE_REGISTERED_MODEL", "CREATE_MODEL_VERSION",
                                               "CREATE_MODEL_VERSION"]
    # Tamper-evidence: every commit to the table is an insert-only MERGE (or its creation); no row was
    # ever updated or deleted, which an UPDATE/DELETE/overwrite would show in the history.
    operations = {h["operation"] for h in table.history()}
    assert operations <= {"CREATE TABLE", "MERGE"}, operations
    for h in table.history():
        if h["operation"] == "MERGE":
            metrics = h["operationMetrics"]
            assert metrics.get("num_target_rows_updated", 0) == 0 and metrics.get("num_target_rows_deleted", 0) == 0
    owner_view = client.get_registry_activity("churn")
    assert [a.revision for a in owner_view] == [r["revision"] for r in rows]
    with pytest.raises(PermissionDenied, match="not a registry admin"):
        client.get_registry_activity()


def test_permissions(client, churn, model_dir, user, monkeypatch):
    user("reader")
    for call, level in [
        (lambda: client.create_model_version("churn", model_dir()), "CAN_EDIT"),
        (lambda: client.set_model_version_tag("churn", 1, "k", "v"), "CAN_EDIT"),
        (lambda: client.update_registered_model("churn", "x"), "CAN_EDIT"),
        (lambda: client.rename_registered_model("churn", "other"), "CAN_MANAGE"),
        (lambda: client.delete_model_version("churn", 1), "CAN_MANAGE"),
        (lambda: client.set_registered_model_permission("churn", "reader", "CAN_MANAGE"), "CAN_MANAGE"),
        (lambda: client.set_registered_model_alias("churn", "champion", 1), "CAN_MANAGE_PRODUCTION_VERSIONS"),
        (lambda: client.transition_model_version_stage("churn", 1, "Staging"), "CAN_MANAGE_STAGING_VERSIONS"),
    ]:
        with pytest.raises(PermissionDenied, match=f"user 'reader' lacks {level} on registered model 'churn'"):
            call()
    user("owner")
    client.set_registered_model_permission("churn", "reader", "CAN_EDIT")
    user("reader")
    assert client.create_model_version("churn", model_dir()).version == 3  # now allowed
    user("owner")
    client.set_registered_model_permission("churn", "users", None)  # revoke everyone's CAN_READ
    user("stranger")
    with pytest.raises(PermissionDenied, match="user 'stranger' lacks CAN_READ"):
        client.get_registered_model("churn")
    assert client.search_registered_models() == [] and client.search_model_versions() == []
    user("owner")  # created the registry, so its first admin: adds stranger as an admin
    client.add_registry_admin("stranger")
    user("stranger")
    assert client.get_registered_model_permission_level("churn") == "CAN_MANAGE"  # admins manage everything
    assert len(client.search_model_versions()) == 3
    user("owner")
    with pytest.raises(InvalidArgument, match="permission level 'CAN_FLY' is not one of"):
        client.set_registered_model_permission("churn", "x", "CAN_FLY")
    with pytest.raises(NotFound, match="'nobody' holds no permission"):
        client.set_registered_model_permission("churn", "nobody", None)
    assert {(p.principal, p.level) for p in client.get_registered_model_permissions("churn")} == {
        ("owner", "CAN_MANAGE"), ("paula", "CAN_MANAGE_PRODUCTION_VERSIONS"),
        ("sam", "CAN_MANAGE_STAGING_VERSIONS"), ("reader", "CAN_EDIT")}


def test_comments(client, churn, user):
    user("alice")
    first = client.create_comment("churn", 1, "drift on segment B?")
    user("bob")
    client.create_comment("churn", 1, "looked fine to me")
    with pytest.raises(PermissionDenied, match="changing 'alice'.s comment"):
        client.update_comment("churn", first.comment_id, "hijacked")
    user("alice")
    edited = client.update_comment("churn", first.comment_id, "drift on segment B fixed")
    assert edited.comment == "drift on segment B fixed" and edited.user_id == "alice"
    assert [c.comment for c in client.list_comments("churn", 1)] == ["drift on segment B fixed", "looked fine to me"]
    client.delete_comment("churn", first.comment_id)
    assert [c.user_id for c in client.list_comments("churn", 1)] == ["bob"]
    with pytest.raises(InvalidArgument, match="non-empty"):
        client.create_comment("churn", 1, "   ")
    kinds = [a.activity_type for a in client.get_model_version_activity("churn", 1)]
    assert kinds.count("NEW_COMMENT") == 2


# -- webhooks --------------------------------------------------------------------------------
@pytest.fixture()
def fast_retries(monkeypatch):
    monkeypatch.setenv("DELTAFLOW_WEBHOOK_BACKOFF_S", "0.05")
    monkeypatch.setenv("DELTAFLOW_WEBHOOK_ATTEMPTS", "3")


def test_webhook_signed_and_retried_after_a_500(client, churn, model_dir, user, fast_retries):
    receiver = _Receiver(statuses=[500, 200])
    try:
        hook = client.create_registry_webhook(["MODEL_VERSION_CREATED"], receiver.url, secret="s3cret",
                                              model_name="churn")
        assert "s3cret" not in repr(hook) and hook.has_secret
        version = client.create_model_version("churn", model_dir())
        assert client.wait_for_webhooks(30)
    finally:
        receiver.close()
    assert len(receiver.requests) == 2  # the 500, then the retry that succeeded
    for headers, body in receiver.requests:
        payload = json.loads(body)
        assert (payload["event"], payload["model_name"], payload["version"], payload["user_id"]) == (
            "MODEL_VERSION_CREATED", "churn", str(version.version), "owner")
        assert verify_signature("s3cret", body, headers)
        assert not verify_signature("wrong", body, headers)
        assert not verify_signature("s3cret", body + b" ", headers)  # any change to the body breaks it
        assert not verify_signature("s3cret", body, headers, now=time.time() + 3600)  # a stale replay
    deliveries = client.list_webhook_deliveries(hook.webhook_id)
    assert [(d.attempt, d.status, d.http_status) for d in deliveries] == [(1, "FAILED", 500), (2, "DELIVERED", 200)]
    assert all(d.revision == deliveries[0].revision and d.event == "MODEL_VERSION_CREATED" for d in deliveries)
    # The secret never reaches the audit trail.
    assert all("s3cret" not in json.dumps(a.details) for a in client.get_registry_activity("churn"))


def test_receiver_down_never_loses_or_blocks_the_change(client, churn, user, fast_retries):
    down = _Receiver()
    url = down.url
    down.close()  # nothing listens on this port any more
    hook = client.create_registry_webhook(["MODEL_VERSION_TRANSITIONED_STAGE",
                                           "MODEL_VERSION_TRANSITIONED_TO_STAGING"], url, model_name="churn")
    moved = client.transition_model_version_stage("churn", 1, "Staging")
    assert moved.current_stage == "Staging"  # committed whatever the receiver does
    assert client.wait_for_webhooks(30)
    deliveries = client.list_webhook_deliveries(hook.webhook_id)
    by_event: dict[str, list] = {}
    for d in deliveries:
        by_event.setdefault(d.event, []).append((d.attempt, d.status, d.http_status))
    assert by_event == {event: [(1, "FAILED", None), (2, "FAILED", None), (3, "GAVE_UP", None)]
                        for event in ("MODEL_VERSION_TRANSITIONED_STAGE", "MODEL_VERSION_TRANSITIONED_TO_STAGING")}
    assert all("Connection refused" in d.error or "URLError" in d.error for d in deliveries)
    assert client.get_model_version("churn", 1).current_stage == "Staging"


def test_slow_receiver_does_not_block_the_registry(client, churn, user):
    release = threading.Event()
    receiver = _Receiver(hold=release)
    try:
        client.create_registry_webhook(["COMMENT_CREATED"], receiver.url, model_name="churn")
        client.create_comment("churn", 1, "first")  # returns while the receiver still holds the request
        assert receiver.arrived.wait(20)
        assert receiver.released is None  # the handler is still blocked...
        client.create_comment("churn", 1, "second")  # ...and registry changes go on meanwhile
        assert len(client.list_comments("churn", 1)) == 2
        release.set()
        assert client.wait_for_webhooks(30)
        assert receiver.released is True
    finally:
        release.set()
        receiver.close()
    assert [json.loads(body)["text"] for _, body in receiver.requests] == ["first", "second"]


def test_webhook_management_rights_and_status(client, churn, model_dir, user, monkeypatch):
    receiver = _Receiver()
    try:
        user("paula")
        with pytest.raises(PermissionDenied, match="lacks CAN_MANAGE"):
            client.create_registry_webhook(["COMMENT_CREATED"], receiver.url, model_name="churn")
        with pytest.raises(PermissionDenied, match="not a registry admin"):
            client.create_registry_webhook(["COMMENT_CREATED"], receiver.url)
        user("owner")
        with pytest.raises(InvalidArgument, match="webhook event 'MODEL_DELETED' is not one of"):
            client.create_registry_webhook(["MODEL_DELETED"], receiver.url, model_name="churn")
        with pytest.raises(InvalidArgument, match="http:// or https://"):
            client.create_registry_webhook(["COMMENT_CREATED"], "ftp://x", model_name="churn")
        everywhere = client.create_registry_webhook(["REGISTERED_MODEL_CREATED"], receiver.url)
        hook = client.create_registry_webhook(["MODEL_VERSION_TAG_SET"], receiver.url, model_name="churn")
        client.update_registry_webhook(hook.webhook_id, status="DISABLED")
        client.set_model_version_tag("churn", 1, "k", "v")  # disabled: no delivery
        client.create_registered_model("other")  # registry-wide hook fires for any model
        assert client.wait_for_webhooks(30)
        assert [json.loads(b)["event"] for _, b in receiver.requests] == ["REGISTERED_MODEL_CREATED"]
        assert {w.webhook_id for w in client.list_registry_webhooks()} == {everywhere.webhook_id, hook.webhook_id}
        client.delete_registry_webhook(hook.webhook_id)
        assert [w.webhook_id for w in client.list_registry_webhooks("churn")] == []
    finally:
        receiver.close()
