# Version pins of mmtune's C++ dependencies (minimums we build and test with). The exact versions
# in use are listed, with where each comes from, in third_party/DEPENDENCIES.md. Python packages are
# pinned exactly in third_party/python/requirements.lock.
set(MMTUNE_TORCH_VERSION 2.11.0)        # the lock pins this; configure warns on any other
set(MMTUNE_MIN_YAML_CPP 0.7.0)
set(MMTUNE_MIN_SPDLOG 1.10.0)
set(MMTUNE_MIN_NLOHMANN_JSON 3.11.2)
set(MMTUNE_MIN_CLI11 2.1.2)
set(MMTUNE_MIN_CPP_HTTPLIB 0.11)
set(MMTUNE_MIN_GTEST 1.12.1)
set(MMTUNE_MIN_SENTENCEPIECE 0.1.97)
set(MMTUNE_MIN_OPENCV 4.6.0)
