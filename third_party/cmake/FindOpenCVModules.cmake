# FindOpenCVModules: the three OpenCV modules mmtune uses (core, imgproc, imgcodecs) from Debian's
# libopencv-{core,imgproc,imgcodecs}-dev. Debian ships OpenCVConfig.cmake and opencv4.pc only in the
# libopencv-dev metapackage, which pulls every module plus GUI toolkits; this module needs only the
# three we install. Defines OpenCVModules_FOUND, OpenCVModules_VERSION and the imported targets
# OpenCV::core, OpenCV::imgproc, OpenCV::imgcodecs.
find_path(OpenCVModules_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
set(_mmtune_cv_libs)
foreach(m core imgproc imgcodecs)
  find_library(OpenCVModules_${m}_LIBRARY opencv_${m})
  list(APPEND _mmtune_cv_libs OpenCVModules_${m}_LIBRARY)
endforeach()
if(OpenCVModules_INCLUDE_DIR AND EXISTS "${OpenCVModules_INCLUDE_DIR}/opencv2/core/version.hpp")
  set(_parts)
  foreach(part MAJOR MINOR REVISION)
    file(STRINGS "${OpenCVModules_INCLUDE_DIR}/opencv2/core/version.hpp" _line REGEX "#define CV_VERSION_${part} ")
    string(REGEX REPLACE ".*CV_VERSION_${part} +([0-9]+).*" "\\1" _n "${_line}")
    list(APPEND _parts ${_n})
  endforeach()
  list(JOIN _parts "." OpenCVModules_VERSION)
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenCVModules
  REQUIRED_VARS OpenCVModules_INCLUDE_DIR ${_mmtune_cv_libs} VERSION_VAR OpenCVModules_VERSION
  REASON_FAILURE_MESSAGE "install libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev (scripts/setup.sh does)")
if(OpenCVModules_FOUND)
  foreach(m core imgproc imgcodecs)
    if(NOT TARGET OpenCV::${m})
      add_library(OpenCV::${m} UNKNOWN IMPORTED)
      set_target_properties(OpenCV::${m} PROPERTIES IMPORTED_LOCATION "${OpenCVModules_${m}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${OpenCVModules_INCLUDE_DIR}")
    endif()
  endforeach()
endif()
mark_as_advanced(OpenCVModules_INCLUDE_DIR OpenCVModules_core_LIBRARY OpenCVModules_imgproc_LIBRARY
                 OpenCVModules_imgcodecs_LIBRARY)
