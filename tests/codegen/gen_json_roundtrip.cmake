# `parallax gen --print-json KEY | parallax gen --json - --print-json` must give KEY back for
# every schedule field (fused_merge was once dropped, exit 2), and `gen` must refuse a
# test-only key, by key and through JSON. Inputs (-D): PARALLAX (the CLI), WORK (scratch dir).
file(MAKE_DIRECTORY "${WORK}")
set(base "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2")
foreach(key "${base}-splitauto-g4-fused" "${base}-split8-g2-fused" "${base}-splitauto-g4"
            "prefill-fp16-d64-h8x8-contig-win.none-amplified.fma-m32-n64-w4-s2")
  execute_process(COMMAND "${PARALLAX}" gen --print-json "${key}" -o "${WORK}/v.json" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "parallax gen --print-json ${key} failed (exit ${rc})")
  endif()
  execute_process(COMMAND "${PARALLAX}" gen --json - --print-json INPUT_FILE "${WORK}/v.json"
                  OUTPUT_VARIABLE back ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "parallax gen --json - rejected the JSON of ${key} (exit ${rc}): ${err}")
  endif()
  file(READ "${WORK}/v.json" first)
  if(NOT back STREQUAL first)
    message(FATAL_ERROR "${key}: JSON changed on the round trip:\n${first}\nvs\n${back}")
  endif()
endforeach()

set(test_key "${base}-splitauto-g4-testhang")
file(WRITE "${WORK}/t.json" "{\"key\": \"${test_key}\"}")
foreach(args "${test_key}" "--json;${WORK}/t.json")
  execute_process(COMMAND "${PARALLAX}" gen ${args} OUTPUT_QUIET ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "test-only variant")
    message(FATAL_ERROR "parallax gen ${args}: want exit 2 naming a test-only variant, got ${rc}: ${err}")
  endif()
endforeach()
