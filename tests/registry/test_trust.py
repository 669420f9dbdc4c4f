"""The registry's trust model on a real store (delta-rs, no JVM): identity, admins recorded in the
registry, forged log rows, webhook secrets kept out of the tables, permission-checked webhook
listing, refused webhook targets, and replay protection at a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import urllib.request
import uuid

import pytest

from deltaflow import config
from deltaflow.errors import InvalidArgument, InvalidState, PermissionDenied
from deltaflow.registry import webhooks as W
from deltaflow.tracking import _context as ctx
from tests.registry.conftest import Receiver, log_size

pytestmark = pytest.mark.parametrize("engine", ["rust"], indirect=True)


@pytest.fixture()
def churn(client, model_dir, user):
    """'churn' created by 'owner' (who thereby creates the registry), one version."""
    client.create_registered_model("churn")
    client.create_model_version("churn", model_dir(1.0))
    return "churn"


def _raw_rows(client) -> list[dict]:
    from deltalake import DeltaTable

    table = DeltaTable(client._store.location.table_path("registry_events"))
    return sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["revision"])


def _forge(client, revision: int, action: str, user_id: str = "owner", event_id: str | None = None,
           **fields) -> str:
    """Append a registry_events row directly to the Delta table, as someone with raw write access
    (but without the registry key) could."""
    from deltalake import write_deltalake

    from deltaflow.store import _arrow
    from deltaflow.store.schema import TABLES

    event_id = event_id or uuid.uuid4().hex
    row = {"revision": revision, "event_id": event_id, "event_time": 1, "user_id": user_id, "action": action,
           "name": "churn", "version": None, "from_stage": None, "to_stage": None, "comment": None,
           "details": json.dumps(fields.pop("details", {})), **fields}
    write_deltalake(client._store.location.table_path("registry_events"),
                    _arrow.table_from_pylist([row], TABLES["registry_events"].schema), mode="append")
    return event_id


def _fresh_state(client):
    """The registry folded from scratch by a new reader (another process would do the same)."""
    from deltaflow.registry.store import RegistryStore

    return RegistryStore(client._store).state()


# -- identity and admins ---------------------------------------------------------------------
def test_databricks_identity_is_not_overridden_by_the_environment(client, churn, user, monkeypatch):
    client.set_registered_model_permission("churn", "reader@example.com", "CAN_READ")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setattr(ctx, "_DBR_VERSION_FILE", "/nonexistent/DBR_VERSION")
    monkeypatch.setattr(ctx, "_from_repl_context", lambda c: ctx._put(c, "user", "reader@example.com"))
    ctx.clear_cache()
    getattr(config, "clear_identity_cache", lambda: None)()
    try:
        user("owner")  # DELTAFLOW_USER=owner, as the CAN_READ user did
        before = log_size(client)
        with pytest.raises(PermissionDenied, match="user 'reader@example.com' lacks CAN_MANAGE_PRODUCTION"):
            client.transition_model_version_stage("churn", 1, "Production")
        assert log_size(client) == before
        request = client.create_transition_request("churn", 1, "Production")
        assert request.user_id == "reader@example.com"
    finally:
        ctx.clear_cache()
        getattr(config, "clear_identity_cache", lambda: None)()


def test_admins_are_recorded_in_the_registry_not_read_from_the_environment(client, churn, user, monkeypatch):
    user("eve")
    monkeypatch.setenv("DELTAFLOW_REGISTRY_ADMINS", "eve")
    assert client.get_registered_model_permission_level("churn") == "CAN_READ"
    with pytest.raises(PermissionDenied, match="user 'eve' is not a registry admin"):
        client.get_registry_activity()
    with pytest.raises(PermissionDenied, match="user 'eve' is not a registry admin"):
        client.add_registry_admin("eve")

    user("owner")  # created the registry (its first revision): the first admin
    assert client.list_registry_admins() == ["owner"]
    client.add_registry_admin("ops")
    assert client.list_registry_admins() == ["ops", "owner"]
    with pytest.raises(InvalidArgument, match="'users' is reserved"):
        client.add_registry_admin("users")
    user("ops")
    assert client.get_registered_model_permission_level("churn") == "CAN_MANAGE"
    assert client.get_registry_activity()[-1].action == "ADD_REGISTRY_ADMIN"
    client.remove_registry_admin("owner")
    with pytest.raises(InvalidState, match="last registry admin"):
        client.remove_registry_admin("ops")
    assert client.list_registry_admins() == ["ops"]
    assert [(a.user_id, a.action, a.details["principal"]) for a in client.get_registry_activity()
            if "ADMIN" in a.action] == [("owner", "ADD_REGISTRY_ADMIN", "ops"), ("ops", "REMOVE_REGISTRY_ADMIN", "owner")]


def test_reserved_principals_cannot_act_or_be_granted(client, churn, user):
    before = log_size(client)
    for name in ("users", "admins"):
        user(name)
        with pytest.raises(PermissionDenied, match=f"user name '{name}' is reserved"):
            client.create_registered_model("m2")
    assert log_size(client) == before
    user("owner")
    with pytest.raises(InvalidArgument, match="'admins' is reserved"):
        client.set_registered_model_permission("churn", "admins", "CAN_READ")
    client.set_registered_model_permission("churn", "users", "CAN_EDIT")  # 'users' is the everyone grant
    user("someone")
    assert client.get_registered_model_permission_level("churn") == "CAN_EDIT"


# -- forged rows -----------------------------------------------------------------------------
def test_forged_rows_are_ignored_and_reported(client, churn, user):
    user("reader")
    n = client._registry.state().revision
    forged_move = _forge(client, n + 1, "TRANSITION_STAGE", version=1, from_stage="None", to_stage="Production")
    forged_grant = _forge(client, 2, "SET_PERMISSION", event_id="0" * 32,  # sorts before the real revision 2
                          details={"principal": "reader", "level": "CAN_MANAGE", "previous": None})
    fresh = _fresh_state(client)
    assert fresh.models["churn"].versions[1].stage == "None"
    assert fresh.permission_of(fresh.models["churn"], "reader") == "CAN_READ"
    assert client.get_model_version("churn", 1).current_stage == "None"
    user("owner")
    assert forged_move not in {a.details.get("event_id") for a in client.get_registry_activity("churn")}
    assert all(a.revision != n + 1 for a in client.get_registry_activity("churn"))
    report = client.verify_registry()
    assert report.signed and report.key_id
    assert {(r.revision, r.event_id) for r in report.rejected} == {(n + 1, forged_move), (2, forged_grant)}
    assert all("signature" in r.reason for r in report.rejected)
    moved = client.transition_model_version_stage("churn", 1, "Staging")  # the registry goes on past it
    assert moved.current_stage == "Staging"
    assert _raw_rows(client)[-1]["revision"] == n + 2


def test_a_process_with_another_key_cannot_read_a_signed_registry(client, churn, monkeypatch):
    monkeypatch.setenv("DELTAFLOW_REGISTRY_KEY", secrets.token_hex(32))
    with pytest.raises(PermissionDenied, match="signed with registry key") as refused:
        _fresh_state(client)
    assert "DELTAFLOW_REGISTRY_KEY" in str(refused.value)


# -- webhooks --------------------------------------------------------------------------------
def test_webhook_secret_is_not_readable_from_the_tables(client, churn, model_dir, user, monkeypatch):
    receiver = Receiver()
    try:
        hook = client.create_registry_webhook(["MODEL_VERSION_CREATED"], receiver.url, secret="s3cret-token-42",
                                              model_name="churn")
        client.update_registry_webhook(hook.webhook_id, secret="rotated-secret-43")
        client.create_model_version("churn", model_dir())
        assert client.wait_for_webhooks(30)
    finally:
        receiver.close()
    raw = json.dumps(_raw_rows(client))
    assert "s3cret-token-42" not in raw and "rotated-secret-43" not in raw
    ((headers, body),) = receiver.requests
    assert W.verify_signature("rotated-secret-43", body, headers)


def test_a_webhook_secret_needs_a_registry_key(client, user, monkeypatch, tmp_path):
    monkeypatch.delenv("DELTAFLOW_REGISTRY_KEY")
    monkeypatch.setenv("DELTAFLOW_CONFIG_DIR", str(tmp_path / "empty-config"))
    client.create_registered_model("churn")
    with pytest.raises(InvalidState, match="DELTAFLOW_REGISTRY_KEY"):
        client.create_registry_webhook(["COMMENT_CREATED"], "https://hooks.example.com/x", secret="s",
                                       model_name="churn")
    assert client.create_registry_webhook(["COMMENT_CREATED"], "https://hooks.example.com/x", model_name="churn")


def test_listing_webhooks_is_permission_checked(client, churn, user):
    client.create_registered_model("private")
    client.set_registered_model_permission("private", "users", None)
    private = client.create_registry_webhook(["COMMENT_CREATED"], "https://hooks.example.com/x?token=t0k3n",
                                             model_name="private")
    public = client.create_registry_webhook(["COMMENT_CREATED"], "https://hooks.example.com/y", model_name="churn")
    everywhere = client.create_registry_webhook(["REGISTERED_MODEL_CREATED"], "https://hooks.example.com/z")
    assert {w.webhook_id for w in client.list_registry_webhooks()} == {private.webhook_id, public.webhook_id,
                                                                       everywhere.webhook_id}
    user("stranger")  # CAN_READ on churn (the default), nothing on private
    assert client.list_registry_webhooks() == []
    for name, needed in (("private", "CAN_READ"), ("churn", "CAN_MANAGE")):
        with pytest.raises(PermissionDenied, match=f"user 'stranger' lacks {needed}"):
            client.list_registry_webhooks(name)
    assert client.list_webhook_deliveries() == []
    with pytest.raises(PermissionDenied):
        client.list_webhook_deliveries(private.webhook_id)
    client_owner_grant = "owner"
    user(client_owner_grant)
    client.set_registered_model_permission("churn", "stranger", "CAN_MANAGE")
    user("stranger")
    assert [w.webhook_id for w in client.list_registry_webhooks()] == [public.webhook_id]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/",
                                 "http://localhost:22/"])
def test_refused_webhook_targets(client, churn, url):
    before = log_size(client)
    with pytest.raises(InvalidArgument, match="DELTAFLOW_WEBHOOK_ALLOW") as refused:
        client.create_registry_webhook(["COMMENT_CREATED"], url, model_name="churn")
    assert url in str(refused.value)
    assert log_size(client) == before


def test_target_policy_is_enforced_again_at_delivery(client, churn, user, monkeypatch):
    receiver = Receiver()
    try:
        hook = client.create_registry_webhook(["COMMENT_CREATED"], receiver.url, model_name="churn")
        monkeypatch.delenv("DELTAFLOW_WEBHOOK_ALLOW")  # this process does not allow loopback targets
        monkeypatch.setenv("DELTAFLOW_WEBHOOK_ATTEMPTS", "1")
        client.create_comment("churn", 1, "hello")
        assert client.wait_for_webhooks(30)
    finally:
        receiver.close()
    assert receiver.requests == []
    (delivery,) = client.list_webhook_deliveries(hook.webhook_id)
    assert delivery.status == "GAVE_UP" and "loopback" in delivery.error


def test_receiver_refuses_a_replayed_delivery(client, churn, user, monkeypatch):
    monkeypatch.setenv("DELTAFLOW_WEBHOOK_BACKOFF_S", "0.05")
    receiver = Receiver(statuses=[500, 200], guard=W.DeliveryGuard(), secret="s3cret")
    try:
        hook = client.create_registry_webhook(["COMMENT_CREATED"], receiver.url, secret="s3cret", model_name="churn")
        client.create_comment("churn", 1, "ship it")
        assert client.wait_for_webhooks(30)
        (first, _), (retry, body) = receiver.requests
        assert first["X-Deltaflow-Delivery"] == retry["X-Deltaflow-Delivery"]  # one delivery, two attempts
        assert receiver.verdicts == [True, True]  # the 500 made the receiver forget it: the retry got in
        replay = urllib.request.Request(receiver.url, data=body, headers=retry, method="POST")
        with pytest.raises(urllib.error.HTTPError) as replayed:
            urllib.request.urlopen(replay, timeout=10)
        assert replayed.value.code == 409 and receiver.verdicts[-1] is False
    finally:
        receiver.close()
    forged = dict(retry, **{"X-Deltaflow-Event": "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"})
    assert W.verify_signature("s3cret", body, retry) and not W.verify_signature("s3cret", body, forged)
    deliveries = client.list_webhook_deliveries(hook.webhook_id)
    assert {d.delivery_id for d in deliveries} == {retry["X-Deltaflow-Delivery"]}
    assert [(d.attempt, d.status) for d in deliveries] == [(1, "FAILED"), (2, "DELIVERED")]


def test_cli_admins_verify_and_key(client, churn, user, store_uri, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deltaflow.cli import cli

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--tracking-uri", store_uri, "models", *args], prog_name="deltaflow")
        return result.exit_code, result.output + (str(result.exception) if result.exception else "")

    assert run("admins") == (0, "owner\n")
    assert run("admins", "add", "ops") == (0, "Added registry admin 'ops'\nops\nowner\n")
    user("eve")
    code, out = run("admins", "add", "eve")
    assert code != 0 and "user 'eve' is not a registry admin" in out
    user("owner")
    code, out = run("verify")
    assert code == 0 and "signed with registry key" in out
    _forge(client, client._registry.state().revision + 1, "ADD_REGISTRY_ADMIN", name="",
           details={"principal": "eve"})
    code, out = run("verify")
    assert code == 1 and "ignored: revision" in out and "ADD_REGISTRY_ADMIN as 'owner'" in out
    assert run("admins") == (0, "ops\nowner\n")  # the forged row made nobody an admin
    code, out = run("key")
    assert code == 0 and "from DELTAFLOW_REGISTRY_KEY" in out
    monkeypatch.delenv("DELTAFLOW_REGISTRY_KEY")
    code, out = run("key", "--create")
    assert code == 0 and str(tmp_path / "config" / "registry.key") in out
    assert oct((tmp_path / "config" / "registry.key").stat().st_mode & 0o777) == "0o600"


def test_sealing_an_unsigned_registry(client, user, monkeypatch, tmp_path):
    key = __import__("os").environ["DELTAFLOW_REGISTRY_KEY"]
    monkeypatch.delenv("DELTAFLOW_REGISTRY_KEY")  # the registry is created by a process without a key
    client.create_registered_model("churn")
    before = _forge(client, client._registry.state().revision + 1, "SET_REGISTERED_MODEL_TAG",
                    details={"key": "k", "value": "forged-before"})
    assert client.get_registered_model("churn").tags == {"k": "forged-before"}  # unsigned: indistinguishable
    with pytest.raises(InvalidState, match="DELTAFLOW_REGISTRY_KEY"):
        client.seal_registry()
    monkeypatch.setenv("DELTAFLOW_REGISTRY_KEY", key)
    user("eve")
    with pytest.raises(PermissionDenied, match="not a registry admin"):
        client.seal_registry()
    user("owner")
    report = client.seal_registry()
    assert report.signed and report.rejected == []
    _forge(client, client._registry.state().revision + 1, "SET_REGISTERED_MODEL_TAG",
           details={"key": "k", "value": "forged-after"})
    client.set_registered_model_tag("churn", "team", "growth")
    assert client.get_registered_model("churn").tags == {"k": "forged-before", "team": "growth"}
    assert _fresh_state(client).models["churn"].tags == {"k": "forged-before", "team": "growth"}
    assert [r.reason for r in client.verify_registry().rejected] == ["no signature (written without the registry key)"]
    assert before not in {r.event_id for r in client.verify_registry().rejected}  # before the seal: as it was
    monkeypatch.delenv("DELTAFLOW_REGISTRY_KEY")
    with pytest.raises(PermissionDenied, match="signed with registry key"):
        _fresh_state(client)


def test_delivery_goes_to_the_checked_address_by_name(client, churn, user):
    """A host name is resolved once, checked, and the connection made to that address (localhost
    resolves to ::1 and 127.0.0.1; the receiver listens on the second only)."""
    receiver = Receiver()
    try:
        url = receiver.url.replace("127.0.0.1", "localhost")
        hook = client.create_registry_webhook(["COMMENT_CREATED"], url, secret="s3cret", model_name="churn")
        client.create_comment("churn", 1, "by name")
        assert client.wait_for_webhooks(30)
    finally:
        receiver.close()
    ((headers, body),) = receiver.requests
    assert headers["Host"] == url.split("/")[2] and W.verify_signature("s3cret", body, headers)
    assert [d.status for d in client.list_webhook_deliveries(hook.webhook_id)] == ["DELIVERED"]
