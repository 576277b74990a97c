# The unity build (MMTUNE_UNITY_BUILD) compiles eight test files as one translation unit, where their
# anonymous namespaces are one namespace: two files' helpers of one name would clash, or silently
# overload each other. So every test file keeps its helpers and tests in a namespace named after the
# file (test_foo.cpp: `namespace test_foo {`) and opens no anonymous namespace at file level.
#   cmake -DROOT=<tests dir> -P check_test_namespaces.cmake
file(GLOB_RECURSE files "${ROOT}/unit/test_*.cpp" "${ROOT}/integration/test_*.cpp")
set(bad)
foreach(f ${files})
  get_filename_component(stem ${f} NAME_WE)
  file(STRINGS ${f} anon REGEX "^namespace {")
  file(STRINGS ${f} own REGEX "^namespace ${stem} {")
  if(anon OR NOT own)
    file(RELATIVE_PATH rel ${ROOT} ${f})
    list(APPEND bad "${rel}")
  endif()
endforeach()
list(LENGTH files n)
if(bad)
  list(JOIN bad ", " bad)
  message(FATAL_ERROR "test files without their own namespace: ${bad} (hint: write `namespace <file name> {` "
    "where the file opens `namespace {`; the unity build shares anonymous namespaces between files)")
endif()
message(STATUS "all ${n} test files keep their own namespace")
