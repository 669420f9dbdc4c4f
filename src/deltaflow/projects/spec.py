"""The MLproject file: parsed, typed and validated before anything runs.

MLflow's schema (``name``, ``entry_points`` with ``parameters`` and ``command``, ``python_env``,
``conda_env``, ``docker_env``, ``databricks_spark_job``), with the checks MLflow documents but does
not make: every field has its type, a parameter's ``type`` is one of ``string``, ``float``, ``int``,
``path``, ``uri``, declared defaults match their type, every ``{placeholder}`` of a command names a
declared parameter, and the values given for a run are checked against their type. Each problem is an
:class:`~deltaflow.errors.InvalidArgument` naming the file, the entry point, the parameter and the
value.

Running follows MLflow: declared parameters are substituted into the command template; parameters the
entry point does not declare are appended as ``--key value``; ``path`` values become absolute local
paths; every substituted key and value is shell-quoted. A folder without an MLproject file (or an
entry point name the file does not declare) runs ``<name>.py`` with ``python`` and ``<name>.sh`` with
``$SHELL``.

Pure: reads files, never starts a process or touches a store.
"""

from __future__ import annotations

import os
import re
import shlex
import string
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from deltaflow.errors import InvalidArgument

__all__ = [
    "PARAMETER_TYPES",
    "ENV_FIELDS",
    "MLPROJECT_FILE_NAME",
    "Parameter",
    "EntryPoint",
    "DockerEnv",
    "DatabricksSparkJob",
    "Project",
    "load_project",
    "parse_project",
]

MLPROJECT_FILE_NAME = "MLproject"
PARAMETER_TYPES = ("string", "float", "int", "path", "uri")
ENV_FIELDS = ("python_env", "conda_env", "docker_env")
_TOP_LEVEL_KEYS = ("name", "entry_points", *ENV_FIELDS, "databricks_spark_job")
_ENTRY_POINT_KEYS = ("command", "parameters")
_PARAMETER_KEYS = ("type", "default")
_DEFAULT_PYTHON_ENV = "python_env.yaml"
_DEFAULT_CONDA_ENV = "conda.yaml"
# Script entry points: the interpreter each extension runs with (MLflow's choice).
_SCRIPT_RUNNERS = {".py": lambda: "python", ".sh": lambda: os.environ.get("SHELL") or "bash"}

_INT_RE = re.compile(r"^[+-]?\d+$")
# Decimal literals as Python's float() reads them, without its digit separators ("1_0").
_FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:nan|inf|infinity)$", re.IGNORECASE)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Parameter:
    """A declared parameter of an entry point; ``default`` None means the run must give a value."""

    name: str
    type: str = "string"
    default: Optional[str] = None

    def check(self, value: Any, where: str) -> str:
        """``value`` as command-line text if it is valid for this parameter's type (``path`` values
        are checked only for being text; :meth:`resolve` makes them absolute)."""
        what = f"parameter {self.name!r} ({self.type}) of {where}"
        if value is None:
            raise InvalidArgument(f"{what} got None; give a value or leave the parameter out")
        if isinstance(value, bool) and self.type in ("float", "int"):
            raise InvalidArgument(f"{what} got the boolean {value!r}; give a number")
        if self.type == "int":
            if isinstance(value, int):
                return str(value)
            text = str(value).strip() if isinstance(value, str) else None
            if text is None or not _INT_RE.match(text):
                raise InvalidArgument(f"{what} got {_show(value)}, which is not an integer (e.g. 3, -1)")
            return text
        if self.type == "float":
            if isinstance(value, (int, float)):
                return str(value)
            text = str(value).strip() if isinstance(value, str) else None
            if text is None or not _FLOAT_RE.match(text):
                raise InvalidArgument(f"{what} got {_show(value)}, which is not a number (e.g. 0.5, 1e-3, 2)")
            return text
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, (str, int, float)):
            raise InvalidArgument(f"{what} got {type(value).__name__} {_show(value)}; give text or a number")
        text = str(value)
        if self.type == "uri" and not urllib.parse.urlparse(text).scheme:
            raise InvalidArgument(f"{what} got {_show(text)}, which is not a URI (it needs a scheme, e.g. "
                                  "s3://bucket/data, dbfs:/data, file:///data)")
        if self.type == "path" and not text:
            raise InvalidArgument(f"{what} got an empty path")
        return text

    def resolve(self, value: Any, where: str, local_paths: bool = True) -> str:
        """The value the command gets: checked, and for ``path`` made an absolute local path that must
        exist (relative paths are taken from the launcher's working directory, as in MLflow). With
        ``local_paths=False`` (a remote backend) paths are passed on as given."""
        text = self.check(value, where)
        if self.type != "path" or not local_paths:
            return text
        parsed = urllib.parse.urlparse(text)
        if parsed.scheme == "file" and not parsed.netloc:
            text = urllib.parse.unquote(parsed.path)
        elif parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
            raise InvalidArgument(
                f"parameter {self.name!r} (path) of {where} got {text!r}, a {parsed.scheme}: URI; a path "
                "parameter takes a local file or folder (declare the parameter as type uri to pass a URI)")
        path = os.path.abspath(os.path.expanduser(text))
        if not os.path.exists(path):
            raise InvalidArgument(f"parameter {self.name!r} (path) of {where} got {text!r}, but no file or "
                                  f"folder exists at {path}")
        return path


@dataclass(frozen=True)
class EntryPoint:
    """An entry point: a command template and its declared parameters."""

    name: str
    command: str
    parameters: Mapping[str, Parameter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_template(self.command, self.parameters, self.where)

    @property
    def where(self) -> str:
        return f"entry point {self.name!r}"

    def resolve_parameters(self, given: Optional[Mapping[str, Any]] = None,
                           local_paths: bool = True) -> tuple[dict[str, str], dict[str, str]]:
        """(declared parameters with their values, the extra parameters given) as text: every value
        checked against its type, defaults filled in, a missing required parameter an error."""
        given = dict(given or {})
        for key in given:
            if not isinstance(key, str) or not key:
                raise InvalidArgument(f"parameter name {_show(key)} given to {self.where} must be non-empty text")
        missing = [n for n, p in self.parameters.items() if n not in given and p.default is None]
        if missing:
            raise InvalidArgument(
                f"{self.where} needs a value for {', '.join(repr(m) for m in missing)} (no default declared); "
                f"give it with -P {missing[0]}=<value>")
        declared = {name: param.resolve(given[name] if name in given else param.default, self.where, local_paths)
                    for name, param in self.parameters.items()}
        extra = {}
        for key, value in given.items():
            if key not in self.parameters:
                extra[key] = Parameter(key).check(value, self.where)
        return declared, extra

    def compute_command(self, given: Optional[Mapping[str, Any]] = None, local_paths: bool = True) -> str:
        """The shell command: the template with every value shell-quoted, then ``--key value`` for
        each parameter the entry point does not declare."""
        declared, extra = self.resolve_parameters(given, local_paths)
        return self.render(declared, extra)

    def render(self, declared: Mapping[str, str], extra: Mapping[str, str]) -> str:
        parts = []
        for literal, name, _spec, _conv in _template_fields(self.command, self.where):
            parts.append(literal)
            if name is not None:
                parts.append(shlex.quote(declared[name]))
        command = "".join(parts)
        for key, value in extra.items():
            command += f" --{shlex.quote(key)} {shlex.quote(value)}"
        return command


def _check_template(command: str, params: Mapping[str, Parameter], where: str) -> None:
    """Every placeholder of ``command`` is ``{name}`` of a declared parameter (no attribute, index,
    conversion or format spec: the value is substituted as quoted text, nothing else)."""
    for _lit, field_name, spec, conv in _template_fields(command, where):
        if field_name is None:
            continue
        if field_name not in params or spec or conv:
            placeholder = "{" + field_name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise InvalidArgument(
                f"command of {where} uses {placeholder}, which is not a declared parameter "
                f"(declared: {', '.join(params) or 'none'}); a placeholder is {{name}} of a declared "
                "parameter, and a literal brace is written {{ or }}")


def _template_fields(command: str, where: str) -> list[tuple[str, Optional[str], Optional[str], Optional[str]]]:
    try:
        return list(string.Formatter().parse(command))
    except ValueError as exc:  # a lone '{' or '}'
        raise InvalidArgument(f"command of {where} ({command!r}) is not a valid template: {exc}; write a "
                              "literal brace as {{ or }}") from None


@dataclass(frozen=True)
class DockerEnv:
    """``docker_env``: the image, extra volumes (``host:container``) and environment entries (a name
    to copy from the host, or a ``[name, value]`` pair)."""

    image: str
    volumes: tuple[str, ...] = ()
    environment: tuple[Union[str, tuple[str, str]], ...] = ()


@dataclass(frozen=True)
class DatabricksSparkJob:
    """``databricks_spark_job``: a Python file run as a Databricks Spark job (the databricks backend)."""

    python_file: Optional[str] = None
    parameters: tuple[str, ...] = ()
    python_libraries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    """A project folder and what its MLproject file declares (all empty when it has none)."""

    directory: str
    name: Optional[str] = None
    entry_points: Mapping[str, EntryPoint] = field(default_factory=dict)
    env_type: Optional[str] = None  # one of ENV_FIELDS, or None: no environment declared
    env_file: Optional[str] = None  # absolute path of the python_env / conda_env file
    docker_env: Optional[DockerEnv] = None
    databricks_spark_job: Optional[DatabricksSparkJob] = None
    mlproject_path: Optional[str] = None

    def get_entry_point(self, name: str) -> EntryPoint:
        """The declared entry point ``name``, else the script ``name`` (``.py``/``.sh``) in the folder."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"entry point {_show(name)} must be non-empty text")
        if name in self.entry_points:
            return self.entry_points[name]
        ext = os.path.splitext(name)[1]
        declared = sorted(self.entry_points)
        if ext in _SCRIPT_RUNNERS:
            path = os.path.normpath(os.path.join(self.directory, name))
            inside = os.path.commonpath([path, os.path.abspath(self.directory)]) == os.path.abspath(self.directory)
            if inside and os.path.isfile(path):
                return EntryPoint(name, f"{_SCRIPT_RUNNERS[ext]()} {shlex.quote(name)}", {})
            where = f" in {self.mlproject_path}" if self.mlproject_path else ""
            raise InvalidArgument(f"entry point {name!r} is not declared{where} and there is no script {name!r} in "
                                  f"project {self.directory}")
        listed = ", ".join(repr(d) for d in declared) if declared else "none declared"
        raise InvalidArgument(
            f"entry point {name!r} is not in project {self.directory} (entry points: {listed}); an entry "
            "point may also name a .py or .sh file of the project")


def _find_mlproject(directory: str) -> Optional[str]:
    for entry in os.listdir(directory):
        if entry.lower() == MLPROJECT_FILE_NAME.lower() and os.path.isfile(os.path.join(directory, entry)):
            return os.path.join(directory, entry)
    return None


def load_project(directory: Union[str, os.PathLike]) -> Project:
    """Read and validate ``<directory>/MLproject`` (any letter case); a folder without one is a project
    whose entry points are its scripts."""
    import yaml

    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise InvalidArgument(f"project folder {directory!r} does not exist or is not a folder")
    path = _find_mlproject(directory)
    data: Any = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"{path} is not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{path} is not UTF-8 text: {exc}") from None
    return parse_project(data if data is not None else {}, directory, path)


def parse_project(data: Any, directory: str, source: Optional[str] = None) -> Project:
    """Validate a loaded MLproject mapping (``source`` names the file in errors)."""
    where = source or f"the MLproject of {directory}"
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{where} must be a mapping of fields ({', '.join(_TOP_LEVEL_KEYS)}), "
                              f"got {type(data).__name__}")
    unknown = [k for k in data if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise InvalidArgument(f"{where} has unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                              f"allowed: {', '.join(_TOP_LEVEL_KEYS)}")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(f"{where}: name {_show(name)} must be text")
    envs = [k for k in ENV_FIELDS if data.get(k) is not None]
    if len(envs) > 1:
        raise InvalidArgument(f"{where} declares {' and '.join(envs)}; a project has at most one environment")
    entry_points = _parse_entry_points(data.get("entry_points"), where)
    env_type, env_file, docker = None, None, None
    if envs == ["docker_env"]:
        env_type, docker = "docker_env", _parse_docker(data["docker_env"], where)
    elif envs:
        env_type = envs[0]
        env_file = _env_file(data[env_type], env_type, directory, where)
    elif os.path.isfile(os.path.join(directory, _DEFAULT_PYTHON_ENV)):
        env_type, env_file = "python_env", os.path.join(directory, _DEFAULT_PYTHON_ENV)
    elif os.path.isfile(os.path.join(directory, _DEFAULT_CONDA_ENV)):
        env_type, env_file = "conda_env", os.path.join(directory, _DEFAULT_CONDA_ENV)
    spark_job = _parse_spark_job(data.get("databricks_spark_job"), entry_points, env_type, where)
    return Project(directory=directory, name=name, entry_points=entry_points, env_type=env_type,
                   env_file=env_file, docker_env=docker, databricks_spark_job=spark_job, mlproject_path=source)


def _parse_entry_points(raw: Any, where: str) -> dict[str, EntryPoint]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: entry_points must map entry point names to their command and "
                              f"parameters, got {type(raw).__name__}")
    out = {}
    for ep_name, body in raw.items():
        if not isinstance(ep_name, str) or not ep_name:
            raise InvalidArgument(f"{where}: entry point name {_show(ep_name)} must be non-empty text")
        ep_where = f"entry point {ep_name!r} in {where}"
        if not isinstance(body, Mapping):
            raise InvalidArgument(f"{ep_where} must be a mapping with 'command' (and 'parameters'), got "
                                  f"{type(body).__name__} {_show(body)}")
        unknown = [k for k in body if k not in _ENTRY_POINT_KEYS]
        if unknown:
            raise InvalidArgument(f"{ep_where} has unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                                  f"allowed: {', '.join(_ENTRY_POINT_KEYS)}")
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise InvalidArgument(f"{ep_where} needs a command (text), got {_show(command)}")
        params = _parse_parameters(body.get("parameters"), ep_where)
        _check_template(command, params, ep_where)
        out[ep_name] = EntryPoint(ep_name, command, params)
    return out


def _parse_parameters(raw: Any, ep_where: str) -> dict[str, Parameter]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"parameters of {ep_where} must map names to a type or to "
                              f"{{type, default}}, got {type(raw).__name__}")
    out = {}
    for p_name, spec in raw.items():
        if not isinstance(p_name, str) or not p_name:
            raise InvalidArgument(f"parameter name {_show(p_name)} of {ep_where} must be non-empty text")
        p_where = f"parameter {p_name!r} of {ep_where}"
        default = None
        if isinstance(spec, str):  # shorthand: `alpha: float`
            p_type = spec
        elif isinstance(spec, Mapping):
            unknown = [k for k in spec if k not in _PARAMETER_KEYS]
            if unknown:
                raise InvalidArgument(f"{p_where} has unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                                      f"allowed: {', '.join(_PARAMETER_KEYS)}")
            p_type = spec.get("type", "string")
            default = spec.get("default")
        elif spec is None:
            p_type = "string"
        else:
            raise InvalidArgument(f"{p_where} must be a type name or a mapping with type and default, got "
                                  f"{type(spec).__name__} {_show(spec)}")
        if p_type not in PARAMETER_TYPES:
            raise InvalidArgument(f"{p_where} has type {_show(p_type)}; allowed types: {', '.join(PARAMETER_TYPES)}")
        param = Parameter(p_name, p_type)
        if default is not None:
            if isinstance(default, (list, dict, set)):
                raise InvalidArgument(f"default of {p_where} is a {type(default).__name__}; give a single value")
            # A declared default is checked like a given value (paths: only that they are text, since
            # they are resolved against the launcher's folder at run time).
            try:
                text = Parameter(p_name, p_type).check(default, ep_where)
            except InvalidArgument as exc:
                raise InvalidArgument(f"default of {p_where} is invalid: {exc}") from None
            param = Parameter(p_name, p_type, text)
        out[p_name] = param
    return out


def _env_file(value: Any, env_type: str, directory: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{where}: {env_type} {_show(value)} must name a file of the project")
    path = os.path.normpath(os.path.join(directory, value))
    if not os.path.isfile(path):
        raise InvalidArgument(f"{where}: {env_type} names {value!r}, but there is no such file at {path}")
    return path


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what} must be a list of text, got {_show(value)}")
    return tuple(value)


def _parse_docker(raw: Any, where: str) -> DockerEnv:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: docker_env must be a mapping with an image, got {_show(raw)}")
    unknown = [k for k in raw if k not in ("image", "volumes", "environment")]
    if unknown:
        raise InvalidArgument(f"{where}: docker_env has unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                              "allowed: image, volumes, environment")
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidArgument(f"{where}: docker_env needs an image (text), got {_show(image)}")
    volumes = _str_list(raw.get("volumes"), f"{where}: docker_env volumes (host:container)")
    if raw.get("environment") is not None and not isinstance(raw.get("environment"), list):
        raise InvalidArgument(f"{where}: docker_env environment must be a list, got {_show(raw.get('environment'))}")
    environment: list[Union[str, tuple[str, str]]] = []
    for entry in raw.get("environment") or []:
        if isinstance(entry, str) and entry:
            environment.append(entry)
        elif isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry):
            environment.append((entry[0], entry[1]))
        else:
            raise InvalidArgument(f"{where}: docker_env environment entry {_show(entry)} must be a variable name "
                                  "to copy from the host or a [name, value] pair")
    return DockerEnv(image, volumes, tuple(environment))


def _parse_spark_job(raw: Any, entry_points: Mapping[str, EntryPoint], env_type: Optional[str],
                     where: str) -> Optional[DatabricksSparkJob]:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: databricks_spark_job must be a mapping, got {_show(raw)}")
    unknown = [k for k in raw if k not in ("python_file", "parameters", "python_libraries")]
    if unknown:
        raise InvalidArgument(f"{where}: databricks_spark_job has unknown field(s) "
                              f"{', '.join(repr(k) for k in unknown)}; allowed: python_file, parameters, "
                              "python_libraries")
    python_file = raw.get("python_file")
    if python_file is not None and not isinstance(python_file, str):
        raise InvalidArgument(f"{where}: databricks_spark_job python_file {_show(python_file)} must be text")
    if (python_file is None) == (not entry_points):
        raise InvalidArgument(f"{where}: databricks_spark_job needs exactly one of python_file and entry_points")
    if env_type is not None:
        raise InvalidArgument(f"{where}: a databricks_spark_job project cannot declare {env_type}")
    for ep in entry_points.values():
        for param in ep.parameters.values():
            if param.type == "path":
                raise InvalidArgument(f"{where}: parameter {param.name!r} of entry point {ep.name!r} is of type "
                                      "path, which a databricks_spark_job cannot take")
    what = f"{where}: databricks_spark_job"
    return DatabricksSparkJob(python_file, _str_list(raw.get("parameters"), f"{what} parameters"),
                              _str_list(raw.get("python_libraries"), f"{what} python_libraries"))
