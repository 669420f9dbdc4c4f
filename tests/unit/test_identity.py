"""Who the acting registry user is: the platform's identity on Databricks, reserved principal names."""

from __future__ import annotations

import pytest

from deltaflow import config
from deltaflow.errors import PermissionDenied
from deltaflow.tracking import _context as ctx


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in ("DATABRICKS_RUNTIME_VERSION", "DELTAFLOW_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ctx, "_DBR_VERSION_FILE", "/nonexistent/DBR_VERSION")
    ctx.clear_cache()
    config.clear_identity_cache()
    yield
    ctx.clear_cache()
    config.clear_identity_cache()


def _databricks(monkeypatch, user):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setattr(ctx, "_from_repl_context", lambda c: ctx._put(c, "user", user) if user else None)


def test_databricks_user_cannot_be_overridden_by_the_environment(monkeypatch):
    _databricks(monkeypatch, "reader@example.com")
    monkeypatch.setenv("DELTAFLOW_USER", "owner@example.com")
    assert config.acting_user() == "reader@example.com"


def test_databricks_without_a_readable_user_fails_closed(monkeypatch):
    _databricks(monkeypatch, None)
    monkeypatch.setenv("DELTAFLOW_USER", "owner")
    with pytest.raises(PermissionDenied, match="Databricks"):
        config.acting_user()


def test_off_databricks_the_user_is_asserted_by_the_caller(monkeypatch):
    monkeypatch.setenv("DELTAFLOW_USER", "ci-bot")
    assert config.acting_user() == "ci-bot"
    monkeypatch.delenv("DELTAFLOW_USER")
    assert config.acting_user()  # the OS user


@pytest.mark.parametrize("name", ["users", "admins", "Users", "account users", "ADMINS"])
def test_reserved_principal_names_cannot_be_users(monkeypatch, name):
    monkeypatch.setenv("DELTAFLOW_USER", name)
    with pytest.raises(PermissionDenied) as refused:
        config.acting_user()
    assert repr(name) in str(refused.value) and "reserved" in str(refused.value)
