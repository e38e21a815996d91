# One golden test: `parallax gen <key>`, then FileCheck against the check file. The key comes
# from the file's first line, "// KEY: <variant key>", so each file describes itself.
#  - CHECK lines are matched in order, and the source must contain no #include at all
#    (NVRTC compiles it with no include path).
#  - BODY lines, when present, run as a second pass: "BODY: <anchor>" followed by BODY-NOT
#    lines forbids those patterns everywhere after the anchor (plain CHECK-NOT only covers
#    the gap between two neighbouring CHECK lines).
# Check files may use [[GENERATOR_VERSION]] for the generator's current version.
# Inputs (-D): PARALLAX (the CLI), FILECHECK, CHECK_FILE.
file(STRINGS "${CHECK_FILE}" first_line LIMIT_COUNT 1)
if(NOT first_line MATCHES "^// KEY: ([^ ]+)$")
  message(FATAL_ERROR "${CHECK_FILE}: the first line must be '// KEY: <variant key>'")
endif()
set(key "${CMAKE_MATCH_1}")
# The generator version the header must state, from `parallax --version` ("generator vN"),
# so a version bump does not touch every golden.
execute_process(COMMAND "${PARALLAX}" --version OUTPUT_VARIABLE version RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT version MATCHES "generator v([0-9]+)")
  message(FATAL_ERROR "parallax --version failed or names no generator version: ${version}")
endif()
set(generator_version "${CMAKE_MATCH_1}")
get_filename_component(name "${CHECK_FILE}" NAME_WE)
set(source "${CMAKE_CURRENT_BINARY_DIR}/golden_${name}.cu")  # ctest runs us in the build dir
execute_process(COMMAND "${PARALLAX}" gen "${key}" -o "${source}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "parallax gen ${key} failed (exit ${rc})")
endif()
foreach(prefix CHECK BODY)
  file(STRINGS "${CHECK_FILE}" uses REGEX "${prefix}(-[A-Z]+)?:")
  if(NOT uses)
    continue()
  endif()
  execute_process(
    COMMAND "${FILECHECK}" --check-prefix=${prefix} "--implicit-check-not=#include"
            -DGENERATOR_VERSION=${generator_version} "${CHECK_FILE}"
    INPUT_FILE "${source}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "golden ${CHECK_FILE}: ${prefix} lines failed for ${key} (source: ${source})")
  endif()
endforeach()
