#!/usr/bin/env bash
# Exports a checkpoint, computes our logits on random tokens and compares them with transformers'
# LlamaForCausalLM on the export (needs python3 with torch + transformers, e.g. the GPU machine).
#   scripts/hf_roundtrip.sh CHECKPOINT_DIR [WORK_DIR] [BATCH] [SEQ_LEN]
set -euo pipefail
ckpt=${1:?usage: hf_roundtrip.sh CHECKPOINT_DIR [WORK_DIR] [BATCH] [SEQ_LEN]}
work=${2:-hf_roundtrip}
batch=${3:-2}
seq=${4:-64}
bin=${LIGHTHOUSE_BIN:-build/lighthouse}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
python3 - "$work/tokens.bin" "$batch" "$seq" <<'PY'
import random, struct, sys
path, b, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1234)
with open(path, "wb") as f:
    f.write(struct.pack("<ii", b, t))
    f.write(struct.pack("<%di" % (b * t), *[rng.randrange(257) for _ in range(b * t)]))
PY
"$bin" eval --device cpu --checkpoint "$ckpt" --logits-for "$work/tokens.bin" --logits-out "$work/logits.bin"
"$bin" export --checkpoint "$ckpt" --out "$work/hf"
python3 "$here/compare_hf.py" --export "$work/hf" --tokens "$work/tokens.bin" --logits "$work/logits.bin" --device cpu
