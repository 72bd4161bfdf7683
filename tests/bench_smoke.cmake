# bench_smoke.cmake - ctest's test_bench_smoke: runs clmha-bench on a tiny layer with --json and
# checks that it succeeds and that each JSON line has every field docs/performance.md names,
# with decode over both cache dtypes.
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
