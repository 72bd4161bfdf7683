#!/usr/bin/env bash
# The static GPU report: lists every program clmha builds under each tuning row
# (build/tools/clmha-programs, on PoCL with a GPU's 64 KiB of local memory), compiles each with
# Intel's IGC (ocloc), AMD's LLVM back end and NVIDIA's ptxas, and reports registers, scratch and
# occupancy a kernel (tools/gpu_report.py). Fails on a compile error, on scratch in a kernel a
# GPU row chooses, or on a missed register/occupancy target.
#   tools/gpu-report.sh [--json FILE] [--markdown FILE] [--check-doc]
# --check-doc also fails when docs/gpu-report.md differs from what the tool makes now.
# Installs its compilers (Debian: intel-opencl-icd, clang-15, llvm-15, libclc-15) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
json="" md="" check_doc=0
while [ $# -gt 0 ]; do
    case "$1" in
    --json) json=$2; shift 2 ;;
    --markdown) md=$2; shift 2 ;;
    --check-doc) check_doc=1; shift ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-report: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
    esac
done
bash tools/install-deps.sh --gpu-report
if [ ! -x "$build/tools/clmha-programs" ]; then
    cmake -S . -B "$build" -DCLMHA_WERROR=ON >/dev/null
    cmake --build "$build" -j "$(nproc)" --target clmha-programs >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# PoCL lists the programs (a CPU device takes any tuning row); the row's settings, not the
# device, decide them, but for local memory, capped here at a GPU's 64 KiB.
OCL_ICD_VENDORS=/etc/OpenCL/vendors/pocl.icd CLMHA_PLATFORM="" CLMHA_DEVICE="" \
    CLMHA_TUNE=max_local_mem=65536 CLMHA_CACHE_DIR="$work/cache" \
    "$build/tools/clmha-programs" > "$work/programs.tsv" 2> "$work/programs.log" ||
    { cat "$work/programs.log" >&2; exit 1; }
args=(--programs "$work/programs.tsv")
[ -n "$json" ] && args+=(--json "$json")
args+=(--markdown "${md:-$work/gpu-report.md}")
status=0
python3 tools/gpu_report.py "${args[@]}" || status=$?
if [ "$check_doc" = 1 ] && ! diff -u docs/gpu-report.md "${md:-$work/gpu-report.md}" >"$work/diff"; then
    head -n 40 "$work/diff"
    echo "gpu-report: docs/gpu-report.md is stale: run tools/gpu-report.sh --markdown docs/gpu-report.md" >&2
    status=1
fi
exit $status
