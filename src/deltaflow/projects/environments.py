"""Where an entry point runs: this Python environment, a cached virtualenv, a conda environment or a
Docker container.

The choice (MLflow's ``--env-manager``): a project that declares ``python_env`` runs in a virtualenv,
``conda_env`` in a conda environment, ``docker_env`` in a container, and a project that declares none
in the launcher's own environment; ``env_manager`` overrides it (``local`` for any project,
``virtualenv`` also for a conda file's pip dependencies or a ``requirements.txt``). Availability is
checked before a run is created (:func:`plan_environment`); the build happens afterwards
(:func:`prepare_environment`), while the run is SCHEDULED.

Virtualenvs and conda environments are cached by content hash under ``DELTAFLOW_ENV_CACHE`` (default
``~/.cache/deltaflow/envs``): the interpreter's version, the dependency lists and the text of the
requirement files they name. An environment is built once (under a file lock, so concurrent launchers
wait for one build) and marked complete only when every step succeeded; an incomplete one is rebuilt.
Virtualenvs are made with the standard library's ``venv``; dependencies are installed by the
launcher's pip into them (``pip --python``), so no pip is bootstrapped into each environment when the
launcher has one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from deltaflow.errors import DeltaflowError, InvalidArgument, MissingDependency
from deltaflow.projects.spec import DockerEnv, Project

__all__ = [
    "ENV_MANAGERS",
    "ENV_CACHE_ENV",
    "PythonEnv",
    "EnvironmentPlan",
    "Environment",
    "EnvBuildFailed",
    "env_cache_dir",
    "plan_environment",
    "prepare_environment",
    "docker_argv",
]

ENV_MANAGERS = ("local", "virtualenv", "conda")
ENV_CACHE_ENV = "DELTAFLOW_ENV_CACHE"
_MARKER = ".deltaflow-env.json"
_log = logging.getLogger("deltaflow.projects")
# Where the project folder is mounted inside a docker_env container.
DOCKER_PROJECT_DIR = "/deltaflow/project"


class EnvBuildFailed(DeltaflowError):
    """An environment could not be built (a dependency that does not install, a failed conda solve)."""

    error_code = "ENVIRONMENT_BUILD_FAILED"
    http_status = 500


def env_cache_dir() -> str:
    return os.path.abspath(os.path.expanduser(os.environ.get(ENV_CACHE_ENV) or "~/.cache/deltaflow/envs"))


@dataclass(frozen=True)
class PythonEnv:
    """MLflow's ``python_env.yaml``: a Python version, build dependencies, dependencies (pip lines)."""

    python: str
    build_dependencies: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()

    @classmethod
    def current(cls, dependencies: tuple[str, ...] = ()) -> "PythonEnv":
        return cls("{}.{}.{}".format(*sys.version_info[:3]), (), dependencies)

    @classmethod
    def from_yaml(cls, path: str) -> "PythonEnv":
        data = _read_yaml(path)
        unknown = [k for k in data if k not in ("python", "build_dependencies", "dependencies")]
        if unknown:
            raise InvalidArgument(f"{path} has unknown field(s) {', '.join(repr(k) for k in unknown)}; allowed: "
                                  "python, build_dependencies, dependencies")
        python = data.get("python")
        if isinstance(python, float):  # YAML reads `python: 3.10` as the number 3.1
            raise InvalidArgument(f"{path}: python: {python!r} is a number; quote the version, e.g. python: \"3.10\"")
        if python is not None and (not isinstance(python, str) or not re.fullmatch(r"3\.\d+(\.\d+)?", python.strip())):
            raise InvalidArgument(f"{path}: python {python!r} must be a version like \"3.11\" or \"3.11.4\"")
        return cls(python.strip() if python else cls.current().python,
                   _pip_lines(data.get("build_dependencies"), path, "build_dependencies"),
                   _pip_lines(data.get("dependencies"), path, "dependencies"))

    @classmethod
    def from_conda_yaml(cls, path: str) -> "PythonEnv":
        """The Python version and pip dependencies of a conda environment file (MLflow does the same for
        ``--env-manager virtualenv``); conda packages other than python and pip are not installable with
        pip and are refused."""
        data = _read_yaml(path)
        python, pip_lines, others = None, [], []
        for dep in data.get("dependencies") or []:
            if isinstance(dep, Mapping) and "pip" in dep:
                pip_lines.extend(_pip_lines(dep["pip"], path, "pip dependencies"))
            elif isinstance(dep, str) and re.match(r"^python(\s*[=<>!]|$)", dep):
                match = re.search(r"(3\.\d+(?:\.\d+)?)", dep)
                python = match.group(1) if match else None
            elif isinstance(dep, str) and re.match(r"^pip(\s*[=<>!]|$)", dep):
                continue
            else:
                others.append(str(dep))
        if others:
            raise InvalidArgument(f"{path} lists conda packages {', '.join(repr(o) for o in others)}, which a "
                                  "virtualenv cannot install; run with --env-manager conda, or move them under pip:")
        return cls(python or cls.current().python, (), tuple(pip_lines))


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{path} must be a mapping, got {type(data).__name__}")
    return dict(data)


def _pip_lines(value: Any, path: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidArgument(f"{path}: {what} must be a list of pip requirement lines, got {value!r}")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True)
class EnvironmentPlan:
    """The environment chosen for a run (checked available, not built yet)."""

    kind: str  # the mlflow.project.env tag: local, virtualenv, conda or docker
    python_env: Optional[PythonEnv] = None
    conda_file: Optional[str] = None
    docker: Optional[DockerEnv] = None
    source: Optional[str] = None  # the file the environment comes from, for messages


@dataclass(frozen=True)
class Environment:
    """A ready environment: its folder and the variables the entry point's process gets."""

    kind: str
    prefix: Optional[str] = None
    variables: Mapping[str, str] = field(default_factory=dict)
    docker: Optional[DockerEnv] = None
    reused: bool = False


def plan_environment(project: Project, env_manager: Optional[str]) -> EnvironmentPlan:
    """Choose the environment for ``project`` and check its tool is there (conda, a Docker engine, the
    requested Python), before anything is written."""
    if env_manager is not None and env_manager not in ENV_MANAGERS:
        raise InvalidArgument(f"env_manager {env_manager!r} is not known; use one of {', '.join(ENV_MANAGERS)}")
    if env_manager == "local":
        return EnvironmentPlan("local")
    if project.env_type == "docker_env":
        if env_manager is not None:
            raise InvalidArgument(f"project {project.directory} declares docker_env; it runs in its container "
                                  f"(leave out env_manager) or here with env_manager 'local', not {env_manager!r}")
        _check_docker()
        return EnvironmentPlan("docker", docker=project.docker_env)
    kind = env_manager or {"python_env": "virtualenv", "conda_env": "conda"}.get(project.env_type or "", "local")
    if kind == "local":
        return EnvironmentPlan("local")
    if kind == "conda":
        if project.env_type != "conda_env":
            raise InvalidArgument(f"env_manager 'conda' needs a conda_env (conda.yaml) in project {project.directory}; "
                                  f"it has {project.env_type or 'no environment file'}; use env_manager 'virtualenv' "
                                  "or 'local'")
        _conda_exe()
        return EnvironmentPlan("conda", conda_file=project.env_file, source=project.env_file)
    # virtualenv
    if project.env_type == "python_env":
        python_env, source = PythonEnv.from_yaml(project.env_file), project.env_file  # type: ignore[arg-type]
    elif project.env_type == "conda_env":
        python_env, source = PythonEnv.from_conda_yaml(project.env_file), project.env_file  # type: ignore[arg-type]
    elif os.path.isfile(os.path.join(project.directory, "requirements.txt")):
        source = os.path.join(project.directory, "requirements.txt")
        python_env = PythonEnv.current(("-r requirements.txt",))
    else:
        python_env, source = PythonEnv.current(), None
    _find_python(python_env.python, source)
    return EnvironmentPlan("virtualenv", python_env=python_env, source=source)


def prepare_environment(plan: EnvironmentPlan, project_dir: str) -> Environment:
    """Build (or reuse) the planned environment."""
    if plan.kind == "local":
        return Environment("local", sys.prefix, _local_activation())
    if plan.kind == "docker":
        return Environment("docker", docker=plan.docker)
    if plan.kind == "conda":
        prefix, reused = _conda_env(plan.conda_file)  # type: ignore[arg-type]
        return Environment("conda", prefix, {**_activation(prefix, "CONDA_PREFIX"), "CONDA_DEFAULT_ENV": prefix},
                           reused=reused)
    assert plan.python_env is not None  # noqa: S101 - set by plan_environment for virtualenv
    prefix, reused = _virtualenv(plan.python_env, project_dir, plan.source)
    return Environment("virtualenv", prefix, _activation(prefix, "VIRTUAL_ENV"), reused=reused)


def _local_activation() -> dict[str, str]:
    """``local``: the environment as it is, except that a launcher running from a virtualenv nobody
    activated (``.venv/bin/deltaflow``) activates it, so ``python`` is the interpreter deltaflow runs in.
    An environment the user activated (``VIRTUAL_ENV`` or ``CONDA_PREFIX`` naming another one) is left
    first on PATH."""
    if sys.prefix == sys.base_prefix:
        return {}
    activated = os.environ.get("VIRTUAL_ENV") or os.environ.get("CONDA_PREFIX")
    if activated and os.path.realpath(activated) != os.path.realpath(sys.prefix):
        return {}
    return _activation(sys.prefix, "VIRTUAL_ENV")


def _activation(prefix: str, variable: str) -> dict[str, str]:
    """What activating an environment does to the process environment: its bin folder first on PATH."""
    path = os.environ.get("PATH", "")
    return {"PATH": os.path.join(prefix, "bin") + (os.pathsep + path if path else ""), variable: prefix}


# -- virtualenv ---------------------------------------------------------------------------------
def _python_version(interpreter: str) -> Optional[str]:
    if os.path.realpath(interpreter) == os.path.realpath(sys.executable):
        return "{}.{}.{}".format(*sys.version_info[:3])
    try:
        out = subprocess.run([interpreter, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _find_python(wanted: str, source: Optional[str]) -> tuple[str, str]:
    """(interpreter, its full version) for a requested "3.X" or "3.X.Y": this one or python3.X on PATH.
    A different patch release of the same 3.X is used when the exact one is not there (logged)."""
    parts = wanted.split(".")
    minor = ".".join(parts[:2])
    candidates = [sys.executable, shutil.which(f"python{minor}")]
    found = []
    for interpreter in dict.fromkeys(c for c in candidates if c):
        version = _python_version(interpreter)
        if version is not None and (version == wanted or version.startswith(minor + ".") and len(parts) == 2):
            return interpreter, version
        if version is not None and version.startswith(minor + "."):
            found.append((interpreter, version))
    if found:
        _log.warning("deltaflow: Python %s is not installed; using %s (%s) for %s", wanted, found[0][1],
                     found[0][0], source or "the virtualenv")
        return found[0]
    raise MissingDependency(f"{source or 'the project'} asks for Python {wanted}, and neither this interpreter "
                            f"({sys.version.split()[0]}) nor a python{minor} on PATH is that version; install Python "
                            f"{minor} (pyenv, uv python install, or your package manager) or change the python: line")


def _referenced_files(lines: tuple[str, ...], project_dir: str) -> dict[str, str]:
    """sha256 of the requirement/constraint files the pip lines name, so editing them rebuilds."""
    out = {}
    for line in lines:
        match = re.match(r"^(?:-r|--requirement|-c|--constraint)[\s=]+(.+)$", line)
        if match:
            path = os.path.join(project_dir, match.group(1).strip())
            try:
                with open(path, "rb") as fh:
                    out[match.group(1).strip()] = hashlib.sha256(fh.read()).hexdigest()
            except OSError:
                raise InvalidArgument(f"requirement line {line!r} names {path}, which cannot be read") from None
    return out


def _cache_key(kind: str, spec: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{kind}-{digest[:24]}"


def _launcher_pip() -> bool:
    import importlib.util

    return importlib.util.find_spec("pip") is not None


def _run(argv: list[str], what: str, cwd: Optional[str] = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise EnvBuildFailed(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")


def _virtualenv(python_env: PythonEnv, project_dir: str, source: Optional[str]) -> tuple[str, bool]:
    interpreter, version = _find_python(python_env.python, source)
    spec = {"python": version, "interpreter": os.path.realpath(interpreter),
            "build_dependencies": list(python_env.build_dependencies),
            "dependencies": list(python_env.dependencies),
            "files": _referenced_files(python_env.build_dependencies + python_env.dependencies, project_dir)}
    prefix = os.path.join(env_cache_dir(), _cache_key("venv", spec))

    def build() -> None:
        with_pip = not _launcher_pip()
        _run([interpreter, "-m", "venv", *([] if with_pip else ["--without-pip"]), prefix], "creating the virtualenv")
        env_python = os.path.join(prefix, "bin", "python")
        pip = [env_python, "-m", "pip"] if with_pip else [sys.executable, "-m", "pip", "--python", env_python]
        pip += ["install", "--disable-pip-version-check", "--no-input", "-q"]
        if python_env.build_dependencies:
            _run(pip + list(python_env.build_dependencies), "installing build_dependencies", cwd=project_dir)
        if python_env.dependencies:
            import uuid

            # pip reads the lines from a file beside the project's own, so "-r requirements.txt" resolves there
            req = os.path.join(project_dir, f".deltaflow-requirements-{uuid.uuid4().hex[:8]}.txt")
            with open(req, "w", encoding="utf-8") as fh:
                fh.write("\n".join(python_env.dependencies) + "\n")
            try:
                _run(pip + ["-r", req], "installing dependencies", cwd=project_dir)
            finally:
                os.remove(req)

    what = f"virtualenv (Python {version}, {len(python_env.dependencies)} dependency lines)"
    return _cached(prefix, spec, build, what)


def _cached(prefix: str, spec: Mapping[str, Any], build: Any, what: str) -> tuple[str, bool]:
    """Build ``prefix`` once under a lock; (prefix, whether it was reused)."""
    import fcntl

    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    marker = os.path.join(prefix, _MARKER)
    with open(prefix + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per environment; other launchers wait, then reuse it
        if os.path.isfile(marker):
            return prefix, True
        if os.path.exists(prefix):  # an interrupted or failed build
            shutil.rmtree(prefix)
        _log.info("deltaflow: building %s in %s", what, prefix)
        started = time.monotonic()
        try:
            build()
        except BaseException:
            shutil.rmtree(prefix, ignore_errors=True)
            raise
        with open(marker, "w", encoding="utf-8") as fh:
            json.dump({**spec, "built_at": time.time(), "build_seconds": round(time.monotonic() - started, 2)}, fh)
        return prefix, False


# -- conda --------------------------------------------------------------------------------------
def _conda_exe() -> str:
    exe = os.environ.get("CONDA_EXE") or shutil.which("conda")
    if not exe or not os.path.isfile(exe):
        raise MissingDependency(
            "the project declares a conda environment, and conda is not installed (no conda on PATH, no CONDA_EXE); "
            "install Miniforge or Miniconda and put conda on PATH, or run with env_manager 'virtualenv' (the conda "
            "file's pip dependencies) or 'local' (this environment)")
    return exe


def _conda_env(conda_file: str) -> tuple[str, bool]:
    exe = _conda_exe()
    with open(conda_file, "rb") as fh:
        spec = {"conda_file": hashlib.sha256(fh.read()).hexdigest(), "platform": sys.platform}
    prefix = os.path.join(env_cache_dir(), _cache_key("conda", spec))
    build = lambda: _run([exe, "env", "create", "--quiet", "--prefix", prefix, "--file", conda_file],  # noqa: E731
                         "creating the conda environment")
    return _cached(prefix, spec, build, f"conda environment from {conda_file}")


# -- docker -------------------------------------------------------------------------------------
def _check_docker() -> None:
    if shutil.which("docker") is None:
        raise MissingDependency("the project declares docker_env, and the docker command is not on PATH; install "
                                "Docker (or Podman with its docker alias), or run with env_manager 'local'")
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=20)
        ok, detail = proc.returncode == 0 and bool(proc.stdout.strip()), (proc.stderr or proc.stdout).strip()
    except subprocess.TimeoutExpired:
        ok, detail = False, "docker info did not answer within 20 s"
    if not ok:
        first = next((line for line in detail.splitlines() if line.strip()), "no answer")
        raise MissingDependency(f"the project declares docker_env, and no Docker engine answers ({first}); start the "
                                "Docker daemon (or set DOCKER_HOST to a running one), or run with env_manager 'local'")


def docker_argv(docker: DockerEnv, project_dir: str, command: str, variables: Mapping[str, str],
                mounts: tuple[str, ...] = ()) -> list[str]:
    """``docker run`` for the entry point: the project mounted at /deltaflow/project (the working folder),
    ``mounts`` (host folders such as a local store, at the same path), the run's variables, the
    project's volumes and environment entries; the command runs under ``sh -c`` in the image."""
    argv = ["docker", "run", "--rm", "--init", "-v", f"{project_dir}:{DOCKER_PROJECT_DIR}", "-w", DOCKER_PROJECT_DIR]
    for folder in mounts:
        argv += ["-v", f"{folder}:{folder}"]
    for volume in docker.volumes:
        argv += ["-v", volume]
    for name, value in variables.items():
        argv += ["-e", f"{name}={value}"]
    for entry in docker.environment:
        argv += ["-e", entry if isinstance(entry, str) else f"{entry[0]}={entry[1]}"]
    return argv + [docker.image, "sh", "-c", command]
