#!/usr/bin/env bash
# On an NVIDIA GPU host: the GPU smoke run (tools/gpu_smoke.py), then the gpu test tier;
# both write to OUT_DIR:
#   gpu_smoke.json                  environment, backend choice, dense vs pruned latencies
#                                   and errors per backend, the latency-budget builds
#   gpu_tests.xml / gpu_tests.txt   the pytest run (junit XML and its console output)
#
#   tools/gpu_check.sh [OUT_DIR]            (default: benchmarks/results/gpu-check)
#   WORK=/tmp/smoke tools/gpu_check.sh OUT  (models and builds elsewhere; default OUT/work)
#   SMOKE_TIMEOUT=420 TESTS_TIMEOUT=120     (seconds; a run cut short keeps its JSON)
#
# Exit code: 2 without a GPU, else that of the smoke run or, if it passed, the test run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-benchmarks/results/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
  "gpu_check: torch sees no CUDA device; run this on an NVIDIA GPU host")' || exit 2

timeout "${SMOKE_TIMEOUT:-420}" "$PY" tools/gpu_smoke.py --out "$OUT" --work "${WORK:-$OUT/work}"
smoke_rc=$?
timeout "${TESTS_TIMEOUT:-120}" "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider \
  --junitxml "$OUT/gpu_tests.xml" tests/backends/test_gpu_tier.py tests/train/test_device.py 2>&1 | tee "$OUT/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}
echo "gpu_check: smoke exit $smoke_rc, gpu tests exit $tests_rc; results in $OUT"
[ "$smoke_rc" -ne 0 ] && exit "$smoke_rc"
exit "$tests_rc"
