#!/usr/bin/env bash
# Issue 23 on the GPU machine: resnet56 trained on CIFAR-10 on the GPU (data held there,
# channels-last, bfloat16 autocast), then pruned at 2x and 3x fewer MACs by deploypipe and
# Torch-Pruning from that checkpoint and fine-tuned alike (tools/bench_cifar.py --device cuda).
#
#   tools/gpu_cifar.sh --prepare        here, before the run: copies the CIFAR-10 archive and
#                                        torch_pruning (pure Python; the GPU image lacks it)
#                                        into bench_cache/ (git-ignored; name it in `carry`)
#   tools/gpu_cifar.sh OUT              on the GPU host: results to OUT/cifar10_gpu.json, the
#                                        dense checkpoint and the finished cells beside it
#
#   DENSE_EPOCHS=60 FT_EPOCHS=5 BUDGETS=2 ARCHS=resnet56 DEADLINE=7 (minutes before no new
#   cell starts; a rerun while the machine is warm resumes from bench_cache/cifar)
#   VARIANTS=...  (default: the 2x comparison the issue asks for first; pruning and each
#   deploypipe CLI run happen on the host's CPU, about half a minute a cell)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p bench_cache/pylib
  cp ../shared/data/cifar10-jpeg.tar.gz bench_cache/cifar10-jpeg.tar.gz || exit 2
  src=$("$PY" -c "import torch_pruning, os; print(os.path.dirname(torch_pruning.__file__))") || exit 2
  rm -rf bench_cache/pylib/torch_pruning && cp -r "$src" bench_cache/pylib/ || exit 2
  find bench_cache/pylib -name __pycache__ -prune -exec rm -rf {} +
  du -sh bench_cache/cifar10-jpeg.tar.gz bench_cache/pylib
  echo "carry: bench_cache/cifar10-jpeg.tar.gz bench_cache/pylib (and bench_cache/cifar to resume)"
  exit 0
fi

OUT=${1:?usage: tools/gpu_cifar.sh OUT  (or --prepare)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/bench_cache/pylib${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=${DEVICE:-cuda}
[ "$DEVICE" = cpu ] || "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
  "gpu_cifar: torch sees no CUDA device; run this on an NVIDIA GPU host")' || exit 2
"$PY" tools/bench_cifar.py --device "$DEVICE" --archive bench_cache/cifar10-jpeg.tar.gz \
  --archs "${ARCHS:-resnet56}" --budgets "${BUDGETS:-2}" \
  --variants "${VARIANTS:-tp_l2_global,dp_cpli_percost,dp_cpli,dp_fisher_percost_r1,tp_l2_uniform,dp_default,dp_l2_global,dp_l2_global_r1,tp_taylor_global,dp_cpli_r1}" --dense-epochs "${DENSE_EPOCHS:-60}" \
  --finetune-epochs "${FT_EPOCHS:-5}" --finetune-images 40000 --finetune-lr "${FT_LR:-0.02}" \
  --threads "${THREADS:-8}" --deadline "${DEADLINE:-7}" ${EXTRA:-} --out "$OUT/cifar10_gpu.json" 2>&1 | tee "$OUT/bench_cifar.log"
rc=${PIPESTATUS[0]}
cp bench_cache/cifar/cells.json "$OUT/" 2>/dev/null
cp bench_cache/cifar/*_s0_e*.pt "$OUT/" 2>/dev/null
echo "gpu_cifar: exit $rc; results in $OUT"
exit "$rc"
