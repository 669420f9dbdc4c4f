"""What the tracking benchmark's rows share: targets, engines, and the deltaflow / MLflow harnesses.

Each deltaflow engine ('spark', 'rust') is a column of the table. In the benchmark process both engines
can run side by side: a harness selects its engine explicitly for every store it makes (the
``DELTAFLOW_ENGINE`` variable, read at store creation, for the fluent API; ``engine=`` on the client
when the client accepts it) and checks the store really uses that engine.
"""

from __future__ import annotations

import inspect
import os
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from _common import ENGINE_COLUMNS, Results, Stopwatch, TempDirs, log, verdict

FILTER = "metrics.m0 > 0.5 and params.p0 = 'a'"
ORDER_BY = ["metrics.m1 DESC"]


# -- targets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    op: str
    threshold: float
    text: str
    engines: tuple[str, ...] = ENGINE_COLUMNS  # the engines the target is set for; others show "-"

    def judge(self, value: Optional[float], engine: str) -> str:
        if engine not in self.engines:
            return "-"
        return verdict(value, self.op, self.threshold)


T_IMPORT = Target("<=", 0.3, "≤ 0.3 s")
T_LOG_METRIC = Target("<=", 0.02e-3, "≤ 0.02 ms")
T_BATCH = Target(">=", 200_000, "≥ 200k/s")
T_RUNS = Target(">=", 2_000, "≥ 2,000/s")
T_SEARCH = Target("<=", 2.0, "≤ 2 s")
T_MEMORY = Target("<", 1024 ** 3, "< 1 GiB")
# Scripts and the CLI: the Spark-free engine is the answer there, so these targets are rust's only.
T_SCRIPT = Target("<=", 1.0, "≤ 1 s (rust)", ("rust",))
T_CLI = Target("<=", 1.0, "≤ 1 s (rust)", ("rust",))


# -- engines ------------------------------------------------------------------------------------
def known_engines() -> tuple[str, ...]:
    """The engine names deltaflow's factory accepts (without importing Spark or delta-rs)."""
    from deltaflow.store import factory

    return tuple(getattr(factory, "ENGINES", ("spark",)))


def client_takes_engine() -> bool:
    from deltaflow import DeltaflowClient

    return "engine" in inspect.signature(DeltaflowClient.__init__).parameters


def engine_env(engine: str, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["DELTAFLOW_ENGINE"] = engine
    return env


class guard:  # noqa: N801 - used as a statement: ``with guard(res, key, column):``
    """An exception inside fills ``column`` of a '<key>: ERROR' row and is recorded; the caller goes on
    with the next engine or library instead of losing the whole row group."""

    def __init__(self, res: Results, key: str, column: str) -> None:
        self.res, self.key, self.column = res, key, column
        self.failed = False

    def __enter__(self) -> "guard":
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        traceback.print_exception(exc_type, exc, tb)
        self.failed = True
        message = f"{type(exc).__name__}: {exc}"
        self.res.error(f"{self.key}/{self.column}", message)
        self.res.put(self.key, f"{self.key}: ERROR", self.column, "error",
                     met="error" if self.column in ENGINE_COLUMNS else None, note=message[:300])
        return True


# -- harnesses: a fresh store per measurement, set-up kept out of the timings ------------------
class DeltaflowHarness:
    """Fresh stores on one engine."""

    def __init__(self, dirs: TempDirs, engine: str) -> None:
        import deltaflow

        self.df = deltaflow
        self.dirs = dirs
        self.engine = engine
        self.cold_start_s: Optional[float] = None

    def client(self, uri: str) -> Any:
        """A client on ``uri`` using this harness's engine; the fluent API's store for ``uri`` too."""
        os.environ["DELTAFLOW_ENGINE"] = self.engine  # read when the store is created
        if client_takes_engine():
            client = self.df.DeltaflowClient(uri, engine=self.engine)
        else:
            client = self.df.DeltaflowClient(uri)
        actual = client._store.engine.name
        if actual != self.engine:
            raise RuntimeError(f"asked for engine {self.engine!r}, the store uses {actual!r}")
        return client

    def fresh(self, name: str) -> tuple[str, str, Any]:
        """A new store folder with every table created and the engine warm; returns (uri, exp, client)."""
        from deltaflow.store.factory import get_store
        from deltaflow.store.schema import TABLES

        df = self.df
        uri = self.dirs.new(f"df-{self.engine}-{name}")
        with Stopwatch() as sw:
            client = self.client(uri)
            df.set_tracking_uri(uri)
            fluent_engine = get_store(uri).engine.name
            if fluent_engine != self.engine:
                raise RuntimeError(f"the fluent API's store uses engine {fluent_engine!r}, not {self.engine!r}")
            client._store.engine.ensure_tables(list(TABLES.values()))
            exp_id = df.set_experiment("bench").experiment_id
            # One throw-away run in another experiment: warms the write path and search planning.
            warm = client.create_experiment("warmup")
            run = client.create_run(warm)
            client.log_batch(run.info.run_id, metrics=[df.Metric("m0", 1.0, 0, 0)], params=[df.Param("p0", "a")])
            client.set_terminated(run.info.run_id)
            client.flush()
            df.flush()
            client.search_runs([warm], FILTER, max_results=10)
        if self.cold_start_s is None:
            self.cold_start_s = sw.seconds
        log(f"deltaflow[{self.engine}] store {os.path.basename(uri)} ready in {sw.seconds:.1f}s")
        return uri, exp_id, client

    def second_store(self, uri: str) -> Any:
        """An independent TrackingStore (own buffer, own engine object) over the same location."""
        from deltaflow.config import resolve_location
        from deltaflow.store.factory import make_engine
        from deltaflow.store.tracking_store import TrackingStore

        location = resolve_location(uri)
        return TrackingStore(location, make_engine(location, self.engine))


class MlflowHarness:
    def __init__(self, dirs: TempDirs) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow = mlflow
        self.Client = MlflowClient
        self.dirs = dirs

    def fresh(self, name: str) -> tuple[str, str, Any]:
        from mlflow.entities import Metric, Param

        mlflow = self.mlflow
        folder = self.dirs.new(f"ml-{name}")
        uri = f"sqlite:///{folder}/mlflow.db"
        with Stopwatch() as sw:
            mlflow.set_tracking_uri(uri)
            client = self.Client(uri)
            exp_id = client.create_experiment("bench", artifact_location=f"file://{folder}/artifacts")
            mlflow.set_experiment(experiment_id=exp_id)
            warm = client.create_experiment("warmup", artifact_location=f"file://{folder}/artifacts-w")
            run = client.create_run(warm)
            client.log_batch(run.info.run_id, metrics=[Metric("m0", 1.0, 0, 0)], params=[Param("p0", "a")])
            client.set_terminated(run.info.run_id)
            client.search_runs([warm], FILTER, max_results=10)
        log(f"mlflow store {os.path.basename(folder)} ready in {sw.seconds:.1f}s")
        return uri, exp_id, client
