"""Plain data classes for what the tracking store holds.

Names, fields and semantics follow MLflow's entities (``mlflow.entities``) so that code written
against MLflow reads ``run.info.run_id`` or ``run.data.metrics`` the same way here. These classes
import nothing heavy and hold no storage logic.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

__all__ = [
    "RunStatus",
    "ViewType",
    "LifecycleStage",
    "Experiment",
    "ExperimentTag",
    "Metric",
    "Param",
    "RunTag",
    "RunInfo",
    "RunData",
    "Dataset",
    "InputTag",
    "DatasetInput",
    "RunInputs",
    "Run",
    "FileInfo",
    "PagedList",
]

# How long a RUNNING run may go without a heartbeat before readers call it dead. The writer
# heartbeats every heartbeat_interval_s() while a run is active, so three missed beats is a dead
# process rather than a slow flush. DELTAFLOW_HEARTBEAT_INTERVAL_S tunes it (readers and writers
# should agree).
HEARTBEAT_INTERVAL_S = 30.0


def heartbeat_interval_s() -> float:
    try:
        return float(os.environ.get("DELTAFLOW_HEARTBEAT_INTERVAL_S") or HEARTBEAT_INTERVAL_S)
    except ValueError:
        return HEARTBEAT_INTERVAL_S


def heartbeat_timeout_s() -> float:
    return 3 * heartbeat_interval_s()


HEARTBEAT_TIMEOUT_S = 3 * HEARTBEAT_INTERVAL_S


class RunStatus:
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    ALL = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
    TERMINATED = ("FINISHED", "FAILED", "KILLED")

    @staticmethod
    def is_terminated(status: str) -> bool:
        return status in RunStatus.TERMINATED


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"


class ViewType:
    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    _NAMES = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}

    @classmethod
    def from_any(cls, value: "int | str | None") -> int:
        """Accept MLflow's ints or their names; anything else is an InvalidArgument."""
        from deltaflow.errors import InvalidArgument

        if value is None:
            return cls.ACTIVE_ONLY
        if isinstance(value, str) and value.upper() in cls._NAMES:
            return cls._NAMES[value.upper()]
        if isinstance(value, int) and value in (1, 2, 3):
            return value
        raise InvalidArgument(
            f"run_view_type {value!r} is not valid; use ViewType.ACTIVE_ONLY, DELETED_ONLY or ALL"
        )

    @classmethod
    def stages(cls, view_type: int) -> tuple[str, ...]:
        if view_type == cls.ACTIVE_ONLY:
            return (LifecycleStage.ACTIVE,)
        if view_type == cls.DELETED_ONLY:
            return (LifecycleStage.DELETED,)
        return (LifecycleStage.ACTIVE, LifecycleStage.DELETED)


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0
    run_id: Optional[str] = None


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True)
class ExperimentTag:
    key: str
    value: str


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str = LifecycleStage.ACTIVE
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: Optional[int] = None
    last_update_time: Optional[int] = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: Optional[int]
    artifact_uri: str
    lifecycle_stage: str = LifecycleStage.ACTIVE
    # Epoch millis of the writer's last sign of life; None when never recorded.
    last_heartbeat_time: Optional[int] = None

    @property
    def run_uuid(self) -> str:  # MLflow's deprecated alias, kept so old code ports.
        return self.run_id

    @property
    def is_alive(self) -> bool:
        """True while a RUNNING run's writer still heartbeats; False once it ended or died."""
        if self.status != RunStatus.RUNNING:
            return False
        last = self.last_heartbeat_time or self.start_time
        return (time.time() * 1000 - last) <= heartbeat_timeout_s() * 1000


@dataclass(frozen=True)
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    name: str
    digest: str
    source_type: str
    source: str
    schema: Optional[str] = None
    profile: Optional[str] = None


@dataclass(frozen=True)
class InputTag:
    key: str
    value: str


@dataclass(frozen=True)
class DatasetInput:
    dataset: Dataset
    tags: list[InputTag] = field(default_factory=list)


@dataclass(frozen=True)
class RunInputs:
    dataset_inputs: list[DatasetInput] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData
    inputs: RunInputs = field(default_factory=RunInputs)


@dataclass(frozen=True)
class FileInfo:
    path: str
    is_dir: bool
    file_size: Optional[int] = None


class PagedList(list):
    """A list with the ``token`` for the next page (None on the last page), as MLflow returns."""

    def __init__(self, items, token: Optional[str]) -> None:
        super().__init__(items)
        self.token = token
