#!/usr/bin/env bash
# Compiles every kernel as strict OpenCL C 1.2 with Debian's clang, every extension disabled
# (so Mali, Adreno and other compilers see nothing exotic), warnings as errors. Needs clang.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in kernels/*.cl; do
    clang -x cl -cl-std=CL1.2 -Xclang -cl-ext=-all -fsyntax-only -Werror -Wall -Wextra \
        -Wconversion -Wno-sign-conversion -Wshadow "$f"
done
echo "check-kernels: $(ls kernels/*.cl | wc -l) kernel files are strict OpenCL C 1.2"
