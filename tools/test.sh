#!/usr/bin/env bash
# Builds clmha and runs every test with ctest: the README's test command. Installs the Debian
# dependencies first (idempotent). Extra arguments go to ctest (e.g. -R test_layer).
# BUILD_DIR (default build) and CMAKE_ARGS adjust the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
build=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" -DCLMHA_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j 2 "$@"
