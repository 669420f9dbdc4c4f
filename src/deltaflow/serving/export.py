"""``deltaflow models export``: a folder that predicts with neither Spark, the store nor deltaflow.

The folder holds ``model/`` (a copy of the model as saved, so MLflow and deltaflow still load it),
``predict.py`` (:mod:`deltaflow.serving.export_runner`, copied verbatim: standard library, pandas and
numpy only), ``bundle.json`` (the model's kind, files and signature in plain JSON, so the runner needs
no YAML parser), ``requirements.txt`` (pinned) and a short ``README.md``.

What can be exported: scikit-learn models (cloudpickle, pickle or skops) and custom Python models
(``python_model`` pickles, compressed or not), saved by deltaflow or by MLflow. The model file's pickle
is read (opcodes only, nothing is unpickled) for the classes and functions it refers to: of deltaflow
it may use only the ``deltaflow.pyfunc`` base classes, which the runner stands in for (anything else
is refused, naming it); a pickle that refers to MLflow's code (MLflow 3 wraps a custom model's
``predict`` with its own) keeps the model's ``mlflow`` pin. Spark ML models (they need a JVM), other
MLflow flavors (they need MLflow's loaders) and models-from-code are refused with the reason.

requirements.txt: the model's own pins without mlflow (unless its pickle needs it), deltaflow and the
Spark and store libraries, plus the runner's (pandas, numpy; cloudpickle or skops for the model
file), pinned to the versions installed where the export runs when the model does not pin them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["ExportedBundle", "export_model", "bundle_requirements", "pickle_globals", "DROPPED_REQUIREMENTS"]

# Never needed to predict from the bundle: the tracking and Spark side of the lifecycle.
DROPPED_REQUIREMENTS = ("mlflow", "mlflow-skinny", "deltaflow", "pyspark", "delta-spark", "deltalake",
                        "databricks-sdk", "py4j")
_SKLEARN_LOADERS = ("mlflow.sklearn", "deltaflow.sklearn")
_PYFUNC_LOADERS = ("mlflow.pyfunc.model", "deltaflow.pyfunc")
_SPARK_LOADERS = ("mlflow.spark", "deltaflow.spark")
# What of deltaflow a custom model's pickle may refer to: the runner stands in for these.
_STAND_INS = {("deltaflow.pyfunc", n) for n in ("PythonModel", "PythonModelContext", "_FunctionModel")}
_OPENERS = {None: "builtins", "gzip": "gzip", "bzip2": "bz2", "lzma": "lzma"}
_PUSH_TEXT = ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING", "STRING")


@dataclass(frozen=True)
class ExportedBundle:
    path: str
    kind: str  # "sklearn" or "python_model"
    source: str
    version: Optional[int]
    requirements: list[str]


def _name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " ", "@"):
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def _model_requirements(model_dir: str) -> list[str]:
    path = os.path.join(model_dir, "requirements.txt")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.lstrip().startswith(("#", "-"))]


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """``(module, name)`` of every class and function a pickle refers to, read from its opcodes (the
    two strings pushed, or fetched from the memo, before each STACK_GLOBAL). Nothing is unpickled."""
    import pickletools

    found: set[tuple[str, str]] = set()
    recent: list[Optional[str]] = []  # what the last opcodes pushed, None for anything but text
    memo: dict[int, Optional[str]] = {}
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name == "GLOBAL" and isinstance(arg, str):
            module, _, attr = arg.partition(" ")
            found.add((module, attr))
        elif name == "STACK_GLOBAL" and len(recent) >= 2 and recent[-2] and recent[-1]:
            found.add((recent[-2], recent[-1]))  # type: ignore[arg-type]
        if name in _PUSH_TEXT:
            recent.append(arg if isinstance(arg, str) else None)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(arg)))
        elif opcode.stack_after and name not in ("MEMOIZE", "FRAME", "PROTO"):
            recent.append(None)
        del recent[:-2]
    return found


def _pickle_needs(path: str, compression: Optional[str], uri: str) -> list[str]:
    """Extra requirements for what the model's pickle refers to (``mlflow``), or InvalidArgument when it
    refers to deltaflow beyond the base classes the runner stands in for."""
    import importlib

    opener = importlib.import_module(_OPENERS[compression]).open
    with opener(path, "rb") as fh:
        refs = pickle_globals(fh.read())
    ours = sorted(f"{m}.{n}" for m, n in refs if m.split(".")[0] == "deltaflow" and (m, n) not in _STAND_INS)
    if ours:
        raise InvalidArgument(f"the model {uri!r} refers to {', '.join(ours)} of deltaflow, which an exported "
                              "bundle does not contain (it stands in only for deltaflow.pyfunc's PythonModel); "
                              "keep deltaflow code out of the model object, or serve it with `deltaflow "
                              "models serve`")
    return ["mlflow"] if any(m.split(".")[0] == "mlflow" for m, _ in refs) else []


def bundle_requirements(model_requirements: list[str], needs: list[str]) -> list[str]:
    """The model's pins minus :data:`DROPPED_REQUIREMENTS` (``mlflow`` kept when ``needs`` names it),
    plus ``needs`` pinned to installed versions."""
    from deltaflow.models.environment import distribution_version

    keep = {_name(n) for n in needs}
    lines = [r for r in model_requirements if _name(r) not in DROPPED_REQUIREMENTS or _name(r) in keep]
    have = {_name(r) for r in lines}
    for dist in needs:
        if _name(dist) in have:
            continue
        version = distribution_version(dist)
        lines.append(f"{dist}=={version}" if version else dist)
        have.add(_name(dist))
    return lines


def _spec(model_dir: str, meta: Any, uri: str) -> tuple[dict[str, Any], list[str]]:
    """bundle.json's content and the libraries the runner needs for this model."""
    from deltaflow.models._trust import model_file

    pyfunc = meta.flavors.get("python_function")
    if not isinstance(pyfunc, dict):
        raise InvalidArgument(f"the model {uri!r} has no python_function flavor (it has {sorted(meta.flavors)}); "
                              "only models with the generic interface can be exported")
    loader = pyfunc.get("loader_module")
    needs = ["pandas", "numpy"]
    spec: dict[str, Any] = {"format": 1, "source": uri, "python": platform.python_version()}
    if loader in _SPARK_LOADERS:
        raise InvalidArgument(f"the model {uri!r} is a Spark ML model (loader_module {loader!r}): it predicts "
                              "only inside a SparkSession, so it cannot be exported to run without Spark. "
                              "Score it with `deltaflow models score`")
    if loader in _SKLEARN_LOADERS:
        conf = meta.flavors.get("sklearn") or {}
        fmt = conf.get("serialization_format", "pickle")
        if fmt not in ("cloudpickle", "pickle", "skops"):
            raise InvalidArgument(f"the model {uri!r} uses serialization_format {fmt!r}; exportable: "
                                  "cloudpickle, pickle, skops")
        rel = pyfunc.get("model_path") or conf.get("pickled_model") or "model.pkl"
        path = model_file(model_dir, rel, "python_function.model_path")  # inside the folder
        spec.update(kind="sklearn", model_file=rel, serialization_format=fmt,
                    predict_fn=pyfunc.get("predict_fn") or "predict")
        needs += ["scikit-learn", "scipy"] + ({"cloudpickle": ["cloudpickle"], "skops": ["skops"]}.get(fmt, []))
        if fmt != "skops":
            needs += _pickle_needs(path, None, uri)
    elif loader in _PYFUNC_LOADERS:
        rel = pyfunc.get("python_model")
        if not isinstance(rel, str) or rel.endswith(".py"):
            raise InvalidArgument(f"the model {uri!r} is a model-from-code (python_model {rel!r}); only pickled "
                                  "custom Python models can be exported")
        compression = pyfunc.get("python_model_compression") or None
        if compression not in (None, "gzip", "bzip2", "lzma"):
            raise InvalidArgument(f"the model {uri!r} has python_model_compression {compression!r}; exportable: "
                                  "gzip, bzip2, lzma")
        needs += _pickle_needs(model_file(model_dir, rel, "python_function.python_model"), compression, uri)
        artifacts = {k: (v.get("path") if isinstance(v, dict) else v) for k, v in (pyfunc.get("artifacts") or {}).items()}
        for key, path in artifacts.items():
            model_file(model_dir, path, f"python_function.artifacts.{key}")
        spec.update(kind="python_model", model_file=rel, serialization_format="cloudpickle",
                    compression=compression, artifacts=artifacts, model_config=pyfunc.get("model_config"))
        needs.append("cloudpickle")
    else:
        raise InvalidArgument(f"the model {uri!r} is loaded by {loader!r}; exportable models are scikit-learn "
                              f"({', '.join(_SKLEARN_LOADERS)}) and custom Python models "
                              f"({', '.join(_PYFUNC_LOADERS)})")
    if pyfunc.get("code"):
        model_file(model_dir, pyfunc["code"], "python_function.code")
        spec["code"] = pyfunc["code"]
    signature = meta.signature
    spec["inputs"] = signature.inputs.to_dict() if signature is not None and signature.inputs is not None else None
    spec["params"] = ([p.to_dict() for p in signature.params] if signature is not None and
                      signature.params is not None else None)
    return spec, needs


_README = """# Exported model

Source: `{source}`{version}

Predicts with neither Spark, a tracking store nor deltaflow installed. Python {python} was used to
export it; use the same minor version.

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python predict.py input.csv            # JSON predictions on stdout
    .venv/bin/python predict.py input.json -o out.json  # MLflow scoring payloads (dataframe_split, ...)

From Python: `import predict; model = predict.load(); model.predict(frame)`.
`model/` is the model as saved: MLflow and deltaflow load it too.
"""


def export_model(uri: str, output_dir: str, *, tracking_uri: Optional[str] = None) -> ExportedBundle:
    """Write the bundle for ``uri`` to ``output_dir`` (which must not exist, or be empty)."""
    from deltaflow.models._trust import check_model
    from deltaflow.models.model import Model
    from deltaflow.serving import export_runner
    from deltaflow.serving.rest_models import model_folder
    from deltaflow.tracking.client import DeltaflowClient

    target = os.path.abspath(os.path.expanduser(output_dir))
    if os.path.isfile(target) or (os.path.isdir(target) and os.listdir(target)):
        raise InvalidArgument(f"output folder {output_dir!r} already exists and is not empty; export writes a "
                              "new folder (choose another, or remove it first)")
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        raise InvalidArgument(f"the parent folder of {output_dir!r} does not exist")
    # The default engine for the store: export also runs where Spark runs (metastore, dbfs:/ stores).
    model_dir, version = model_folder(uri, tracking_uri, DeltaflowClient(tracking_uri), None)
    meta = check_model(model_dir, Model.load(model_dir))
    spec, needs = _spec(model_dir, meta, uri)
    spec["version"] = version
    requirements = bundle_requirements(_model_requirements(model_dir), needs)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)  # renamed into place when complete
    try:
        shutil.copytree(model_dir, os.path.join(staging, "model"), symlinks=True)
        shutil.copyfile(export_runner.__file__, os.path.join(staging, "predict.py"))
        with open(os.path.join(staging, "bundle.json"), "w", encoding="utf-8") as fh:
            json.dump(spec, fh, indent=2)
        with open(os.path.join(staging, "requirements.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(requirements) + "\n")
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(_README.format(source=uri, python=spec["python"],
                                    version=f" (registry version {version})" if version is not None else ""))
        if os.path.isdir(target):
            os.rmdir(target)  # empty, checked above
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportedBundle(target, spec["kind"], uri, version, requirements)
