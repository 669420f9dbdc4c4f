"""The Databricks tests use deltaflow's own pytest fixtures for the local emulator."""

from deltaflow.testing import local_databricks, local_databricks_env  # noqa: F401 - fixtures
