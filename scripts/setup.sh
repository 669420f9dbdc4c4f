#!/usr/bin/env bash
# Set up a development environment from nothing but Python 3.10+, Java 17 and the package
# registries: a virtualenv at .venv, deltaflow installed editable with its extras, and the Delta
# JARs fetched from Maven Central into ~/.cache/deltaflow/jars (so later runs work offline).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${DELTAFLOW_EXTRAS:-spark,serving,dev,bench}"

if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  echo "setup: Java 17 is required for Spark (install a JDK 17 or set JAVA_HOME)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Skip the (slow) resolver when nothing changed since the last successful install.
stamp=".venv/.deltaflow-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # uv installs the same versions as pip (both take the newest that fit pyproject.toml) in well under a
  # minute where pip took ~5 (a clean clone here); byte-compiled, as pip does. pip when uv is unavailable.
  # setuptools is upgraded too: pyspark 3.5 imports distutils.version, which the venv's bundled
  # setuptools (65.5 on Python 3.11) serves in 0.41 s per process, a current one in ~0.12 s; every
  # Python worker Spark starts for an Arrow UDF pays it.
  if .venv/bin/python -m pip install -q uv; then
    UV_COMPILE_BYTECODE=1 .venv/bin/python -m uv pip install -q --python .venv/bin/python --upgrade pip setuptools \
      -e ".[$EXTRAS]"
  else
    .venv/bin/python -m pip install -q --upgrade pip setuptools
    .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  fi
  echo "$want" > "$stamp"
fi
# Byte-compile the editable source once: where PYTHONDONTWRITEBYTECODE is set, every process would
# otherwise recompile each deltaflow module it imports (~90 ms per CLI call).
.venv/bin/python -m compileall -q src >/dev/null
.venv/bin/deltaflow doctor --fetch-jars --no-spark-check
