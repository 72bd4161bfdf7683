# bench_smoke.cmake - ctest's test_bench_smoke: runs clmha-bench on a tiny layer with --json and
# checks that it succeeds and that each JSON line has every field docs/performance.md names,
# with decode over both cache dtypes; then the same with --pair (two layers compared in one
# process), a run with --profile off (no attention / projection split), and that a malformed
# --pair is refused.
# Needs BENCH (the program) and OUT (the JSON file to write).
file(REMOVE "${OUT}")
execute_process(COMMAND "${BENCH}" --dim 16 --heads 2 --head-dim 8 --seq 8,33 --batch 1,2
                        --reps 2 --warmup 1 --cache-dtype float32,float16 --json "${OUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clmha-bench failed (${rc}):\n${out}\n${err}")
endif()
file(STRINGS "${OUT}" lines)
list(LENGTH lines n)
if(NOT n EQUAL 12)
  message(FATAL_ERROR "expected 12 JSON lines (decode: 2 lengths x 2 batches x 2 cache dtypes; "
                      "prefill: 2 x 2), got ${n}")
endif()
string(REGEX MATCHALL "\"cache_dtype\": \"float16\"" half "${lines}")
list(LENGTH half nhalf)
if(NOT nhalf EQUAL 4)
  message(FATAL_ERROR "expected 4 decode cases over a float16 cache, got ${nhalf}")
endif()
foreach(line IN LISTS lines)
  foreach(key phase B T S dim heads head_dim cache_dtype device median_s attention_median_s
              projection_median_s frac_bandwidth frac_gemm copy_bandwidth_bytes_per_s
              sgemm_flops_per_s)
    string(JSON value ERROR_VARIABLE jerr GET "${line}" ${key})
    if(jerr)
      message(FATAL_ERROR "JSON line lacks \"${key}\": ${line}")
    endif()
  endforeach()
  string(JSON median GET "${line}" median_s)
  if(NOT median GREATER 0)
    message(FATAL_ERROR "median_s is not positive: ${line}")
  endif()
endforeach()
message(STATUS "${out}")

file(REMOVE "${OUT}")
execute_process(COMMAND "${BENCH}" --dim 16 --heads 2 --head-dim 8 --seq 8,33 --batch 2
                        --reps 2 --warmup 1 --cache-dtype float32,float16 --pair CLMHA_TAIL=0
                        --json "${OUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clmha-bench --pair failed (${rc}):\n${out}\n${err}")
endif()
file(STRINGS "${OUT}" lines)
list(LENGTH lines n)
if(NOT n EQUAL 6)
  message(FATAL_ERROR "--pair: expected 6 JSON lines (decode 2 x 2, prefill 2), got ${n}")
endif()
foreach(line IN LISTS lines)
  foreach(key phase B T S cache_dtype device pair median_a_s median_b_s b_over_a)
    string(JSON value ERROR_VARIABLE jerr GET "${line}" ${key})
    if(jerr)
      message(FATAL_ERROR "--pair JSON line lacks \"${key}\": ${line}")
    endif()
  endforeach()
  string(JSON pair GET "${line}" pair)
  string(JSON ratio GET "${line}" b_over_a)
  if(NOT pair STREQUAL "CLMHA_TAIL=0" OR NOT ratio GREATER 0)
    message(FATAL_ERROR "--pair: wrong pair or ratio: ${line}")
  endif()
endforeach()
file(REMOVE "${OUT}")
execute_process(COMMAND "${BENCH}" --dim 16 --heads 2 --head-dim 8 --seq 8 --batch 1 --reps 2
                        --warmup 1 --phase decode --profile off --json "${OUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(STRINGS "${OUT}" lines)
if(NOT rc EQUAL 0 OR NOT lines MATCHES "\"attention_median_s\": null"
   OR NOT lines MATCHES "\"median_s\": [0-9]")
  message(FATAL_ERROR "--profile off: expected a timed case without the attention split "
                      "(${rc}):\n${lines}\n${err}")
endif()
execute_process(COMMAND "${BENCH}" --pair TAIL RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "CLMHA_NAME=VALUE")
  message(FATAL_ERROR "--pair TAIL was not refused clearly (${rc}): ${err}")
endif()
message(STATUS "${out}")
