#!/usr/bin/env bash
# Compiles every kernel as strict OpenCL C 1.2 with Debian's clang, every extension disabled
# (so Mali, Adreno and other compilers see nothing exotic), warnings as errors, in each
# variant clmha builds (KV_HALF and CACHE_HALF: the half cache). Needs clang.
set -euo pipefail
cd "$(dirname "$0")/.."
n=0
for f in kernels/*.cl; do
    for variant in "" -DKV_HALF -DCACHE_HALF; do
        # shellcheck disable=SC2086
        clang -x cl -cl-std=CL1.2 -Xclang -cl-ext=-all -include tools/cl/half-builtins.h \
            -fsyntax-only -Werror -Wall -Wextra -Wconversion -Wno-sign-conversion -Wshadow \
            $variant "$f"
        n=$((n + 1))
    done
done
# Programs built from several files (clmha__program_get's "a.cl+b.cl"): gemm_tail.
for variant in "-DGC=4" "-DGC=32" "-DGC=32 -DCACHE_HALF" "-DGC=16 -DGR=24"; do
    # shellcheck disable=SC2086
    cat kernels/merge.cl kernels/gemm.cl kernels/splice.cl |
        clang -x cl -cl-std=CL1.2 -Xclang -cl-ext=-all -include tools/cl/half-builtins.h \
            -fsyntax-only -Werror -Wall -Wextra -Wconversion -Wno-sign-conversion -Wshadow \
            -DTAIL -DHV=768 $variant -
    n=$((n + 1))
done
if grep -n "pragma OPENCL EXTENSION" kernels/*.cl; then
    echo "check-kernels: kernels must not enable extensions" >&2
    exit 1
fi
echo "check-kernels: $(ls kernels/*.cl | wc -l) kernel files ($n compiles) are strict OpenCL C 1.2"
