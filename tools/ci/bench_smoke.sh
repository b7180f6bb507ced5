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
BASELINES=$(mktemp -d)
trap 'rm -rf "$BASELINES"' EXIT

"$DP" bench benchmarks/suites/smoke.toml --baselines "$BASELINES" --save ci-smoke

"$DP" bench benchmarks/suites/smoke.toml --baselines "$BASELINES" --compare ci-smoke

set +e
"$DP" bench benchmarks/suites/smoke-regressed.toml --baselines "$BASELINES" --compare ci-smoke \
  --json "$BASELINES/regressed.json"
rc=$?
set -e
if [ "$rc" -ne 1 ]; then
  echo "bench smoke: the gate should have failed the 4x wider model with exit 1, got $rc" >&2
  exit 1
fi
echo "bench smoke: identical run passed, the 4x wider model was caught"
