#!/usr/bin/env bash
# Builds, then runs the whole test suite through CTest. GPU tests report themselves as skipped
# when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
