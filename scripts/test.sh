#!/usr/bin/env bash
# What CI runs: dependencies, a warnings-as-errors build, then every CPU-only test.
# Usage: scripts/test.sh   (BUILD_DIR overrides the build directory, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}

scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja -DPARALLAX_WERROR=ON
cmake --build "$build"
cd "$build"
ctest -L cpu --output-on-failure -j2
