"""Serving test fixtures: a registry (a store on the rust engine) per test module."""

from __future__ import annotations

import pytest

from serving_support import Registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("serving"))
