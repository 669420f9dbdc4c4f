"""The environment saved with a model: requirements.txt, python_env.yaml and conda.yaml.

MLflow infers requirements by reloading the model in a subprocess and watching its imports, which
costs 6-22 s per ``log_model``. Here they come from what we already know, in milliseconds: each
flavor names the libraries it needs, pickled objects are scanned for the modules they reference
(pickle opcodes only, nothing is unpickled), and versions are read from ``importlib.metadata``.
"""

from __future__ import annotations

import os
import pickletools
import platform
import re
from importlib import metadata
from typing import Iterable, Optional

__all__ = ["requirements_for", "modules_in_pickle", "write_environment", "distribution_version"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Distributions never worth pinning for a model (build tools, test tools).
_SKIP = {"pip", "setuptools", "wheel", "pytest", "pluggy", "iniconfig"}


def distribution_version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# Import names that differ from their distribution's name. Other modules are looked up under their
# own name; metadata.packages_distributions() would find every mapping but costs ~0.5 s per process.
_ALIASES = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "Pillow", "cv2": "opencv-python",
            "skimage": "scikit-image", "dateutil": "python-dateutil", "google.protobuf": "protobuf",
            "delta": "delta-spark", "deltalake": "deltalake", "bs4": "beautifulsoup4",
            "Crypto": "pycryptodome", "attr": "attrs", "jwt": "PyJWT", "lightgbm": "lightgbm",
            "catboost": "catboost", "torch": "torch", "tensorflow": "tensorflow", "xgboost": "xgboost"}


def modules_in_pickle(data: bytes) -> set[str]:
    """Top-level module names a pickle refers to: class/function globals and, for cloudpickled
    code, the modules its functions import by name (pickled as strings)."""
    names: set[str] = set()
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                names.add(arg.split(" ", 1)[0].split(".", 1)[0])
            elif isinstance(arg, str) and len(arg) < 200 and _IDENT.match(arg):
                names.add(arg.split(".", 1)[0])
    except Exception:  # noqa: BLE001 - a pickle we cannot walk just yields no extra pins
        return set()
    return names


def _dists_for_modules(modules: Iterable[str]) -> set[str]:
    import sys

    out: set[str] = set()
    for module in modules:
        # Only modules loaded now (so the model really uses them) and not part of Python itself.
        if module not in sys.modules or module in sys.stdlib_module_names or module.startswith("_"):
            continue
        for dist in (_ALIASES.get(module), module, module.replace("_", "-")):
            if dist and distribution_version(dist) is not None:
                out.add(dist)
                break
    return out


def requirements_for(libraries: Iterable[str], pickled: Optional[bytes] = None,
                     pip_requirements: Optional[Iterable[str]] = None,
                     extra_pip_requirements: Optional[Iterable[str]] = None) -> list[str]:
    """Pinned requirement lines: MLflow first (its loaders are named in MLmodel), then deltaflow,
    then the flavor's libraries and those the pickled object references, sorted."""
    if pip_requirements is not None:
        return [str(r) for r in pip_requirements]
    dists = {d for d in libraries}
    if pickled is not None:
        dists |= _dists_for_modules(modules_in_pickle(pickled))
    lines: list[str] = []
    head = []
    mlflow = distribution_version("mlflow") or distribution_version("mlflow-skinny")
    if mlflow:
        head.append(f"mlflow=={mlflow}")
    own = distribution_version("deltaflow")
    if own is None:
        from deltaflow import __version__ as own
    head.append(f"deltaflow=={own}")
    seen = {"mlflow", "mlflow-skinny", "deltaflow"}
    for dist in sorted(dists, key=str.lower):
        key = dist.lower().replace("_", "-")
        if key in seen or key in _SKIP:
            continue
        seen.add(key)
        version = distribution_version(dist)
        if version is None and dist == "pyspark":  # Databricks runtimes ship pyspark without metadata
            try:
                import pyspark

                version = pyspark.__version__
            except ImportError:
                version = None
        if version is not None:
            lines.append(f"{dist}=={version}")
    lines = head + lines
    lines += [str(r) for r in (extra_pip_requirements or [])]
    return lines


def write_environment(path: str, requirements: list[str]) -> dict[str, str]:
    """Write the three environment files; return the ``env`` entry for the pyfunc flavor."""
    import yaml

    python = platform.python_version()
    pip = distribution_version("pip")
    setuptools = distribution_version("setuptools")
    with open(os.path.join(path, "requirements.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(requirements))
    python_env = {
        "python": python,
        "build_dependencies": [f"pip=={pip}" if pip else "pip",
                               f"setuptools=={setuptools}" if setuptools else "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    with open(os.path.join(path, "python_env.yaml"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(python_env, fh, default_flow_style=False, sort_keys=False)
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", f"pip<={pip}" if pip else "pip", {"pip": list(requirements)}],
        "name": "mlflow-env",
    }
    with open(os.path.join(path, "conda.yaml"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(conda, fh, default_flow_style=False, sort_keys=False)
    return {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
