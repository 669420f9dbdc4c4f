"""``env_manager="virtualenv"``: the model's pinned requirements in an isolated Python environment,
built once per machine and cached by content hash, and a child process in it that scores batches.

The environment is keyed by a SHA-256 of the Python version and the requirement lines, so two models
with the same pins share one. It is built in a hidden folder beside its final place and renamed in
when complete, under a file lock, so concurrent Python workers on one machine build it once and a
crash never leaves a half-built environment that looks ready. pip installs the requirements (its own
wheel cache is reused, as any pip install does); the environment sees no package of the calling
interpreter. deltaflow's own scoring code reaches the child through a folder that holds only a link
to the ``deltaflow`` package, so the model's libraries come from the environment alone.

Batches travel to the child as Arrow IPC streams over its stdin/stdout (see ``_env_main``).
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, InvalidState, StorageError

__all__ = ["EnvSpec", "spec_for", "ensure_env", "EnvPredictor", "env_cache_root"]

# What the scoring child itself imports, added (pinned to this interpreter's versions, which pip
# most likely has cached) unless the model pins them.
_CHILD_NEEDS = ("pyarrow", "pyyaml", "pandas", "cloudpickle")
# The loader is deltaflow's own, so MLflow itself is not installed into the environment.
_SKIPPED = {"mlflow", "mlflow-skinny", "deltaflow"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PROTOCOL = 1  # bump when the child's wire format changes: a new key, a new environment


def env_cache_root() -> str:
    return os.environ.get("DELTAFLOW_ENV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "deltaflow",
                                                                  "envs")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class EnvSpec:
    """What an environment holds; ``key`` names its folder."""

    key: str
    python: str  # "3.11"
    requirements: tuple[str, ...]
    cache_root: Optional[str] = None


def _read_requirements(model_dir: str) -> list[str]:
    path = os.path.join(model_dir, "requirements.txt")
    if not os.path.exists(path):
        return []
    lines = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-"):
                raise InvalidArgument(f"requirements.txt of the model at {model_dir} has the pip option {line!r}; "
                                      "env_manager='virtualenv' installs plain requirement lines only")
            lines.append(line)
    return lines


def _python_version(model_dir: str) -> str:
    import yaml

    path = os.path.join(model_dir, "python_env.yaml")
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.exists(path):
        return current
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    version = str(data.get("python") or current)
    return ".".join(version.split(".")[:2])


def spec_for(model_dir: str, cache_root: Optional[str] = None) -> EnvSpec:
    """The environment the model at ``model_dir`` asks for (its requirements.txt and python_env.yaml)."""
    from importlib import metadata

    wanted = [line for line in _read_requirements(model_dir)
              if _canonical((_NAME.match(line) or [None, line])[1]) not in _SKIPPED]
    named = {_canonical(m.group(1)) for m in map(_NAME.match, wanted) if m}
    for dist in _CHILD_NEEDS:
        if _canonical(dist) not in named:
            try:
                wanted.append(f"{dist}=={metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                wanted.append(dist)
    python = _python_version(model_dir)
    requirements = tuple(sorted(set(wanted)))
    key = hashlib.sha256(json.dumps([_PROTOCOL, python, requirements]).encode()).hexdigest()[:24]
    return EnvSpec(key, python, requirements, cache_root)


def _interpreter(version: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return getattr(sys, "_base_executable", None) or sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise InvalidState(f"the model was saved with Python {version}, and this machine has no python{version} "
                           f"on PATH (this interpreter is {sys.version.split()[0]}); install Python {version} "
                           "or use env_manager='local'")
    return found


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise StorageError(f"{what} failed (exit {proc.returncode}): {tail}")


def ensure_env(spec: EnvSpec) -> str:
    """The Python interpreter of the environment ``spec`` describes, built now if this machine lacks it."""
    root = spec.cache_root or env_cache_root()
    final = os.path.join(root, spec.key)
    python = os.path.join(final, "bin", "python")
    marker = os.path.join(final, ".deltaflow-env.json")
    if os.path.exists(marker):
        return python
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f".{spec.key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per machine; the others wait and reuse it
        if os.path.exists(marker):
            return python
        staging = tempfile.mkdtemp(prefix=f".{spec.key}-", dir=root)
        try:
            _run([_interpreter(spec.python), "-m", "venv", "--without-pip", "--clear", staging],
                 f"creating a virtualenv for Python {spec.python}")
            req_file = os.path.join(staging, "requirements.txt")
            with open(req_file, "w", encoding="utf-8") as fh:
                fh.write("\n".join(spec.requirements) + "\n")
            # This interpreter's pip installs into the new environment (--python), so the environment
            # needs no pip of its own.
            _run([sys.executable, "-m", "pip", "--python", os.path.join(staging, "bin", "python"), "install",
                  "--disable-pip-version-check", "--no-input", "--quiet", "-r", req_file],
                 f"installing the model's requirements ({', '.join(spec.requirements)})")
            with open(os.path.join(staging, ".deltaflow-env.json"), "w", encoding="utf-8") as fh:
                json.dump({"python": spec.python, "requirements": list(spec.requirements)}, fh)
            shutil.rmtree(final, ignore_errors=True)  # a folder without the marker is an old torn build
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return python


def _code_path(scratch: str) -> str:
    """A folder holding only a link to this deltaflow package, for the child's PYTHONPATH."""
    import deltaflow

    package = os.path.dirname(os.path.abspath(deltaflow.__file__))
    folder = os.path.join(scratch, "code-" + hashlib.sha256(package.encode()).hexdigest()[:12])
    link = os.path.join(folder, "deltaflow")
    if not os.path.islink(link):
        os.makedirs(folder, exist_ok=True)
        tmp = f"{link}.{os.getpid()}"
        os.symlink(package, tmp)
        os.replace(tmp, link)
    return folder


def _read_exact(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


class EnvPredictor:
    """A scoring child in the model's environment; ``predict`` sends one batch and waits for its answer."""

    def __init__(self, python: str, model_dir: str, scratch: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
        env.update(PYTHONPATH=_code_path(scratch), PYTHONNOUSERSITE="1")
        self._proc = subprocess.Popen([python, "-m", "deltaflow.serving._env_main", model_dir],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env)
        self._tail: collections.deque = collections.deque(maxlen=60)
        threading.Thread(target=self._drain, daemon=True, name="deltaflow-env-stderr").start()
        self.info = json.loads(self._receive(b"R"))

    def _drain(self) -> None:
        for line in self._proc.stderr:
            text = line.decode(errors="replace")
            self._tail.append(text)
            sys.stderr.write("[model env] " + text)

    def _receive(self, expected: bytes) -> bytes:
        try:
            kind = _read_exact(self._proc.stdout, 1)
            (size,) = struct.unpack("<Q", _read_exact(self._proc.stdout, 8))
            body = _read_exact(self._proc.stdout, size)
        except EOFError:
            self._proc.wait(timeout=30)
            raise InvalidState(f"the model's virtualenv process exited with status {self._proc.returncode}: "
                               f"{''.join(self._tail)[-3000:]}") from None
        if kind == b"E":
            raise InvalidState(f"the model raised in its virtualenv: {body.decode(errors='replace')}")
        if kind != expected:
            raise InvalidState(f"unexpected reply {kind!r} from the model's virtualenv process")
        return body

    def predict(self, frame: Any, params: Optional[dict[str, Any]]) -> Any:
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        header = json.dumps({"params": params}, default=str).encode()
        body = struct.pack("<I", len(header)) + header + sink.getvalue().to_pybytes()
        try:
            self._proc.stdin.write(struct.pack("<Q", len(body)) + body)
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._receive(b"K")  # raises with the child's own last words
        reply = self._receive(b"K")
        return pa.ipc.open_stream(reply).read_all().to_pandas()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
