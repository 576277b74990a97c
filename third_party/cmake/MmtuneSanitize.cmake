# Sanitizer and fuzzer builds (issue #20). Both go in a build directory of their own, configured by
# scripts/test.sh --sanitize (build-sanitize/, clang), which scripts/fuzz.sh reuses:
#   MMTUNE_SANITIZE  every target compiled and linked with ASan + UBSan. UBSan does not recover (a
#                    report fails the test). vptr is off: libtorch is built without the sanitizer
#                    runtime, and type checks across its RTTI report false positives.
#   MMTUNE_FUZZ      (clang only) also libFuzzer's coverage instrumentation on every target
#                    (-fsanitize=fuzzer-no-link), so the fuzzers see the parsers' branches, and the
#                    targets in tests/fuzz linked with -fsanitize=fuzzer.
# The frozen libraries (libtorch, OpenCV, sentencepiece, yaml-cpp) are not instrumented: ASan still
# sees their heap (it intercepts malloc), not their internal reads.
if(MMTUNE_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "mmtune: MMTUNE_FUZZ needs clang (libFuzzer); configure with -DCMAKE_CXX_COMPILER=clang++ "
    "(scripts/test.sh --sanitize does)")
endif()
if(MMTUNE_SANITIZE OR MMTUNE_FUZZ)
  set(MMTUNE_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  if(MMTUNE_FUZZ)
    list(APPEND MMTUNE_SANITIZER_FLAGS -fsanitize=fuzzer-no-link)
  endif()
  add_compile_options(${MMTUNE_SANITIZER_FLAGS})
  add_link_options(${MMTUNE_SANITIZER_FLAGS})
  message(STATUS "mmtune: sanitizers on (${MMTUNE_SANITIZER_FLAGS})")
endif()
