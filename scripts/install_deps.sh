#!/usr/bin/env bash
# Installs the header/library dependencies from Debian packages. Safe to run any number of times:
# apt-get skips what is already installed. The CUDA toolkit itself is expected under /usr/local/cuda.
set -euo pipefail
pkgs=(cmake g++ make nlohmann-json3-dev libspdlog-dev libcli11-dev catch2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
