#!/usr/bin/env bash
# Runs a test program under Oclgrind with its data-race and API checks and fails when the
# program fails or Oclgrind reports anything (tests/oclgrind.sh has the uninitialised-value
# pass too, for test_kernels_small). Usage: oclgrind_races.sh PROGRAM
set -u
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail=0
oclgrind --data-races --check-api --log "$log" "$1" || fail=1
if [ -s "$log" ]; then
    echo "Oclgrind reported problems:"
    cat "$log"
    fail=1
fi
exit $fail
