"""Models are published whole or not at all: real processes SIGKILLed at random moments while they log
or register models, then every model folder is checked, and gc removes what the kills left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deltaflow
import deltaflow.pyfunc
from deltaflow import DeltaflowClient
from deltaflow.artifacts import get_artifact_repository

pytestmark = pytest.mark.e2e

WORKER = str(Path(__file__).parent / "workers" / "model_publish_victim.py")
KILLS = 10
BLOB = 8 << 20  # the victim's model size: its predict returns it
HIDDEN = ".deltaflow-tmp-"


def _env() -> dict[str, str]:
    return dict(os.environ, DELTAFLOW_ENGINE="rust", PYTHONPATH=os.pathsep.join(sys.path))


def _kill_after_start(args: list[str], rng: random.Random, low: float, high: float) -> str:
    """Start a victim, wait for its first line, SIGKILL it a random moment later; its first line."""
    proc = subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), text=True)
    try:
        first = proc.stdout.readline()
        if not first:
            raise AssertionError(f"the victim died before starting: {proc.stderr.read()[-2000:]}")
        time.sleep(rng.uniform(low, high))
        assert proc.poll() is None, f"the victim exited on its own: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        return first
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A fresh rust-engine store, also the tracking URI (models:/ URIs resolve through it)."""
    monkeypatch.setenv("DELTAFLOW_ENGINE", "rust")
    uri = str(tmp_path / "store")
    deltaflow.set_tracking_uri(uri)
    yield uri
    deltaflow.set_tracking_uri(None)


def gc_model_files(*args, **kwargs):
    from deltaflow.registry.copies import gc_model_files as gc

    return gc(*args, **kwargs)


def _whole(folder: str) -> bool:
    """The folder holds a complete victim model: it loads and predicts its blob's size."""
    model = deltaflow.pyfunc.load_model(folder)
    return list(model.predict([0])) == [BLOB]


def _visible_dirs(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(HIDDEN))


def _hidden(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.name.startswith(HIDDEN)) if os.path.isdir(folder) else []


def test_log_model_killed_at_random_moments_leaves_whole_models_or_none(tmp_path, store):
    rng = random.Random(10_5)
    started = time.monotonic()
    roots = []
    for _ in range(KILLS):
        first = json.loads(_kill_after_start([store, "log"], rng, 0.02, 0.35))
        roots.append(first["artifact_uri"])
    assert len(set(roots)) == KILLS
    logged = 0
    for root in roots:
        for name in _visible_dirs(root):
            assert _whole(os.path.join(root, name)), f"torn model {name} in {root}: {os.listdir(os.path.join(root, name))}"
            logged += 1
        listed = {f.path for f in get_artifact_repository(root).list_artifacts()}
        assert not [p for p in listed if HIDDEN in p], listed
    assert logged >= KILLS  # each victim logged m0 before the kill could land
    # What the kills left half-written is hidden, and gc removes it once past the grace period.
    client = DeltaflowClient(store)
    report = gc_model_files(client._store, grace_s=0)
    assert all(not _hidden(root) for root in roots), [(_hidden(r)) for r in roots]
    assert all(HIDDEN in p for p in report.staging_paths)
    assert time.monotonic() - started < 60


def test_register_killed_at_random_moments_then_gc_leaves_only_referenced_whole_copies(tmp_path, store):
    source = str(tmp_path / "model")
    # The same Blob class as the victim's, so the copies are checked the same way.
    sys.path.insert(0, str(Path(WORKER).parent))
    try:
        blob = _blob_class()(BLOB)
    finally:
        sys.path.pop(0)
    deltaflow.pyfunc.save_model(source, python_model=blob)
    rng = random.Random(10_6)
    started = time.monotonic()
    for _ in range(KILLS):
        _kill_after_start([store, "register", source], rng, 0.05, 0.6)
    client = DeltaflowClient(store)
    copies = os.path.join(client._store.location.artifact_root, "_registry", "victim")
    assert os.path.isdir(copies), "no kill let a registration copy through"
    for name in _visible_dirs(copies):
        assert _whole(os.path.join(copies, name)), f"torn registry copy {name}: {os.listdir(os.path.join(copies, name))}"
    versions = client.search_model_versions("name = 'victim'")
    referenced = sorted(os.path.basename(v.storage_location) for v in versions)
    report = gc_model_files(client._store, grace_s=0)
    assert _visible_dirs(copies) == referenced, (report.registry_copies, referenced)
    assert not _hidden(copies)
    for v in versions:
        assert list(deltaflow.pyfunc.load_model(f"models:/victim/{v.version}").predict([0])) == [BLOB]
    assert time.monotonic() - started < 90


def test_gc_keeps_young_orphans_and_referenced_copies(tmp_path, store):
    """An unreferenced copy younger than the grace period may be a registration still committing."""
    source = str(tmp_path / "model")
    deltaflow.pyfunc.save_model(source, python_model=lambda df: df)
    client = DeltaflowClient(store)
    version = client.register_model(source, "kept")
    copies = os.path.dirname(version.storage_location)
    orphan = os.path.join(copies, "0" * 32)
    os.makedirs(orphan)
    report = gc_model_files(client._store)  # default grace: a day
    assert report.registry_copies == [] and os.path.isdir(orphan)
    report = gc_model_files(client._store, grace_s=0, dry_run=True)
    assert report.registry_copies == [orphan] and os.path.isdir(orphan)
    # The CLI's gc does the same.
    cli = subprocess.run([sys.executable, "-m", "deltaflow.cli", "--tracking-uri", store, "gc", "--model-grace", "0s"],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert f"remove unreferenced registry copy {orphan}" in cli.stdout
    assert not os.path.exists(orphan) and os.path.isdir(version.storage_location)
    assert deltaflow.pyfunc.load_model("models:/kept/1").predict([1]) == [1]


def _blob_class():
    """The victim's Blob class, imported without running the victim's loop."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_victim_blob", WORKER)
    source = Path(WORKER).read_text().split("\nstore, mode = ")[0]
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, WORKER, "exec"), module.__dict__)  # noqa: S102 - our own test worker
    return module.Blob
