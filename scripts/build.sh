#!/usr/bin/env bash
# Configures and builds miagrid into build/ (or $MG_BUILD_DIR). Extra arguments
# go to CMake's configure step, e.g. -DMG_SANITIZE=ON.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MG_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
