# Compiler setup shared by every mmtune target: ccache, warnings, one place for flags.
find_program(MMTUNE_CCACHE ccache)
if(MMTUNE_CCACHE)
  # ccache only hits with a precompiled header when these are sloppy; BASEDIR makes paths inside
  # the checkout relative and NOHASHDIR keeps the build directory out of the hash (we compile with
  # -g1), so a fresh clone elsewhere (CI) hits the same cache entries. Passing them through the
  # launcher makes every build use them, whoever starts it.
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} CCACHE_NOHASHDIR=true ${MMTUNE_CCACHE})
  message(STATUS "mmtune: ccache ${MMTUNE_CCACHE}")
endif()

# mmtune_target_defaults(<target>): warnings on our code; the same flags on every target so that
# targets can share one precompiled header (REUSE_FROM requires identical flags).
# GCC 12 at -O2 reports false -Warray-bounds / -Wstringop-overflow / -overread inside libstdc++'s inlined
# std::string code for ordinary concatenations (GCC PR105329, PR105651; fixed in GCC 13).
set(MMTUNE_WARNING_FLAGS -Wall -Wextra -Wno-unused-parameter)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  list(APPEND MMTUNE_WARNING_FLAGS -Wno-array-bounds -Wno-stringop-overflow -Wno-stringop-overread)
endif()

function(mmtune_target_defaults target)
  target_compile_options(${target} PRIVATE ${MMTUNE_WARNING_FLAGS})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/include)
endfunction()
