#!/usr/bin/env bash
# Times every engine configuration cuDNN's heuristics offer for one attention graph, and every
# single-knob variation of the default one, on one shape (kernels/cuda/cudnn_engine_choice.h has
# the LH_CUDNN_* variables this drives). For checking whether a new cuDNN or card has a faster
# choice than the heuristics' first; the bits of a choice are deterministic, but can differ from
# another choice's.
#
# usage: scripts/cudnn_engine_sweep.sh FORWARD|BACKWARD [lighthouse bench attention args...]
#   e.g. scripts/cudnn_engine_sweep.sh BACKWARD --batch 8 --seq-lens 4096 --iters 20
# env: LH_BIN (default build/lighthouse), MAX_KNOB_VALUES (default 16; wider ranges are skipped)
set -u
BIN=${LH_BIN:-build/lighthouse}
GRAPH=${1:?FORWARD or BACKWARD}
shift
MAX_KNOB_VALUES=${MAX_KNOB_VALUES:-16}

# cuDNN's backward for every length (the default, auto, gives long calls our flash backward).
bench() { env LH_ATTENTION_BACKWARD=cudnn "$@" "$BIN" bench --device cuda attention "${ARGS[@]}" 2>&1; }
# "fwd X ms ... fwd+bwd Y ms" -> the timing of the graph being swept (bwd = fwd+bwd - fwd).
timing() {
  local line
  line=$(grep -m1 "attention N=" <<<"$1") || { grep -m1 -i "error" <<<"$1" || echo "no result"; return; }
  awk -v g="$GRAPH" '{ for (i = 1; i <= NF; ++i) { if ($i == "fwd") f = $(i + 1); if ($i == "fwd+bwd") t = $(i + 1) }
                       printf "%s %.3f ms\n", g, g == "FORWARD" ? f : t - f }' <<<"$line"
}

ARGS=("$@")
listing=$(bench LH_CUDNN_VERBOSE=1)
grep -A1 "cuDNN $GRAPH config" <<<"$listing"
echo "default: $(timing "$(bench)")"

configs=$(grep -c "cuDNN $GRAPH config" <<<"$listing")
for ((i = 1; i < configs; ++i)); do
  echo "config $i: $(timing "$(bench "LH_CUDNN_${GRAPH}_CONFIG=$i")")"
done

# Knob ranges of the default configuration: "type:[min,max]/stride ...".
ranges=$(grep -m1 "cuDNN $GRAPH config 0" <<<"$listing" | sed 's/.*ranges {//; s/ }.*//')
for r in $ranges; do
  type=${r%%:*}
  rest=${r#*[}
  min=${rest%%,*}
  rest=${rest#*,}
  max=${rest%%]*}
  stride=${r##*/}
  ((stride > 0)) || stride=1
  if (((max - min) / stride + 1 > MAX_KNOB_VALUES)); then
    echo "knob $type: range [$min, $max] / $stride too wide, skipped"
    continue
  fi
  for ((v = min; v <= max; v += stride)); do
    echo "knob $type=$v: $(timing "$(bench "LH_CUDNN_${GRAPH}_KNOBS=$type:$v")")"
  done
done
