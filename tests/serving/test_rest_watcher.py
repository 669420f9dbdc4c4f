"""The alias watcher one poll at a time (``ModelWatcher.check``), on a real registry: a moved alias is
loaded and swapped in, the replaced model keeps working for whoever holds it, an unservable version
is refused until the alias leaves it, a deleted alias keeps the served model."""

from __future__ import annotations

import pandas as pd
import pytest

from deltaflow.serving.rest_models import ModelSlot, ModelWatcher, load_served, watches_registry

FRAME = pd.DataFrame({"x": [1.0], "n": [1]})


@pytest.fixture(scope="module")
def watched(registry):
    for factor in (2.0, 10.0):
        registry.register("watched", registry.save(factor))
    registry.register("watched", registry.save(spark=True))
    registry.client.set_registered_model_alias("watched", "live", 1)
    slot = ModelSlot(load_served("models:/watched@live", registry.uri))
    return slot, ModelWatcher(slot, registry.uri, interval=1.0)


def test_which_uris_are_watched():
    assert watches_registry("models:/m@live") and watches_registry("models:/m/Production")
    assert watches_registry("models:/m/latest")
    assert not watches_registry("models:/m/3") and not watches_registry("/some/folder")


def test_a_moved_alias_is_swapped_in_and_the_old_model_still_answers(registry, watched):
    slot, watcher = watched
    assert watcher.check() is None and slot.current.version == 1
    held = slot.current  # a request that started before the move
    registry.client.set_registered_model_alias("watched", "live", 2)
    new = watcher.check()
    assert new is slot.current and new.version == 2 and slot.swaps == 1
    assert list(new.model.predict(FRAME)) == [11.0]
    assert list(held.model.predict(FRAME)) == [3.0]


def test_an_unservable_version_is_refused_until_the_alias_leaves_it(registry, watched, caplog):
    slot, watcher = watched
    before = slot.current.version
    registry.client.set_registered_model_alias("watched", "live", 3)  # a Spark ML model
    assert watcher.check() is None
    assert slot.current.version == before
    assert "version 3 of models:/watched@live cannot be served" in caplog.text
    assert "Spark ML model" in caplog.text
    caplog.clear()
    assert watcher.check() is None and not caplog.text  # not loaded again while the alias stays
    registry.client.set_registered_model_alias("watched", "live", before)
    assert watcher.check() is None and slot.current.version == before


def test_a_deleted_alias_keeps_the_served_model(registry, watched, caplog):
    slot, watcher = watched
    before = slot.current.version
    registry.client.delete_registered_model_alias("watched", "live")
    assert watcher.check() is None
    assert slot.current.version == before and "cannot resolve models:/watched@live" in caplog.text
    other = 1 if before == 2 else 2
    registry.client.set_registered_model_alias("watched", "live", other)
    assert watcher.check().version == other


def test_poll_interval_must_be_positive(watched):
    from deltaflow.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="poll interval 0"):
        ModelWatcher(watched[0], None, interval=0)
