// GPU discovery and the per-call launch context of kiln._cuda (device.cpp).
// The module must import and answer on machines with no GPU and no driver:
// cudart is linked statically and loads libcuda.so lazily, so the first
// runtime call is where "no driver" shows up -- as an error code, which is
// cached here and reported by status() and by every kernel as
// "<kernel>: no CUDA GPU available: <reason>".
#pragma once
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "common/cuda_array.h"

namespace kiln::cuda {

// ---- module-level queries (bound in bind_cuda.cpp) ----------------------------
int device_count();  // 0 when no driver or no GPU; never raises
bool is_available();
std::string status();  // one human line: the GPUs, or why there are none
py::dict device_info(int index);
std::vector<std::string> compiled_architectures();  // ["sm_80", "sm_90", "compute_90"]
std::pair<int, int> runtime_version();              // (13, 0): the linked CUDA runtime

// Raises RuntimeError("<op>: no CUDA GPU available: <reason>") when device_count() == 0.
void require_gpu(const char* op);

// Everything a kernel wrapper does between checking its arguments and
// launching: require a GPU, make sure every pointer is GPU-accessible memory on
// one device, make that device current (restored on destruction), and pick the
// stream. The launch goes to the stream that `out`'s producer named in its
// __cuda_array_interface__ (the legacy default stream when it named none), and
// inputs produced on another stream are ordered before it with an event.
class LaunchContext {
 public:
  struct Arg {
    const CudaArray* array;
    const char* name;
  };
  LaunchContext(const char* op, Arg out, std::vector<Arg> inputs);
  ~LaunchContext();
  LaunchContext(const LaunchContext&) = delete;
  LaunchContext& operator=(const LaunchContext&) = delete;
  cudaStream_t stream() const { return stream_; }

 private:
  int previous_device_ = -1;
  cudaStream_t stream_ = nullptr;
};

}  // namespace kiln::cuda
