#!/usr/bin/env bash
# One command for a machine with a GPU: lists the OpenCL devices, runs the whole test suite on
# the GPU (CLMHA_DEVICE_TYPE=gpu: every context the tests make takes it), benchmarks decode and
# prefill there with clmha-bench (JSON lines under OUT), and prints a short verdict.
#   tools/gpu-check.sh [OUT]          (OUT: results folder, default build/gpu-check)
# Needs a built tree (BUILD_DIR, default build; configured and built here when absent) and a GPU
# with an OpenCL driver; exits 1 when there is no GPU, a test fails or a benchmark fails.
# CLMHA_PLATFORM / CLMHA_DEVICE pick among several GPUs as usual.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
out=${1:-$build/gpu-check}
mkdir -p "$out"
if [ ! -x "$build/tools/clmha-info" ]; then
    cmake -S . -B "$build" -DCLMHA_WERROR=ON >/dev/null && cmake --build "$build" -j "$(nproc)" \
        >/dev/null || { echo "gpu-check: the build failed" >&2; exit 1; }
fi
export CLMHA_DEVICE_TYPE=gpu
export CLMHA_CACHE_DIR="$out/cl-cache"

echo "== devices"
if ! "$build/tools/clmha-info" | tee "$out/devices.txt"; then
    echo "gpu-check: verdict: NO GPU (clmha-info found no GPU device; see above)"
    exit 1
fi
device=$(sed -n 's/^selected: //p' "$out/devices.txt")

echo "== the test suite on the GPU"
tests_ok=1
ctest --test-dir "$build" --output-on-failure -j 2 -E "test_install|oclgrind|icd" \
    2>&1 | tee "$out/tests.txt" || tests_ok=0
summary=$(grep -E "tests passed" "$out/tests.txt" | tail -n 1)

echo "== clmha-bench decode and prefill on the GPU"
bench_ok=1
"$build/tools/clmha-bench" --phase decode --seq 512,2048,8192 --batch 1,4 \
    --cache-dtype float32,float16,int8 --reps 20 --json "$out/decode.json" | tee "$out/decode.txt" ||
    bench_ok=0
"$build/tools/clmha-bench" --phase prefill --seq 128,512,2048 --batch 1 --reps 5 \
    --json "$out/prefill.json" | tee "$out/prefill.txt" || bench_ok=0

echo "== verdict"
echo "device:  $device"
echo "tests:   ${summary:-no summary} ($out/tests.txt)"
echo "bench:   $([ $bench_ok = 1 ] && echo "ran" || echo "FAILED") ($out/decode.json, $out/prefill.json)"
if [ $tests_ok = 1 ] && [ $bench_ok = 1 ]; then
    echo "gpu-check: verdict: PASS"
    exit 0
fi
echo "gpu-check: verdict: FAIL"
exit 1
