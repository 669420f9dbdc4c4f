"""The databricks backend's configuration (``--backend-config``), checked before any Databricks call.

Pure Python, no SDK import. Keys:

* compute, exactly one of: ``new_cluster`` (a Jobs API cluster spec; MLflow's form — the cluster spec
  itself, with ``spark_version`` at the top — is accepted too), ``existing_cluster_id``, or serverless:
  ``serverless: true`` and/or ``environment`` (``{"client": "2", "dependencies": [...]}``);
* ``profile`` / ``host``: which workspace (default: databricks-sdk's own chain — ``DATABRICKS_HOST`` and
  ``DATABRICKS_TOKEN``, then the ``DEFAULT`` profile of ``~/.databrickscfg``);
* ``upload_to``: where the project archive goes — a workspace folder (``/Workspace/...``, the default
  ``/Workspace/Users/<you>/.deltaflow/projects``), ``dbfs:/...`` or a Volume ``/Volumes/c/s/v/...``;
* ``libraries`` (cluster tasks), ``deltaflow_requirement`` (how the cluster gets deltaflow, default
  ``deltaflow``; a ``.whl`` path works too; ``null`` when the cluster already has it), ``run_name``,
  ``timeout_seconds``, ``poll_interval_s`` / ``max_poll_interval_s`` (polling back-off bounds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["DatabricksBackendConfig", "parse_databricks_config"]

_KEYS = ("new_cluster", "existing_cluster_id", "serverless", "environment", "profile", "host", "upload_to",
         "libraries", "deltaflow_requirement", "run_name", "timeout_seconds", "poll_interval_s",
         "max_poll_interval_s")
# MLflow's backend config is the new-cluster spec itself; these keys mark that form.
_CLUSTER_SPEC_KEYS = ("spark_version", "num_workers", "node_type_id", "autoscale", "instance_pool_id",
                      "driver_node_type_id", "spark_conf", "spark_env_vars", "aws_attributes", "azure_attributes",
                      "gcp_attributes", "custom_tags", "cluster_log_conf", "init_scripts", "policy_id",
                      "data_security_mode", "single_user_name", "runtime_engine", "enable_elastic_disk",
                      "driver_instance_pool_id", "ssh_public_keys", "apply_policy_default_values",
                      "spark_version", "kind", "is_single_node", "use_ml_runtime", "workload_type",
                      "enable_local_disk_encryption", "docker_image", "cluster_name")
_UPLOAD = re.compile(r"^(dbfs:/|/Volumes/[^/]+/[^/]+/[^/]+(/|$)|/Workspace/|/Users/|/Shared/)")
_LIBRARY_KINDS = ("whl", "pypi", "requirements", "jar", "maven", "cran", "egg")


@dataclass(frozen=True)
class DatabricksBackendConfig:
    compute: str  # "new_cluster" | "existing_cluster" | "serverless"
    new_cluster: Optional[dict[str, Any]] = None
    existing_cluster_id: Optional[str] = None
    environment: dict[str, Any] = field(default_factory=dict)
    profile: Optional[str] = None
    host: Optional[str] = None
    upload_to: Optional[str] = None
    libraries: tuple[dict[str, Any], ...] = ()
    deltaflow_requirement: Optional[str] = "deltaflow"
    run_name: Optional[str] = None
    timeout_seconds: int = 0
    poll_interval_s: float = 0.5
    max_poll_interval_s: float = 15.0


def _text(config: dict[str, Any], key: str) -> Optional[str]:
    value = config.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidArgument(f"backend_config {key} {value!r} must be non-empty text")
    return value


def _number(config: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidArgument(f"backend_config {key} {value!r} must be a number from {low} to {high}")
    return float(value)


def parse_databricks_config(config: Optional[dict[str, Any]]) -> DatabricksBackendConfig:
    """Validates a databricks backend configuration; every error names the key and what is allowed."""
    config = dict(config or {})
    if any(k in config for k in _CLUSTER_SPEC_KEYS) and "new_cluster" not in config:
        spec = {k: config.pop(k) for k in list(config) if k not in _KEYS}
        config["new_cluster"] = spec  # MLflow's form: the whole file is the new cluster's spec
    unknown = sorted(k for k in config if k not in _KEYS)
    if unknown:
        raise InvalidArgument(f"backend_config has unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                              f"{', '.join(_KEYS)} (or a cluster spec with spark_version, as MLflow takes)")
    serverless = config.get("serverless", False)
    if not isinstance(serverless, bool):
        raise InvalidArgument(f"backend_config serverless {serverless!r} must be true or false")
    environment = config.get("environment") or {}
    if not isinstance(environment, dict) or any(k not in ("client", "environment_version", "dependencies")
                                                for k in environment):
        raise InvalidArgument(f"backend_config environment {environment!r} must be an object with client / "
                              "environment_version and dependencies (a serverless environment spec)")
    deps = environment.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) and d.strip() for d in deps):
        raise InvalidArgument(f"backend_config environment.dependencies {deps!r} must be a list of pip requirements")
    chosen = [name for name, on in (("new_cluster", "new_cluster" in config),
                                     ("existing_cluster_id", "existing_cluster_id" in config),
                                     ("serverless", serverless or bool(environment))) if on]
    if len(chosen) != 1:
        raise InvalidArgument("backend_config must choose exactly one compute: new_cluster (a cluster spec), "
                              "existing_cluster_id, or serverless (serverless: true and/or an environment); "
                              f"got {', '.join(chosen) if chosen else 'none'}")
    new_cluster = config.get("new_cluster")
    if new_cluster is not None:
        if not isinstance(new_cluster, dict) or not isinstance(new_cluster.get("spark_version"), str):
            raise InvalidArgument(f"backend_config new_cluster {new_cluster!r} must be a cluster spec with a "
                                  "spark_version (e.g. '15.4.x-scala2.12')")
        workers = new_cluster.get("num_workers", 0)
        if "autoscale" not in new_cluster and (not isinstance(workers, int) or isinstance(workers, bool)
                                               or workers < 0):
            raise InvalidArgument(f"backend_config new_cluster num_workers {workers!r} must be a whole number >= 0")
    upload_to = _text(config, "upload_to")
    if upload_to is not None and not _UPLOAD.match(upload_to):
        raise InvalidArgument(f"backend_config upload_to {upload_to!r} must be a workspace folder (/Workspace/...), "
                              "a DBFS folder (dbfs:/...) or a Volume folder (/Volumes/<catalog>/<schema>/<volume>/...)")
    libraries = config.get("libraries", [])
    if not isinstance(libraries, list) or not all(isinstance(lib, dict) and len(lib) == 1
                                                   and next(iter(lib)) in _LIBRARY_KINDS for lib in libraries):
        raise InvalidArgument(f"backend_config libraries {libraries!r} must be a list of Jobs API libraries, each one "
                              f"of {', '.join(_LIBRARY_KINDS)} (e.g. {{\"pypi\": {{\"package\": \"xgboost\"}}}})")
    if libraries and chosen[0] == "serverless":
        raise InvalidArgument("backend_config libraries apply to clusters; on serverless list pip requirements in "
                              "environment.dependencies")
    requirement = config.get("deltaflow_requirement", "deltaflow")
    if requirement is not None and (not isinstance(requirement, str) or not requirement.strip()):
        raise InvalidArgument(f"backend_config deltaflow_requirement {requirement!r} must be a pip requirement, a "
                              ".whl path, or null when the compute already has deltaflow")
    timeout = config.get("timeout_seconds", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise InvalidArgument(f"backend_config timeout_seconds {timeout!r} must be a whole number >= 0 (0: none)")
    low = _number(config, "poll_interval_s", 0.5, 0.01, 600)
    high = _number(config, "max_poll_interval_s", max(15.0, low), low, 3600)
    existing = _text(config, "existing_cluster_id")
    return DatabricksBackendConfig(
        compute={"new_cluster": "new_cluster", "existing_cluster_id": "existing_cluster",
                 "serverless": "serverless"}[chosen[0]],
        new_cluster=dict(new_cluster) if new_cluster else None, existing_cluster_id=existing,
        environment=dict(environment), profile=_text(config, "profile"), host=_text(config, "host"),
        upload_to=upload_to.rstrip("/") if upload_to else None, libraries=tuple(libraries),
        deltaflow_requirement=requirement, run_name=_text(config, "run_name"), timeout_seconds=timeout,
        poll_interval_s=low, max_poll_interval_s=high)
