#!/usr/bin/env bash
# Compiles every kernel as strict OpenCL C 1.2 with Debian's clang, every extension disabled
# (so Mali, Adreno and other compilers see nothing exotic), warnings as errors, in each
# variant clmha builds (KV_HALF and CACHE_HALF: the half cache). Needs clang. (The GPU vendors'
# compilers check the kernels further: tools/gpu-report.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
n=0
for f in kernels/*.cl; do
    # The attention families are programs only joined after attention_common.cl.
    parts=("$f")
    case "$f" in
    kernels/attention_common.cl) ;;
    kernels/attention_*.cl) parts=(kernels/attention_common.cl "$f") ;;
    esac
    for variant in "" -DKV_HALF -DCACHE_HALF; do
        # shellcheck disable=SC2086
        cat "${parts[@]}" |
            clang -x cl -cl-std=CL1.2 -Xclang -cl-ext=-all -include tools/cl/half-builtins.h \
                -fsyntax-only -Werror -Wall -Wextra -Wconversion -Wno-sign-conversion -Wshadow \
                $variant -
        n=$((n + 1))
    done
done
# The GPU family with head dims that are not multiples of 4 (lanes read scalars) and small
# work-groups (the capped device's and Oclgrind's settings).
for variant in "-DDK=6 -DDV=10 -DWGS=4 -DLK=4 -DLQ=1 -DKT=2" "-DDK=80 -DDV=80 -DWGS=32 -DLK=32 -DLQ=8" \
    "-DDK=24 -DDV=24 -DWGS=64 -DLK=8 -DLQ=2 -DKT=64 -DKV_HALF"; do
    # shellcheck disable=SC2086
    cat kernels/attention_common.cl kernels/attention_gpu.cl |
        clang -x cl -cl-std=CL1.2 -Xclang -cl-ext=-all -include tools/cl/half-builtins.h \
            -fsyntax-only -Werror -Wall -Wextra -Wconversion -Wno-sign-conversion -Wshadow \
            $variant -
    n=$((n + 1))
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
