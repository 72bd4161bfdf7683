#!/usr/bin/env bash
# Compiles every kernel file on its own as strict OpenCL C 1.2 with Debian's clang, every
# extension disabled (so Mali, Adreno and other compilers see nothing exotic), warnings as
# errors, in each variant clmha builds (KV_HALF and CACHE_HALF: the half cache; KV_I8 and CACHE_I8:
# the int8 cache). A kernel file
# brings its helpers in with `#include "x.clh"` (kernels/*.clh; the library replaces those lines
# with the headers, here clang reads them through -I kernels), and every header must also be
# valid alone. Needs clang. (The GPU vendors' compilers check the kernels further:
# tools/gpu-report.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
n=0
cl() { # clang's strict OpenCL C 1.2 check of one file ($1) with the given options
    local file=$1
    shift
    clang -x cl -cl-std=CL1.2 -Xclang -cl-ext=-all -include tools/cl/half-builtins.h -I kernels \
        -fsyntax-only -Werror -Wall -Wextra -Wconversion -Wno-sign-conversion -Wshadow "$@" "$file"
    n=$((n + 1))
}
for f in kernels/*.cl kernels/*.clh; do
    # A header alone defines helpers nobody calls yet.
    unused=()
    [[ $f == *.clh ]] && unused=(-Wno-unused-function)
    for variant in "" -DKV_HALF -DCACHE_HALF -DKV_I8 -DCACHE_I8; do
        # shellcheck disable=SC2086
        cl "$f" "${unused[@]}" $variant
    done
done
# The GPU family with head dims that are not multiples of 4 (lanes read scalars) and small
# work-groups (the capped device's and Oclgrind's settings).
for variant in "-DDK=6 -DDV=10 -DWGS=4 -DLK=4 -DLQ=1 -DKT=2" "-DDK=80 -DDV=80 -DWGS=32 -DLK=32 -DLQ=8" \
    "-DDK=24 -DDV=24 -DWGS=64 -DLK=8 -DLQ=2 -DKT=64 -DKV_HALF" "-DDK=24 -DDV=24 -DKV_I8" \
    "-DDK=6 -DDV=6 -DWGS=4 -DLK=4 -DLQ=1 -DKT=2 -DKV_I8"; do
    # shellcheck disable=SC2086
    cl kernels/attention_gpu.cl $variant
done
# The int8 cache with head dims that are not multiples of 4 (rows read byte by byte) and the CPU
# family without blocks of sixteen keys.
for f in attention_cpu attention_rows masked_rows; do
    cl kernels/$f.cl -DDK=3 -DDV=3 -DKV_I8
    cl kernels/$f.cl -DDK=8 -DDV=8
done
# gemm_tail's builds: 4 or 32 columns, the half cache, many rows, an int8 layer's.
for variant in "-DGC=4" "-DGC=32" "-DGC=32 -DCACHE_HALF" "-DGC=32 -DCACHE_I8" "-DGC=16 -DGR=24" \
    "-DQUANT_I8 -DCU=4" "-DQUANT_I8 -DCU=4 -DCACHE_I8"; do
    # shellcheck disable=SC2086
    cl kernels/tail.cl -DHV=768 $variant
done
# quant.cl's and quant_cpu.cl's builds: quantize_rows, and the products one row or four a
# work-item (int4 per group or per column).
for variant in "-DQWG=64" "-DRB=1" "-DRB=1 -DCU=4" "-DRB=4" "-DRB=4 -DQDIV"; do
    # shellcheck disable=SC2086
    cl kernels/quant.cl $variant
    # shellcheck disable=SC2086
    cl kernels/quant_cpu.cl $variant
done
if grep -n "pragma OPENCL EXTENSION" kernels/*.cl kernels/*.clh; then
    echo "check-kernels: kernels must not enable extensions" >&2
    exit 1
fi
echo "check-kernels: $(ls kernels/*.cl kernels/*.clh | wc -l) kernel files and headers ($n compiles)" \
    "are strict OpenCL C 1.2, each on its own"
