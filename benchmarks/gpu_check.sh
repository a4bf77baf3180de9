#!/usr/bin/env bash
# The GPU points of the open issues, in one script of at most about 8 minutes, for a session that is
# lent a GPU (run it at once, then commit results/benchmarks/gpu_check/). The machine needs the
# project installed (`make install`: .venv is too large to carry) and full MNIST in DATA_DIR
# (default ../shared/data). Every step has its own time limit; a stage the TF recipe did not finish
# resumes from artifacts/ when the script runs again. With --dry-run (the test suite, on CPU) it
# prints each step, writes nothing under results/ and runs only a CPU-sized AlexNet step.
#   bash benchmarks/gpu_check.sh            # on a GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # anywhere: the plan, and a CPU-sized AlexNet step
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/benchmarks/gpu_check}
export DATA_DIR=${DATA_DIR:-../shared/data}
DRY=0; [ "${1:-}" = "--dry-run" ] && DRY=1
[ "$DRY" = 1 ] && OUT=$(mktemp -d)
mkdir -p "$OUT"
step() {  # step <name> <seconds> <command...>: run with a time limit, log to $OUT/<name>.log
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*"
  if [ "$DRY" = 1 ]; then return 0; fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "   rc=$rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}
{ echo "gpu_check at $(git rev-parse --short HEAD) on $(date -u +%F)"; nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; } \
  > "$OUT/summary.txt"
step fp16_fused_cuda 120 "$PY" -m pytest -q tests/test_admm_module.py -k "cuda or applied"
step bf16_pipeline 90 "$PY" -m admm_pruning.train experiment=lenet5_admm_71x data=mnist10k trainer.accelerator=gpu \
  trainer.precision=bf16-mixed pretrain.epochs=1 pruner.iterations=2 pruner.epochs_per_iteration=0.5 retrain.epochs=1 \
  logger=csv paths.results_dir="$OUT/bf16"
step bench_gpu 150 "$PY" benchmarks/throughput.py --data mnist --epochs 1 --rounds 2 --device cuda --out "$OUT"
step alexnet_throughput 60 "$PY" benchmarks/alexnet_throughput.py --device cuda --steps 30 --out "$OUT/alexnet.json"
step lenet5_71x_tf_recipe 240 env ADMM_RESULTS="$OUT/results" "$PY" -m admm_pruning.train experiment=lenet5_admm_71x \
  data=mnist trainer.accelerator=gpu logger=csv
if [ "$DRY" = 1 ]; then
  "$PY" benchmarks/alexnet_throughput.py --device cpu --steps 1 --batch-size 2 > /dev/null && echo "dry run: ok"
  rm -rf "$OUT"
fi
