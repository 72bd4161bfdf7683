# tune_smoke.cmake - ctest's test_tune_smoke: runs clmha-tune on a tiny layer, two keys and two
# calls a phase, into a fresh cache folder; checks that it reports the row against the result,
# stores one tuned-settings file for the device, and that clmha-info, with that folder, shows
# those settings as tuned (or none, when the row was kept); that --dry-run (over an int8 cache)
# stores nothing; and that bad arguments are refused with a message. A CI stage's CLMHA_TUNE is left out: it would
# override the tuned keys it names.
# Needs TUNE and INFO (the programs) and DIR (a scratch folder).

function(run_tune cache rc_var out_var)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=CLMHA_TUNE "CLMHA_CACHE_DIR=${cache}"
                          "${TUNE}" --dim 16 --heads 2 --head-dim 8 --prompt 4 --seq 16 --reps 2
                          --keys split_chunk,tail ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${rc_var} "${rc}" PARENT_SCOPE)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${DIR}")
run_tune("${DIR}/cache" rc out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "tuned / row: prefill [0-9.]+, decode [0-9.]+" OR
   NOT out MATCHES "stored in ")
  message(FATAL_ERROR "clmha-tune failed (${rc}):\n${out}")
endif()
message(STATUS "${out}")
file(GLOB files "${DIR}/cache/tuned-*.txt")
list(LENGTH files n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one tuned-settings file in ${DIR}/cache, found ${n}")
endif()
file(STRINGS "${files}" lines)
list(GET lines 0 header)
list(GET lines 5 settings_line)
if(NOT header STREQUAL "clmha tuned settings 1" OR NOT settings_line MATCHES "^settings: ")
  message(FATAL_ERROR "not a tuned-settings file:\n${lines}")
endif()
string(REGEX REPLACE "^settings: ?" "" settings "${settings_line}")

execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=CLMHA_TUNE "CLMHA_CACHE_DIR=${DIR}/cache"
                        "${INFO}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE info ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clmha-info failed (${rc}): ${err}")
endif()
string(REGEX MATCH "settings: [^\n]*" shown "${info}")
if(settings STREQUAL "")
  if(shown MATCHES "tuned: ")
    message(FATAL_ERROR "the file holds no settings, yet clmha-info shows tuned ones: ${shown}")
  endif()
else()
  string(REPLACE "," ";" pairs "${settings}")
  foreach(pair IN LISTS pairs)
    string(FIND "${shown}" "${pair} (tuned: ${files})" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "clmha-info does not show ${pair} as tuned from ${files}: ${shown}")
    endif()
  endforeach()
endif()

# The dry run over an int8 cache: every candidate's outputs checked against the reference over
# the same quantized rows (a wrong one fails the tuning row's own check).
run_tune("${DIR}/dry" rc out --dry-run --cache-dtype int8)
file(GLOB files "${DIR}/dry/tuned-*.txt")
if(NOT rc EQUAL 0 OR NOT out MATCHES "--dry-run: nothing stored" OR files OR
   NOT out MATCHES "2 heads of 8, int8 cache")
  message(FATAL_ERROR "--dry-run over an int8 cache stored a file or failed (${rc}):\n${out}")
endif()

run_tune("${DIR}/bad" rc out --keys split_chunk,bogus)
if(rc EQUAL 0 OR NOT out MATCHES "\"bogus\" is not a key")
  message(FATAL_ERROR "--keys bogus was not refused clearly (${rc}): ${out}")
endif()
execute_process(COMMAND "${TUNE}" --cache-dtype int4 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "float32, float16 or int8, got 'int4'")
  message(FATAL_ERROR "--cache-dtype int4 was not refused clearly (${rc}): ${err}")
endif()
execute_process(COMMAND "${TUNE}" --prompt 16 --seq 16 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "must be shorter than --seq")
  message(FATAL_ERROR "--prompt 16 --seq 16 was not refused clearly (${rc}): ${err}")
endif()
file(REMOVE_RECURSE "${DIR}")
