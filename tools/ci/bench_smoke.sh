#!/usr/bin/env bash
# Smoke test of `deploypipe bench` and its regression gate on the CI machine's CPU (run by
# .ci/run after the tests). It needs no stored baseline: it takes one in this job, then
#   1. the same suite must pass against it (exit 0: identical runs raise no alarm), and
#   2. smoke-regressed.toml, whose "mobilenet" case is 4x wider, must fail (exit 1).
# An inconclusive case (too noisy to judge) does not fail step 1; the suite's threshold is
# a wide 25 % so that a busy CI machine does not cry wolf. About 20-30 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
DP=${DEPLOYPIPE:-.venv/bin/deploypipe}
PY=${PYTHON:-.venv/bin/python}
BASELINES=$(mktemp -d)
trap 'rm -rf "$BASELINES"' EXIT

"$DP" bench benchmarks/suites/smoke.toml --baselines "$BASELINES" --save ci-smoke

"$DP" bench benchmarks/suites/smoke.toml --baselines "$BASELINES" --compare ci-smoke

# The wider model must be caught. A verdict of "inconclusive" means the machine was too
# noisy to judge this time (another job stole the cores), so that step is tried again, up
# to 3 times; judging the 4x wider model "ok" or "faster" is a gate bug and fails at once.
for attempt in 1 2 3; do
  set +e
  "$DP" bench benchmarks/suites/smoke-regressed.toml --baselines "$BASELINES" --compare ci-smoke \
    --json "$BASELINES/regressed.json"
  rc=$?
  set -e
  if [ "$rc" -eq 1 ]; then
    echo "bench smoke: identical run passed, the 4x wider model was caught (attempt $attempt)"
    exit 0
  fi
  if [ "$rc" -ne 0 ]; then
    echo "bench smoke: deploypipe bench exited $rc on the regressed suite" >&2
    exit 1
  fi
  status=$("$PY" - "$BASELINES/regressed.json" <<'PYEOF'
import json, sys

def cases(node):
    if isinstance(node, dict):
        if "case" in node and "status" in node:
            yield node
        for value in node.values():
            yield from cases(value)
    elif isinstance(node, list):
        for value in node:
            yield from cases(value)

print(" ".join(sorted({c["status"] for c in cases(json.load(open(sys.argv[1]))) if "mobilenet" in c["case"]})))
PYEOF
)
  if [ "$status" != "inconclusive" ]; then
    echo "bench smoke: the gate judged the 4x wider model '$status' instead of a regression" >&2
    exit 1
  fi
  echo "bench smoke: attempt $attempt was too noisy to judge the wider model; trying again" >&2
done
echo "bench smoke: the machine was too noisy to judge the 4x wider model in 3 attempts" >&2
exit 1
