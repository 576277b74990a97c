# FindGloo: the Gloo *headers* that torch's ProcessGroupGloo.hpp includes. The PyPI torch wheel
# ships libtorch_cpu with Gloo compiled in, but not Gloo's headers; Debian's libgloo-dev provides
# them. We never link libgloo: the only Gloo code we run is inside libtorch_cpu.
# Defines Gloo_FOUND, Gloo_INCLUDE_DIR and the interface target Gloo::headers.
find_path(Gloo_INCLUDE_DIR gloo/rendezvous/store.h HINTS ENV GLOO_ROOT PATH_SUFFIXES include)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Gloo REQUIRED_VARS Gloo_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "install Debian's libgloo-dev (scripts/setup.sh does)")
if(Gloo_FOUND AND NOT TARGET Gloo::headers)
  add_library(Gloo::headers INTERFACE IMPORTED)
  # Not SYSTEM-ordered before torch: these headers hold nothing torch ships itself.
  set_target_properties(Gloo::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${Gloo_INCLUDE_DIR}")
endif()
mark_as_advanced(Gloo_INCLUDE_DIR)
