#!/usr/bin/env bash
# Data-parallel scaling of the 270M config: the same global batch on 1..N GPUs, tokens/s from the
# metrics of real training steps (median of the steps after the first 3).
#   scripts/dp_scaling.sh SEQ_LEN GLOBAL_BATCH "1 2 4" [ATTENTION_CONFIG]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LIGHTHOUSE_BIN:-$here/build/lighthouse}
T=$1; G=$2; gpus=$3; cfg=${4:-$here/configs/llama270m_98k_dense.json}
work=${WORK_DIR:-/tmp/dp_scaling_$T}
mkdir -p "$work" && cd "$work"
[ -d data ] || "$bin" data synthetic --task toy --out data --length $((T + 1)) --train-samples $((G * 12)) --val-samples 8 >/dev/null
for n in $gpus; do
  rm -rf "runs/g$n"
  common=(--config "$cfg" --quiet --set "data.train=[\"data/train_*.bin\"]" --set "data.val=[\"data/val_*.bin\"]"
          --set data.seq_len=$T --set data.micro_batch=1 --set training.global_batch=$G --set training.grad_accum=0
          --set training.steps=8 --set training.eval_interval=0 --set training.checkpoint_interval=0
          --set training.deterministic=false --set schedule.warmup_steps=2 --set "attention.phases=[]" --set logging.dir=runs/g$n --set logging.interval=1)
  if [ "$n" = 1 ]; then "$bin" train "${common[@]}"; else "$bin" launch --gpus "$n" -- train "${common[@]}"; fi
  python3 - "runs/g$n/metrics.jsonl" "$n" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"step_ms"' in l][3:]
ms = statistics.median(r["step_ms"] for r in recs)
tok = recs[0]["tokens"] / recs[0]["step"]
print(f"gpus={sys.argv[2]} step {ms:.1f} ms, {tok / ms * 1e3:,.0f} tokens/s, {tok / ms * 1e3 / int(sys.argv[2]):,.0f} per GPU")
PY
done
