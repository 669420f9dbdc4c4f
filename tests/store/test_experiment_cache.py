"""The experiment cache: fresh reads after a minute, without making the caller wait for them."""

from __future__ import annotations

import time

import pytest

rust_only = pytest.mark.parametrize("engine", ["rust"], indirect=True)


@rust_only
def test_stale_entry_is_served_and_refreshed_in_the_background(client):
    experiment_id = client.create_experiment("cached")
    store = client._store
    assert store.get_experiment(experiment_id).lifecycle_stage == "active"
    # Another writer (a second store over the same tables, as another process would be) deletes it,
    # and our entry is older than the TTL.
    from deltaflow.config import resolve_location
    from deltaflow.store.factory import make_engine
    from deltaflow.store.tracking_store import TrackingStore

    elsewhere = TrackingStore(resolve_location(client.tracking_uri), make_engine(store.location, "rust"))
    elsewhere.delete_experiment(experiment_id)
    value, stamp = store._experiment_cache[experiment_id]
    store._experiment_cache[experiment_id] = (value, stamp - 120)

    assert store.get_experiment(experiment_id).lifecycle_stage == "active"  # served at once, stale
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and store._experiment_cache[experiment_id][0].lifecycle_stage == "active":
        time.sleep(0.05)
    assert store.get_experiment(experiment_id).lifecycle_stage == "deleted"  # refreshed behind the scenes

    value, stamp = store._experiment_cache[experiment_id]
    store._experiment_cache[experiment_id] = (value, stamp - 7200)  # too old to serve: read first
    elsewhere.restore_experiment(experiment_id)
    assert store.get_experiment(experiment_id).lifecycle_stage == "active"
