#!/usr/bin/env bash
# Draws clmha-bench results (--json lines) into PNG figures with gnuplot (Debian: gnuplot-nox):
#   OUT/decode-time.png      decode call and attention time against S, one line per batch
#   OUT/decode-bandwidth.png decode attention as a fraction of the measured copy bandwidth
#   OUT/prefill-gemm.png     prefill attention as a fraction of the measured SGEMM rate
# Usage: tools/plot-bench.sh RESULTS.json [OUT_DIR (default docs)]
set -euo pipefail
in=${1:?usage: plot-bench.sh RESULTS.json [OUT_DIR]}
out=${2:-docs}
command -v gnuplot >/dev/null || { echo "plot-bench: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One whitespace-separated row per case: phase B S median_ms attention_ms frac_bw frac_gemm
# cache_dtype (float32, float16, or none for prefill).
field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"; }
while IFS= read -r line; do
    printf '%s %s %s %s %s %s %s %s\n' \
        "$(echo "$line" | field phase)" "$(echo "$line" | field B)" "$(echo "$line" | field S)" \
        "$(echo "$line" | field median_s)" "$(echo "$line" | field attention_median_s)" \
        "$(echo "$line" | field frac_bandwidth)" "$(echo "$line" | field frac_gemm)" \
        "$(echo "$line" | field cache_dtype)"
done < "$in" > "$tmp/all"
device=$(head -n 1 "$in" | field device)

plot() { # name, phase, column, ylabel, title, log-y (yes/no)
    local name=$1 phase=$2 col=$3 ylabel=$4 title=$5 logy=$6 cmds=""
    for b in $(awk -v p="$phase" '$1 == p {print $2}' "$tmp/all" | sort -un); do
        for dt in $(awk -v p="$phase" -v b="$b" '$1 == p && $2 == b {print $8}' "$tmp/all" |
            sort -u); do
            awk -v p="$phase" -v b="$b" -v d="$dt" -v c="$col" '$1 == p && $2 == b && $8 == d &&
                $c != "null" { v = $c; if (c == 4 || c == 5) v *= 1000; print $3, v }' \
                "$tmp/all" >"$tmp/$name-$b-$dt"
            label="B = $b"
            [ "$dt" = none ] || label="$label, $dt cache"
            cmds="$cmds${cmds:+, }'$tmp/$name-$b-$dt' using 1:2 with linespoints title '$label'"
        done
    done
    [ -n "$cmds" ] || return 0
    gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output '$out/$name.png'
set title '$title ($device)'
set xlabel 'S (sequence length)'
set ylabel '$ylabel'
set logscale x 2
$( [ "$logy" = yes ] && echo "set logscale y" )
set grid
set key left top
plot $cmds
GP
    echo "plot-bench: wrote $out/$name.png"
}
plot decode-time decode 5 "attention time per step (ms)" "clmha decode attention" yes
plot decode-bandwidth decode 6 "fraction of copy bandwidth" "clmha decode attention vs bandwidth" no
plot prefill-gemm prefill 7 "fraction of SGEMM rate" "clmha prefill attention vs CLBlast SGEMM" no
