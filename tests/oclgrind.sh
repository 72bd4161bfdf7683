#!/usr/bin/env bash
# Runs a test program under Oclgrind (the OpenCL simulator) with its data-race and API checks,
# and fails when the program fails or Oclgrind reports anything. Projections use clmha's own
# GEMM kernel (CLMHA_GEMM=own), so every kernel checked is clmha's, and the work-group size is
# capped at 4 (CLMHA_MAX_WORK_GROUP_SIZE) so that tiled loops take several tiles and barriers
# between them matter (removing one is reported as a race).
#
# Oclgrind's --uninitialized plugin is not used: Debian's Oclgrind cannot follow LLVM 15's
# `freeze` instruction (a fatal error without -cl-opt-disable), and with optimisation off it
# reports writes in gemm_acc that a standalone program running the same kernels does not
# trigger. Uninitialised reads are caught by CLMHA_POISON_BUFFERS instead (docs/testing.md).
# Usage: oclgrind.sh PROGRAM [ARGS...]
set -u
log=$(mktemp)
CLMHA_GEMM=own CLMHA_MAX_WORK_GROUP_SIZE=4 CLMHA_CACHE_DIR=off \
    oclgrind --data-races --check-api --log "$log" "$@"
rc=$?
if [ -s "$log" ]; then
    echo "Oclgrind reported problems:"
    cat "$log"
    rc=1
fi
rm -f "$log"
exit $rc
