// Compiles the precompiled header (torch/torch.h) once; every torch-using target reuses it
// through mmtune_use_torch() in third_party/cmake/MmtuneTorch.cmake.
