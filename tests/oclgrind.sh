#!/usr/bin/env bash
# Runs test_kernels_small under Oclgrind (the OpenCL simulator) and fails when the program fails
# or Oclgrind reports anything. Projections use clmha's own GEMM kernel (CLMHA_TUNE's gemm=own),
# so every kernel checked is clmha's, and the work-group size is capped at 4
# (max_work_group_size) so that tiled loops take several tiles and barriers between them
# matter. The split attention runs with chunks of 2 keys (split_chunk), so the merge
# runs; with 4 work-items a group in the race pass (its local-memory combine, and the GPU query
# tiles with key tiles of 2, so tiles follow each other through local memory), and with one as
# on a CPU in the uninitialised-value pass, which also runs the CPU query tiles (2 rows).
#
# 1. The whole program with the data-race and API checks (removing a barrier is reported).
# 2. Each case in a process of its own with the uninitialised-value check (--uninitialized):
#    an uninitialised value written to memory, used as an address or deciding control flow is
#    reported. One process per case because Debian's Oclgrind (21.10) keeps the shadow state of
#    a released buffer and gives it to the next buffer that reuses its index, so a later,
#    larger buffer reads as uninitialised past the old size (a 20-line program with two
#    correct kernels shows it; see docs/testing.md). Within one case no buffer is released.
#    The small cases use head dims that are not multiples of 4 (the kernels' scalar paths):
#    Oclgrind 21.10's uninitialised-value checker itself crashes (segmentation fault) on a
#    kernel that adds two lanes of a vector read with vload4 (`float4 x = vload4(0, a);
#    o[0] = x.x + x.w;` is enough), which the float4 and float16 dot products do; the other
#    test runs (PoCL, Rusticl, the small device, the sanitizers) cover those paths.
# Usage: oclgrind.sh PROGRAM
set -u
prog=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export CLMHA_CACHE_DIR=off
tune=gemm=own,max_work_group_size=4,split_chunk=2

fail=0
report() { # $1: what ran
    if [ -s "$log" ]; then
        echo "Oclgrind reported problems ($1):"
        cat "$log"
        fail=1
    fi
}

CLMHA_TUNE=$tune,split_wg=4,key_tile=2 oclgrind --data-races --check-api --log "$log" "$prog" || fail=1
report "data races and API, all cases"

n=$("$prog" --count) || exit 1
for ((i = 0; i < n; i++)); do
    : >"$log"
    if ! CLMHA_TUNE=$tune,split_wg=1,tile_rows=2 oclgrind --uninitialized --check-api --log "$log" \
        "$prog" "$i" >/dev/null 2>&1; then
        echo "case $i failed under Oclgrind --uninitialized; rerun: $prog $i"
        fail=1
    fi
    report "uninitialised values, case $i"
done
echo "oclgrind.sh: data races on all cases, uninitialised values on $n cases, one by one"
exit $fail
