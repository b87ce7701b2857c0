// CUDA runtime error checks shared by the kiln._cuda host code and the .cu
// launchers. A failing runtime call becomes a C++ exception whose message names
// the kernel and the call; pybind11 turns std::runtime_error into RuntimeError,
// so no CUDA error ever aborts the interpreter. Free of pybind11 on purpose:
// .cu files include it, and nvcc should not parse pybind11 once per arch.
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace kiln::cuda {

// "cudaGetDeviceCount failed: CUDA driver version is insufficient ... (cudaErrorInsufficientDriver)"
inline std::string cuda_error_text(cudaError_t err, const char* call) {
  return std::string(call) + " failed: " + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) +
         ")";
}

// Throws std::runtime_error("<op>: <call> failed: <reason>") unless err is cudaSuccess.
inline void check_cuda(cudaError_t err, const char* op, const char* call) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(op) + ": " + cuda_error_text(err, call));
}

// After a <<<...>>> launch: a bad configuration (too many threads, too much shared
// memory, no image for this GPU's arch) only shows up in cudaGetLastError.
inline void check_launch(const char* op) { check_cuda(cudaGetLastError(), op, "kernel launch"); }

}  // namespace kiln::cuda
