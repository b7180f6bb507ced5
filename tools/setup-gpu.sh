#!/usr/bin/env bash
# The GPU stack of deploypipe in one virtual environment: PyTorch, ONNX Runtime (CUDA and
# TensorRT providers) and TensorRT, all CUDA 13 builds from the package registry, pinned in
# constraints-gpu.txt. Needs an NVIDIA driver 580 or newer and internet access (the TensorRT
# packages fetch NVIDIA's libraries while they install). The Dockerfile runs this script.
#
#   bash tools/setup-gpu.sh              # .venv-gpu in the checkout
#   VENV=/opt/venv bash tools/setup-gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip=("$VENV/bin/python" -m pip)
"${pip[@]}" install -q -c constraints.txt -c constraints-gpu.txt ".[gpu]"
# onnxruntime (a core dependency) and onnxruntime-gpu install the same Python module; the
# one installed last wins, so keep only the GPU build.
"${pip[@]}" uninstall -q -y onnxruntime
"${pip[@]}" install -q --force-reinstall --no-deps -c constraints-gpu.txt onnxruntime-gpu
"$VENV/bin/deploypipe" list backends
echo "deploypipe's GPU stack installed in $VENV" >&2
