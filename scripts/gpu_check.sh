#!/usr/bin/env bash
# On a GPU machine: builds (unless build/ already holds binaries built elsewhere), runs the GPU
# tests, the benchmarks and (if torch is installed) the PyTorch baselines of
# scripts/torch_reference.py, writes everything under OUT_DIR and ends with a short table.
#   scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
mkdir -p "$out"
if [ ! -x build/lighthouse ] || [ ! -x build/lighthouse_tests ]; then scripts/build.sh || exit 1; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1

build/lighthouse_tests "[gpu]" > "$out/gpu_tests.log" 2>&1
tests_rc=$?
# Again with our flash-attention backward for every call, not only the long ones that the default
# (auto) gives it (LH_ATTENTION_BACKWARD, docs/config.md).
LH_ATTENTION_BACKWARD=flash build/lighthouse_tests "[gpu]" > "$out/gpu_tests_flash.log" 2>&1
flash_tests_rc=$?
# The deterministic backward's workspace grows with N^2 (split into kv-head groups and key chunks
# above a quarter of the card): time it up to 64K, the atomic one to 128K.
LH_ATTENTION_BACKWARD=cudnn build/lighthouse bench --device cuda --out "$out/attention.json" attention \
  --seq-lens 4096 8192 16384 32768 65536 > "$out/bench_attention.log" 2>&1
build/lighthouse bench --device cuda --out "$out/attention_nondet.json" attention --non-deterministic \
  --seq-lens 4096 16384 65536 131072 > "$out/bench_attention_nondet.log" 2>&1
LH_ATTENTION_BACKWARD=flash build/lighthouse bench --device cuda --out "$out/attention_flash.json" attention \
  --seq-lens 4096 8192 16384 32768 65536 > "$out/bench_attention_flash.log" 2>&1
build/lighthouse bench --device cuda --out "$out/lighthouse.json" lighthouse \
  --seq-lens 32768 65536 98304 131072 > "$out/bench_lighthouse.log" 2>&1
# The model's GEMMs alone at 8 x 4K tokens (the same shapes as 1 x 32K): tuned choice against the
# heuristic's first, each shape's candidates.
build/lighthouse bench --device cuda --out "$out/gemm.json" gemm --config configs/llama270m_98k_dense.json \
  --set data.seq_len=4096 --set data.micro_batch=8 --candidates 8 > "$out/bench_gemm.log" 2>&1
# The training step with the default attention backward (auto: cuDNN's at these lengths) and with
# ours for every call (flash), back to back.
for T in 4096 32768; do
  mb=$(( 32768 / T )); [ "$mb" -lt 1 ] && mb=1
  for bwd in auto flash; do
    build/lighthouse bench --device cuda --out "$out/train_${T}_$bwd.json" train --config configs/llama270m_98k_dense.json \
      --set data.seq_len=$T --set data.micro_batch=$mb --set training.global_batch=0 --set training.grad_accum=1 \
      --set training.recompute=false --set training.attention_backward=$bwd > "$out/bench_train_${T}_$bwd.log" 2>&1
  done
done

# PyTorch on the same card in the same call, where torch is installed (the comparisons in
# docs/benchmarks.md are only ever made between numbers from one call).
has_torch=0
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  has_torch=1
  python3 scripts/torch_reference.py attention --seq-lens 4096 16384 65536 131072 > "$out/torch_attention.log" 2>&1
  python3 scripts/torch_reference.py train --seq-len 4096 --micro-batch 8 --compile > "$out/torch_train_4096.log" 2>&1
  python3 scripts/torch_reference.py train --seq-len 32768 --micro-batch 1 --compile > "$out/torch_train_32768.log" 2>&1
fi

echo "== $(cat "$out/gpu.txt")"
echo "GPU tests: $(tail -2 "$out/gpu_tests.log" | tr '\n' ' ') (exit $tests_rc)"
echo "GPU tests, flash backward: $(tail -2 "$out/gpu_tests_flash.log" | tr '\n' ' ') (exit $flash_tests_rc)"
printf "%-28s %s\n" "benchmark" "result"
grep -h "attention N=" "$out/bench_attention.log" | sed 's/^/  cuDNN det.     /'
grep -h "attention N=" "$out/bench_attention_nondet.log" | sed 's/^/  cuDNN non-det. /'
grep -h "attention N=" "$out/bench_attention_flash.log" | sed 's/^/  ours (flash)   /'
grep -h "lighthouse N=" "$out/bench_lighthouse.log" | sed 's/^/  /'
grep -h "one step's GEMMs" "$out/bench_gemm.log" | sed 's/^/  /'
for T in 4096 32768; do
  for bwd in auto flash; do
    printf "  train 270M T=%-6s %-5s %s\n" "$T" "$bwd" "$(grep -h 'train step' "$out/bench_train_${T}_$bwd.log")"
    grep -h "GPU over the timed steps" "$out/bench_train_${T}_$bwd.log" | sed 's/^ */    /' || true
  done
done
if [ "$has_torch" = 1 ]; then
  grep -h "attention N=" "$out/torch_attention.log" | sed 's/^/  PyTorch SDPA /'
  for T in 4096 32768; do
    printf "  PyTorch compiled train 270M T=%-6s %s\n" "$T" "$(grep -h 'train step' "$out/torch_train_$T.log")"
    grep -h "GPU over the timed steps" "$out/torch_train_$T.log" | sed 's/^ */    /' || true
  done
else
  echo "  (no CUDA-enabled torch here: PyTorch comparison skipped)"
fi
[ "$tests_rc" -ne 0 ] && exit $tests_rc
exit $flash_tests_rc
