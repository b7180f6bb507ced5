#!/usr/bin/env bash
# On an NVIDIA GPU host: run the gpu test tier, then a short dense-vs-pruned latency
# benchmark (tools/bench_gpu.py), and write both as JSON to OUT_DIR:
#   gpu_tests.xml / gpu_tests.txt   the pytest run (junit XML and its console output)
#   bench_gpu.json                  dense vs pruned ResNet-50 latencies and speed-ups
#   gpu_check.json                  summary: test counts, benchmark file, machine
#
#   tools/gpu_check.sh [OUT_DIR]            (default: benchmarks/results/gpu-check)
#   BENCH_ARGS="--backends torch,torch-compile,trt" tools/gpu_check.sh   (more backends)
#
# Exit code: that of the test run (the benchmark's numbers are reported, not judged).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-benchmarks/results/gpu-check}
mkdir -p "$OUT"

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
  "gpu_check: torch sees no CUDA device; run this on an NVIDIA GPU host")' || exit 2

"$PY" -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml" \
  2>&1 | tee "$OUT/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}

# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
"$PY" tools/bench_gpu.py --out "$OUT/bench_gpu.json" \
  ${BENCH_ARGS:---backends torch,trt,ort-cuda --repeats 3 --iterations 100}
bench_rc=$?

"$PY" - "$OUT" "$tests_rc" "$bench_rc" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
from deploypipe.measure.fingerprint import hardware_fingerprint

out, tests_rc, bench_rc = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
try:
    for suite in ET.parse(out / "gpu_tests.xml").getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
except (OSError, ET.ParseError):
    pass
summary = {"tests": counts, "tests_exit_code": tests_rc, "bench_exit_code": bench_rc,
           "bench": str(out / "bench_gpu.json") if (out / "bench_gpu.json").is_file() else None,
           "machine": hardware_fingerprint().to_dict()}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"gpu_check: {counts['tests']} gpu tests, {counts['failures'] + counts['errors']} failed, "
      f"{counts['skipped']} skipped; wrote {out / 'gpu_check.json'}")
EOF
exit "$tests_rc"
