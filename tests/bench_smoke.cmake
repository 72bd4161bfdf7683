# bench_smoke.cmake - ctest's test_bench_smoke: runs clmha-bench on a tiny layer with --json and
# checks that it succeeds and that each JSON line has every field docs/performance.md names.
# Needs BENCH (the program) and OUT (the JSON file to write).
file(REMOVE "${OUT}")
execute_process(COMMAND "${BENCH}" --dim 16 --heads 2 --head-dim 8 --seq 8,33 --batch 1,2
                        --reps 2 --warmup 1 --json "${OUT}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clmha-bench failed (${rc}):\n${out}\n${err}")
endif()
file(STRINGS "${OUT}" lines)
list(LENGTH lines n)
if(NOT n EQUAL 8)
  message(FATAL_ERROR "expected 8 JSON lines (2 phases x 2 lengths x 2 batches), got ${n}")
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
