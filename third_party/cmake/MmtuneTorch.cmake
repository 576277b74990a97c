# LibTorch from the PyPI torch wheel installed by scripts/setup.sh into a venv outside the repo.
# MMTUNE_PYTHON (cache var or environment) is that venv's python; torch.utils.cmake_prefix_path
# tells where TorchConfig.cmake lives.
set(MMTUNE_PYTHON "$ENV{MMTUNE_PYTHON}" CACHE FILEPATH "python of the venv made by scripts/setup.sh")
if(NOT MMTUNE_PYTHON)
  message(FATAL_ERROR "mmtune: MMTUNE_PYTHON is not set. Run scripts/setup.sh, then configure with "
    "-DMMTUNE_PYTHON=<cache>/venv-<hash>/bin/python (scripts/test.sh does both).")
endif()
execute_process(
  COMMAND ${MMTUNE_PYTHON} -c "import torch;print(torch.utils.cmake_prefix_path);print(torch.__version__.split('+')[0])"
  OUTPUT_VARIABLE _mmtune_torch_out ERROR_VARIABLE _mmtune_torch_err RESULT_VARIABLE _mmtune_torch_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _mmtune_torch_rc EQUAL 0)
  message(FATAL_ERROR "mmtune: '${MMTUNE_PYTHON} -c import torch' failed: ${_mmtune_torch_err}\n"
    "hint: rerun scripts/setup.sh")
endif()
string(REPLACE "\n" ";" _mmtune_torch_out "${_mmtune_torch_out}")
list(GET _mmtune_torch_out 0 MMTUNE_TORCH_PREFIX)
list(GET _mmtune_torch_out 1 MMTUNE_TORCH_FOUND_VERSION)
list(APPEND CMAKE_PREFIX_PATH "${MMTUNE_TORCH_PREFIX}")
# Torch's CUDA config otherwise try_run()s a GPU probe (which fails to even configure here under
# C++20). We compile no .cu files; the arch list only matters to nvcc. 9.0 = H100 / H200.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA archs for torch's nvcc flags")
endif()
find_package(Torch REQUIRED)
if(NOT MMTUNE_TORCH_FOUND_VERSION VERSION_EQUAL MMTUNE_TORCH_VERSION)
  message(WARNING "mmtune: building against torch ${MMTUNE_TORCH_FOUND_VERSION}; the pinned version is "
    "${MMTUNE_TORCH_VERSION} (third_party/python/requirements.lock)")
endif()
message(STATUS "mmtune: torch ${MMTUNE_TORCH_FOUND_VERSION} from ${MMTUNE_TORCH_PREFIX}")

# mmtune_torch: what a target that uses torch links. c10d's Gloo backend is compiled into
# libtorch_cpu but its header is guarded by USE_C10D_GLOO; NCCL likewise when torch has CUDA.
add_library(mmtune_torch INTERFACE)
target_link_libraries(mmtune_torch INTERFACE ${TORCH_LIBRARIES} Gloo::headers)
target_compile_definitions(mmtune_torch INTERFACE USE_C10D_GLOO)
# The wheel's libtorch.so exports its own copy of parts of std::filesystem (remove_all, equivalent,
# permissions, ...) that crash when called from our code (null call inside remove_all). Symbols
# bind to the first library in NEEDED order, and torch would come before libstdc++: list
# libstdc++ first so every std:: symbol resolves to the system's. tests/unit/core/test_torch_link.cpp
# guards it.
target_link_options(mmtune_torch INTERFACE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
set(MMTUNE_HAVE_NCCL OFF)
if(MMTUNE_WITH_CUDA AND TARGET torch_cuda)
  # CUDA-only code (a GPU's properties through ATen/cuda) compiles under this one, NCCL or not
  target_compile_definitions(mmtune_torch INTERFACE MMTUNE_WITH_CUDA_TORCH)
  find_path(MMTUNE_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  if(MMTUNE_NCCL_INCLUDE_DIR)
    set(MMTUNE_HAVE_NCCL ON)
    target_compile_definitions(mmtune_torch INTERFACE USE_C10D_NCCL MMTUNE_WITH_NCCL)
    target_include_directories(mmtune_torch SYSTEM INTERFACE ${MMTUNE_NCCL_INCLUDE_DIR})
  endif()
endif()
message(STATUS "mmtune: NCCL code path ${MMTUNE_HAVE_NCCL}")

# One precompiled header for every torch-using target: torch/torch.h costs ~25 s per TU here.
add_library(mmtune_pch STATIC ${PROJECT_SOURCE_DIR}/src/core/pch.cpp)
mmtune_target_defaults(mmtune_pch)
target_link_libraries(mmtune_pch PUBLIC mmtune_torch)
if(MMTUNE_USE_PCH)
  target_precompile_headers(mmtune_pch PRIVATE <torch/torch.h> <string> <vector> <memory> <optional>)
endif()

# mmtune_use_torch(<target>): link torch and reuse the precompiled header.
function(mmtune_use_torch target)
  target_link_libraries(${target} PUBLIC mmtune_torch)
  if(MMTUNE_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM mmtune_pch)
  endif()
endfunction()
