# bench_smoke.cmake - ctest's test_bench_smoke: runs clmha-bench on a tiny layer with --json and
# checks that it succeeds and that each JSON line has every field docs/performance.md names,
# with decode over both cache dtypes (a case's first row its time ratios' base); quantized
# weights (--weight-dtype); then the same with --pair (two layers compared in one process), a
# run with --profile off (no attention / projection split), one with --interleave off, and that
# malformed --pair and --interleave values are refused.
# Needs BENCH (the program) and OUT (the JSON file to write).

# Runs clmha-bench on the tiny layer with the given arguments and --json OUT; fails unless it
# succeeds with `count` JSON lines, each with every key in `keys`; the lines go to `lines_var`.
function(run_bench what count keys lines_var)
  file(REMOVE "${OUT}")
  execute_process(COMMAND "${BENCH}" --dim 16 --heads 2 --head-dim 8 --reps 2 --warmup 1
                          ${ARGN} --json "${OUT}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "clmha-bench ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  file(STRINGS "${OUT}" lines)
  list(LENGTH lines n)
  if(NOT n EQUAL count)
    message(FATAL_ERROR "clmha-bench ${what}: expected ${count} JSON lines, got ${n}")
  endif()
  foreach(line IN LISTS lines)
    foreach(key IN LISTS keys)
      string(JSON value ERROR_VARIABLE jerr GET "${line}" ${key})
      if(jerr)
        message(FATAL_ERROR "clmha-bench ${what}: JSON line lacks \"${key}\": ${line}")
      endif()
    endforeach()
  endforeach()
  message(STATUS "${out}")
  set(${lines_var} "${lines}" PARENT_SCOPE)
endfunction()

# Decode: 2 lengths x 2 batches x 2 cache dtypes; prefill: 2 x 2.
run_bench("" 12
          "phase;B;T;S;dim;heads;head_dim;cache_dtype;weight_dtype;device;tuning;settings;median_s;attention_median_s;projection_median_s;frac_bandwidth;frac_gemm;copy_bandwidth_bytes_per_s;sgemm_flops_per_s;error_vs_float32;median_vs_first;attention_vs_first"
          lines --seq 8,33 --batch 1,2 --cache-dtype float32,float16)
string(REGEX MATCHALL "\"cache_dtype\": \"float16\"" half "${lines}")
list(LENGTH half nhalf)
if(NOT nhalf EQUAL 4)
  message(FATAL_ERROR "expected 4 decode cases over a float16 cache, got ${nhalf}")
endif()
# The cases' layers run interleaved: a decode case's first row (the float32 cache) is the one
# every row's median_vs_first divides by.
foreach(line IN LISTS lines)
  string(JSON median GET "${line}" median_s)
  if(NOT median GREATER 0)
    message(FATAL_ERROR "median_s is not positive: ${line}")
  endif()
  string(JSON phase GET "${line}" phase)
  string(JSON cdt GET "${line}" cache_dtype)
  string(JSON vs GET "${line}" median_vs_first)
  if(phase STREQUAL "decode" AND cdt STREQUAL "float32" AND NOT vs EQUAL 1)
    message(FATAL_ERROR "a case's first row has median_vs_first ${vs}, not 1: ${line}")
  endif()
  if(NOT vs GREATER 0)
    message(FATAL_ERROR "median_vs_first is not positive: ${line}")
  endif()
endforeach()

# --weight-dtype: decode 1 length x 3 weight dtypes; the quantized layers' outputs are near the
# float32 layer's (int8 within 5%, int4 within 30% on this tiny layer), float32's error null.
run_bench("--weight-dtype" 3 "weight_dtype;error_vs_float32;median_s" lines --seq 8 --batch 1
          --phase decode --weight-dtype int4,float32,int8)
foreach(line IN LISTS lines)
  string(JSON w GET "${line}" weight_dtype)
  string(JSON e GET "${line}" error_vs_float32)
  if(w STREQUAL "float32")
    set(ok 0)
    if(e STREQUAL "null" OR e STREQUAL "")
      set(ok 1)
    endif()
  elseif(w STREQUAL "int8")
    set(ok 0)
    if(e GREATER 0 AND e LESS 0.05)
      set(ok 1)
    endif()
  else()
    set(ok 0)
    if(e GREATER 0 AND e LESS 0.3)
      set(ok 1)
    endif()
  endif()
  if(NOT ok)
    message(FATAL_ERROR "--weight-dtype: unexpected error for ${w}: ${line}")
  endif()
endforeach()
execute_process(COMMAND "${BENCH}" --weight-dtype int2 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "float32, int8, int4, float16 and bfloat16")
  message(FATAL_ERROR "--weight-dtype int2 was not refused clearly (${rc}): ${err}")
endif()

# --pair: decode 2 lengths x 2 cache dtypes, prefill 2 lengths; B's settings say tail=0 came
# from --pair (options.tune), A's do not name it.
run_bench("--pair" 6 "phase;B;T;S;cache_dtype;device;tuning;pair;settings_a;settings_b;median_a_s;median_b_s;b_over_a" lines
          --seq 8,33 --batch 2 --cache-dtype float32,float16 --pair tail=0)
foreach(line IN LISTS lines)
  string(JSON pair GET "${line}" pair)
  string(JSON ratio GET "${line}" b_over_a)
  string(JSON set_a GET "${line}" settings_a)
  string(JSON set_b GET "${line}" settings_b)
  if(NOT pair STREQUAL "tail=0" OR NOT ratio GREATER 0 OR set_a MATCHES "tail=" OR
     NOT set_b MATCHES "tail=0 \\(options.tune\\)")
    message(FATAL_ERROR "--pair: wrong pair, settings or ratio: ${line}")
  endif()
endforeach()

run_bench("--profile off" 1 "median_s;attention_median_s" lines --seq 8 --batch 1
          --phase decode --profile off)
if(NOT lines MATCHES "\"attention_median_s\": null" OR NOT lines MATCHES "\"median_s\": [0-9]")
  message(FATAL_ERROR "--profile off: expected a timed case without the attention split:\n"
                      "${lines}")
endif()

# --interleave off: each layer's calls in a row; the first row still the ratios' base.
run_bench("--interleave off" 2 "median_s;median_vs_first" lines --seq 8 --batch 1
          --phase decode --cache-dtype float32,int8 --interleave off)
if(NOT lines MATCHES "\"median_vs_first\": 1,")
  message(FATAL_ERROR "--interleave off: no row with median_vs_first 1:\n${lines}")
endif()
execute_process(COMMAND "${BENCH}" --interleave sometimes RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "--interleave is on or off")
  message(FATAL_ERROR "--interleave sometimes was not refused clearly (${rc}): ${err}")
endif()

execute_process(COMMAND "${BENCH}" --pair TAIL RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "key=value")
  message(FATAL_ERROR "--pair TAIL was not refused clearly (${rc}): ${err}")
endif()
execute_process(COMMAND "${BENCH}" --pair tial=0 --seq 8 --phase decode
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "unknown setting \"tial\"")
  message(FATAL_ERROR "--pair tial=0 was not refused clearly (${rc}): ${err}")
endif()
