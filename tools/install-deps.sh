#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages clmha needs to build, test and run, and only
# those that are missing. Safe to run any number of times; a no-op when all are present.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config clinfo
    ocl-icd-opencl-dev opencl-headers pocl-opencl-icd
    libclblast-dev libcmocka-dev libhdf5-dev libxxhash-dev librandom123-dev
    mesa-opencl-icd oclgrind
    # Intel's OpenCL runtime: ocloc for tools/gpu-report.sh, and an ICD that finds no device
    # here, which the tests check enumeration against.
    intel-opencl-icd
)
# The GPU vendors' compilers for tools/gpu-report.sh: Intel's IGC (ocloc), AMD's and NVIDIA's
# LLVM back ends with libclc (NVIDIA's ptxas comes with the CUDA toolkit, not from Debian).
gpu_report=(clang-15 llvm-15 libclc-15 python3)
if [ "${1:-}" = "--gpu-report" ]; then
    pkgs+=("${gpu_report[@]}")
fi
# Extra packages for the CI: clang with its sanitizer/libFuzzer runtime, the formatter, and the
# GPU report's compilers.
if [ "${1:-}" = "--ci" ]; then
    pkgs+=(clang libclang-rt-14-dev clang-format "${gpu_report[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages already installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
