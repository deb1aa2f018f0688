#!/usr/bin/env bash
# Installs every Debian package miagrid needs to build, test and analyse
# (clang with its runtime libraries for the fuzz targets, and valgrind, for
# scripts/test.sh).
# Idempotent: packages already present are left alone. Needs root (or sudo).
# usage: install-deps.sh [--bench]
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libscalapack-openmpi-dev libopenblas-dev
  libyaml-dev zlib1g-dev libpng-dev libjpeg-dev
  dataset-fashion-mnist
  python3 python3-h5py python3-pandas python3-matplotlib python3-numpy
  clang libclang-rt-14-dev valgrind
)

# --bench adds what bench/ compares against: PyTorch for the CPU, from Debian.
if [[ ${1:-} == --bench ]]; then
  PKGS+=(python3-torch)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
