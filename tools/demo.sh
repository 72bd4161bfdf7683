#!/usr/bin/env bash
# Builds clmha and runs the decoding demo (tools/clmha-demo) on the default OpenCL device:
# the README's run command. Installs the Debian dependencies first (idempotent). Arguments go
# to clmha-demo (see `tools/demo.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh >&2
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCLMHA_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
"$build/tools/clmha-info" | tail -n 1
exec "$build/tools/clmha-demo" "$@"
