# ctest driver (cmake -P), the ABI's symbols (docs/abi.md): the functions libparallax.so
# exports (LIB, read with NM: `nm -D --defined-only`) are exactly the names listed in SYMBOLS
# (runtime/src/parallax.symbols: one a line, sorted, byte order), and those are exactly the
# PLX_API functions HEADER (parallax.h) declares. So a function added to the header must be
# added to the list, nothing else the library links in (abseil, SQLite, ...) leaks out, and a
# symbol that disappears shows as an ABI break.
foreach(v LIB SYMBOLS HEADER)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "abi_symbols.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT NM OR NOT EXISTS "${NM}")
  find_program(NM nm REQUIRED)
endif()

# Prints the differences between two sorted lists and fails.
function(expect_equal what want_name want got_name got)
  set(missing ${want})
  set(extra ${got})
  if(got)
    list(REMOVE_ITEM missing ${got})
  endif()
  if(want)
    list(REMOVE_ITEM extra ${want})
  endif()
  if(missing OR extra)
    string(REPLACE ";" " " missing "${missing}")
    string(REPLACE ";" " " extra "${extra}")
    foreach(v missing extra)
      if(NOT ${v})
        set(${v} "(none)")
      endif()
    endforeach()
    message(FATAL_ERROR "${what}:\n  in ${want_name} only: ${missing}\n  in ${got_name} only: ${extra}\n"
      "A function was added or removed: update runtime/src/parallax.symbols (sorted, one name a "
      "line) with parallax.h, and see docs/abi.md for what that means for the version.")
  endif()
endfunction()

# The checked-in list: sorted, no duplicates, no blank or odd lines.
file(STRINGS ${SYMBOLS} listed)
set(sorted ${listed})
list(SORT sorted)
list(REMOVE_DUPLICATES sorted)
if(NOT listed STREQUAL sorted)
  message(FATAL_ERROR "${SYMBOLS}: not sorted (byte order) or has duplicates; expected:\n${sorted}")
endif()
foreach(name ${listed})
  if(NOT name MATCHES "^plx_[a-z0-9_]+$")
    message(FATAL_ERROR "${SYMBOLS}: '${name}' is not a plx_* function name")
  endif()
endforeach()
list(LENGTH listed n_listed)
if(n_listed LESS 1)
  message(FATAL_ERROR "${SYMBOLS} lists nothing")
endif()

# What the library exports: defined dynamic symbols, without the version node (type A) and
# the @@version suffix.
execute_process(COMMAND ${NM} -D --defined-only ${LIB} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIB} failed: ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(exported)
foreach(line ${lines})
  if(line MATCHES "^[0-9a-fA-F]* *([A-Za-z]) ([^@ ]+)")
    if(NOT CMAKE_MATCH_1 STREQUAL "A")
      list(APPEND exported ${CMAKE_MATCH_2})
    endif()
  endif()
endforeach()
list(SORT exported)
expect_equal("libparallax.so's exported symbols differ from the list" ${SYMBOLS} "${listed}" ${LIB} "${exported}")

# What the header declares: every "PLX_API <type> name(" at the start of a line (declarations
# may wrap after the parenthesis).
file(STRINGS ${HEADER} decls REGEX "^PLX_API ")
set(declared)
foreach(d ${decls})
  if(NOT d MATCHES "^PLX_API [^(]*[ *](plx_[a-z0-9_]+)\\(")
    message(FATAL_ERROR "${HEADER}: cannot read the function name of: ${d}")
  endif()
  list(APPEND declared ${CMAKE_MATCH_1})
endforeach()
list(SORT declared)
expect_equal("parallax.h's PLX_API functions differ from the list" ${SYMBOLS} "${listed}" ${HEADER} "${declared}")
message(STATUS "${n_listed} functions: exported, listed and declared alike")
