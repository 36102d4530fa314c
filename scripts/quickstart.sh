#!/usr/bin/env bash
# Builds, then trains the embedded quickstart: a tiny Llama on generated toy-language data (on the
# GPU when there is one and the CUDA backend supports it, else on the CPU). Re-running continues
# the same run (runs/quickstart) or reports that it is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build/lighthouse train "$@"
