// GPU discovery and the per-call launch context of kiln._cuda (device.cpp).
// The module must import and answer on machines with no GPU and no driver:
// cudart is linked statically and loads libcuda.so lazily, so the first
// runtime call is where "no driver" shows up -- as an error code, which is
// cached here and reported by status() and by every kernel as
// "<kernel>: no CUDA GPU available: <reason>".
// Free of pybind11 (it compiles in a second, not five): errors are standard
// exceptions that pybind11 maps -- std::runtime_error -> RuntimeError,
// std::invalid_argument -> ValueError, std::out_of_range -> IndexError -- and
// device_info returns standard containers that pybind11/stl.h turns into a dict.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace kiln::cuda {

// ---- module-level queries (bound in bind_cuda.cpp) ----------------------------
int device_count();  // 0 when no driver or no GPU; never raises
bool is_available();
std::string status();  // one human line: the GPUs, or why there are none
// {"name", "index", "compute_capability": (major, minor), "arch": "sm_90", "total_memory"
//  (bytes), "multiprocessor_count", "has_kernel_image": whether this build can run on it}
using InfoValue = std::variant<bool, int64_t, std::string, std::pair<int, int>>;
std::map<std::string, InfoValue> device_info(int index);
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
  struct Arg {  // one array argument, as parsed by common/cuda_array.h
    const void* ptr;
    int64_t size;                     // elements; 0 skips the pointer checks
    std::optional<uintptr_t> stream;  // the "stream" entry of its __cuda_array_interface__
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
