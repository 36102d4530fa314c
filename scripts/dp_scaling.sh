#!/usr/bin/env bash
# Data-parallel scaling of the 270M config: the same global batch on 1..N GPUs (gradient
# accumulation makes up the difference), tokens/s from the metrics of real training steps (median
# of the steps after the first 3), efficiency = tokens/s per GPU relative to 1 GPU.
#   scripts/dp_scaling.sh SEQ_LEN MICRO_BATCH GLOBAL_BATCH "1 2 4" [ATTENTION_JSON]
# ATTENTION_JSON: a phase's attention and options, e.g. '"attention":"dense"' (the default) or
#   '"attention":"lighthouse","options":{"levels":3,"pooling":4,"topk":1024,"dense_layers":[0,1,28,29]}'
# Extra `--set` arguments go in EXTRA (e.g. EXTRA="--set training.grad_bucket_mb=65536").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LIGHTHOUSE_BIN:-$here/build/lighthouse}
T=$1; MB=$2; G=$3; gpus=$4; attention=${5:-'"attention":"dense"'}
steps=8
work=${WORK_DIR:-/tmp/dp_scaling_$T}
mkdir -p "$work" && cd "$work"
[ -d data ] || "$bin" data synthetic --task toy --out data --length $((T + 1)) --train-samples $((G * 12)) --val-samples 8 >/dev/null
base=""
for n in $gpus; do
  rm -rf "runs/g$n"
  # shellcheck disable=SC2206
  common=(--config "$here/configs/llama270m_98k_dense.json" --quiet
          --set "data.train=[\"data/train_*.bin\"]" --set "data.val=[]"
          --set data.seq_len=$T --set data.micro_batch=$MB --set training.global_batch=$G --set training.grad_accum=0
          --set training.steps=$steps --set training.eval_interval=0 --set training.checkpoint_interval=0
          --set training.deterministic=false --set schedule.warmup_steps=2
          --set "attention.phases=[{\"until_step\":$steps,$attention}]" --set logging.dir=runs/g$n --set logging.interval=1
          ${EXTRA:-})
  if [ "$n" = 1 ]; then "$bin" train "${common[@]}"; else "$bin" launch --gpus "$n" -- train "${common[@]}"; fi
  base=$(python3 - "runs/g$n/metrics.jsonl" "$n" "$base" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"step_ms"' in l][3:]
ms = statistics.median(r["step_ms"] for r in recs)
tok = recs[0]["tokens"] / recs[0]["step"]
n = int(sys.argv[2]); per_gpu = tok / ms * 1e3 / n
base = float(sys.argv[3]) if sys.argv[3] else per_gpu
print(f"gpus={n} step {ms:.1f} ms, {tok / ms * 1e3:,.0f} tokens/s, {per_gpu:,.0f} per GPU, efficiency {per_gpu / base:.1%}",
      file=sys.stderr)
print(base)
PY
)
done
