# cpp-httplib (Debian libcpp-httplib-dev: the header plus its compiled libcpp-httplib.so) through
# its pkg-config file, which carries the feature defines (OpenSSL, zlib, brotli) that the compiled
# library was built with: the header must be read with the same ones.
# Provides PkgConfig::HTTPLIB.
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB IMPORTED_TARGET cpp-httplib>=${CppHttplib_FIND_VERSION})
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CppHttplib
  REQUIRED_VARS HTTPLIB_LINK_LIBRARIES
  VERSION_VAR HTTPLIB_VERSION
  FAIL_MESSAGE "cpp-httplib not found: apt-get install libcpp-httplib-dev (scripts/setup.sh installs it)")
