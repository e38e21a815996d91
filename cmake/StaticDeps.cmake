# PARALLAX_STATIC_DEPS: link libparallax.so against static SQLite and xxHash and header-only
# spdlog/fmt, for the Python wheel (setup.py builds this way). Their code ends up inside the
# library, hidden by --exclude-libs,ALL and the version script (only plx_* is exported).
#
# Included from the top-level CMakeLists.txt BEFORE the find_package() calls: it defines the
# imported targets the tree links to (SQLite::SQLite3, PkgConfig::XXHASH, spdlog::spdlog,
# fmt::fmt), pointing at static archives or headers only; FindSQLite3, pkg_check_modules and
# the spdlog/fmt package files that follow find the targets defined and leave them alone. No
# other file changes what it links to, and nothing goes into the cache, so a build with the
# option OFF (the normal one) is exactly as before.
#
# abseil stays shared. Debian's libabsl_*.a are compiled as PIE, not PIC: cord.cc.o,
# cordz_functions.cc.o and sysinfo.cc.o use local-exec TLS (R_X86_64_TPOFF32), which ld cannot
# put in a shared object ("relocation R_X86_64_TPOFF32 against hidden symbol
# `absl::cord_internal::cordz_next_sample' can not be used when making a shared object"), and
# absl::Status needs all three. setup.py therefore bundles the libabsl_*.so libparallax.so needs
# (renamed, next to it, found through $ORIGIN). An abseil built with -fPIC and exported as
# static targets (-Dabsl_DIR=...) is linked in like the others, and then nothing is bundled.

find_package(Threads REQUIRED)

# ---- SQLite and xxHash: static archives -----------------------------------------------------
# FindSQLite3 and pkg_check_modules(IMPORTED_TARGET) create their targets only if missing.
find_library(PLX_SQLITE3_ARCHIVE NAMES libsqlite3.a NO_CACHE REQUIRED)
find_path(PLX_SQLITE3_INCLUDE sqlite3.h NO_CACHE REQUIRED)
add_library(SQLite::SQLite3 STATIC IMPORTED)
set_target_properties(SQLite::SQLite3 PROPERTIES
  IMPORTED_LOCATION "${PLX_SQLITE3_ARCHIVE}"
  INTERFACE_INCLUDE_DIRECTORIES "${PLX_SQLITE3_INCLUDE}"
  # What libsqlite3.a calls (pkg-config --static --libs sqlite3, less zlib which Debian's
  # build does not use): libm, and dlopen/pthreads from glibc.
  INTERFACE_LINK_LIBRARIES "m;${CMAKE_DL_LIBS};Threads::Threads")

find_library(PLX_XXHASH_ARCHIVE NAMES libxxhash.a NO_CACHE REQUIRED)
add_library(PkgConfig::XXHASH STATIC IMPORTED)
set_target_properties(PkgConfig::XXHASH PROPERTIES IMPORTED_LOCATION "${PLX_XXHASH_ARCHIVE}")

# ---- spdlog and fmt: header-only ------------------------------------------------------------
# The four targets of their exports, so that find_package(spdlog) (and its find_dependency
# on fmt) finds them all defined and does nothing. Without SPDLOG_COMPILED_LIB spdlog is
# header-only; FMT_HEADER_ONLY does the same for fmt.
find_path(PLX_SPDLOG_INCLUDE spdlog/spdlog.h NO_CACHE REQUIRED)
find_path(PLX_FMT_INCLUDE fmt/format-inl.h NO_CACHE REQUIRED)
foreach(_plx_t IN ITEMS fmt::fmt fmt::fmt-header-only)
  add_library(${_plx_t} INTERFACE IMPORTED)
  set_target_properties(${_plx_t} PROPERTIES
    INTERFACE_COMPILE_DEFINITIONS "FMT_HEADER_ONLY=1"
    INTERFACE_INCLUDE_DIRECTORIES "${PLX_FMT_INCLUDE}")
endforeach()
foreach(_plx_t IN ITEMS spdlog::spdlog spdlog::spdlog_header_only)
  add_library(${_plx_t} INTERFACE IMPORTED)
  set_target_properties(${_plx_t} PROPERTIES
    INTERFACE_COMPILE_DEFINITIONS "SPDLOG_FMT_EXTERNAL"
    INTERFACE_INCLUDE_DIRECTORIES "${PLX_SPDLOG_INCLUDE}"
    INTERFACE_LINK_LIBRARIES "fmt::fmt-header-only;Threads::Threads")
endforeach()

unset(_plx_t)

# RUNPATH of the self-contained library (called from runtime/CMakeLists.txt): libnvrtc next
# to it, from pip's NVIDIA wheels when it sits in site-packages/<package>/, or from the
# toolkit. Set in the build tree too (setup.py copies the library from there), and as
# DT_RUNPATH so LD_LIBRARY_PATH still wins.
function(parallax_static_deps_runpath target)
  set_target_properties(${target} PROPERTIES
    BUILD_WITH_INSTALL_RPATH ON
    INSTALL_RPATH_USE_LINK_PATH OFF
    INSTALL_RPATH "\$ORIGIN;\$ORIGIN/../nvidia/cu13/lib;\$ORIGIN/../nvidia/cuda_nvrtc/lib;/usr/local/cuda/lib64")
  target_link_options(${target} PRIVATE "LINKER:--enable-new-dtags")
endfunction()
