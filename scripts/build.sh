#!/usr/bin/env bash
# Installs the dependencies (if missing) and builds into build/ (Release). Extra arguments go to
# CMake, e.g. scripts/build.sh -DCMAKE_CUDA_ARCHITECTURES=90a.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$(nproc)"
