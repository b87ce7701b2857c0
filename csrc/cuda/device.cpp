// GPU discovery, status text and the per-call launch context of kiln._cuda.
// Host code compiled by the C++ compiler against the static CUDA runtime.
// The first runtime call (cudaGetDeviceCount) is where a missing driver or GPU
// shows up; its result is probed once and cached, so a GPU-less machine pays
// for the failed driver load once and every later call gets the same answer.
#include "cuda/device.h"

#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "common/cuda_check.h"

#ifndef KILN_CUDA_ARCHS
#error "KILN_CUDA_ARCHS must list the compiled architectures (set by cmake/cuda.cmake)"
#endif

namespace kiln::cuda {
namespace {

struct Probe {
  int count = 0;
  std::string reason;  // why count is 0
};

const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    const cudaError_t err = cudaGetDeviceCount(&r.count);
    if (err != cudaSuccess) {
      r.count = 0;
      r.reason = cuda_error_text(err, "cudaGetDeviceCount");
      cudaGetLastError();  // the failure must not surface later as a "launch" error
    } else if (r.count == 0) {
      r.reason = "cudaGetDeviceCount reported 0 devices";
    }
    return r;
  }();
  return p;
}

std::string version_str(int v) {  // 13000 -> "13.0", 12080 -> "12.8"
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// "sm_90" -> 90, "compute_90" -> 90; 0 for names with a suffix (sm_90a) or unparsable.
int arch_number(const std::string& arch, const char* prefix) {
  const std::string p(prefix);
  if (arch.compare(0, p.size(), p) != 0) return 0;
  char* end = nullptr;
  const long v = std::strtol(arch.c_str() + p.size(), &end, 10);
  return (end && *end == '\0') ? static_cast<int>(v) : 0;
}

// Whether this build has code a GPU of compute capability major.minor can run:
// SASS for the same major and a minor <= the GPU's, or PTX the driver can JIT.
bool has_image_for(int major, int minor) {
  const int cc = major * 10 + minor;
  for (const auto& arch : compiled_architectures()) {
    const int sm = arch_number(arch, "sm_"), ptx = arch_number(arch, "compute_");
    if (sm && sm / 10 == major && sm % 10 <= minor) return true;
    if (ptx && ptx <= cc) return true;
  }
  return false;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string build_str() {
  const auto [maj, min] = runtime_version();
  return "kiln._cuda built with CUDA runtime " + std::to_string(maj) + "." + std::to_string(min) +
         " for " + join(compiled_architectures(), ", ");
}

cudaDeviceProp properties(int index, const char* op) {
  require_gpu(op);
  const int n = device_count();
  if (index < 0 || index >= n)
    throw std::out_of_range(std::string(op) + ": device index " + std::to_string(index) +
                          " out of range (" + std::to_string(n) + " GPU" + (n == 1 ? "" : "s") +
                          ")");
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, index), op, "cudaGetDeviceProperties");
  return prop;
}

// The stream a __cuda_array_interface__ "stream" entry names (protocol v3):
// None -> no stream given (nullptr), 1 -> legacy default, 2 -> per-thread default,
// anything else -> a cudaStream_t handle. 0 is disallowed by the protocol; read as legacy.
bool stream_of(const LaunchContext::Arg& a, cudaStream_t* s) {
  if (!a.stream) return false;
  const uintptr_t v = *a.stream;
  *s = v == 2 ? cudaStreamPerThread : (v <= 1 ? cudaStreamLegacy : reinterpret_cast<cudaStream_t>(v));
  return true;
}

}  // namespace

// ---- module-level queries -----------------------------------------------------
int device_count() { return probe().count; }
bool is_available() { return device_count() > 0; }

void require_gpu(const char* op) {
  if (device_count() == 0)
    throw std::runtime_error(std::string(op) + ": no CUDA GPU available: " + probe().reason);
}

std::vector<std::string> compiled_architectures() {
  std::vector<std::string> out;
  std::stringstream ss(KILN_CUDA_ARCHS);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::pair<int, int> runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);  // answers without a driver: it is the linked runtime's version
  return {v / 1000, v % 1000 / 10};
}

std::string status() {
  const int n = device_count();
  if (n == 0) return "no CUDA GPU: " + probe().reason + "; " + build_str();
  std::string s = std::to_string(n) + (n == 1 ? " GPU: " : " GPUs: ");
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (i) s += ", ";
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      cudaGetLastError();
      s += "device " + std::to_string(i) + " (properties unavailable)";
      continue;
    }
    s += std::string(p.name) + " (sm_" + std::to_string(p.major * 10 + p.minor) + ")";
    if (!has_image_for(p.major, p.minor)) s += " [no kernel image for this GPU in this build]";
  }
  int driver = 0;
  cudaDriverGetVersion(&driver);
  return s + ", driver " + version_str(driver) + "; " + build_str();
}

std::map<std::string, InfoValue> device_info(int index) {
  const cudaDeviceProp p = properties(index, "device_info");
  return {
      {"index", int64_t{index}},
      {"name", std::string(p.name)},
      {"compute_capability", std::make_pair(p.major, p.minor)},
      {"arch", "sm_" + std::to_string(p.major * 10 + p.minor)},
      {"total_memory", static_cast<int64_t>(p.totalGlobalMem)},
      {"multiprocessor_count", int64_t{p.multiProcessorCount}},
      {"has_kernel_image", has_image_for(p.major, p.minor)},
  };
}

// ---- launch context -------------------------------------------------------------
LaunchContext::LaunchContext(const char* op, Arg out, std::vector<Arg> inputs) {
  require_gpu(op);
  inputs.insert(inputs.begin(), out);
  // Every pointer must be memory the GPU can address, and device memory must sit
  // on one device: a host pointer would otherwise fault inside the kernel and
  // poison the CUDA context for the rest of the process.
  int device = -1;
  const char* device_arg = nullptr;
  for (const Arg& a : inputs) {
    if (a.size == 0) continue;
    cudaPointerAttributes attr{};
    const cudaError_t err = cudaPointerGetAttributes(&attr, a.ptr);
    if (err != cudaSuccess || attr.type == cudaMemoryTypeUnregistered) {
      cudaGetLastError();
      throw std::invalid_argument(std::string(op) + ": " + a.name +
                                  " does not point to GPU-accessible memory (its "
                                  "__cuda_array_interface__ data pointer is unknown to CUDA)");
    }
    if (attr.type != cudaMemoryTypeDevice) continue;  // managed / pinned host: any device
    if (device >= 0 && attr.device != device)
      throw std::invalid_argument(std::string(op) + ": " + a.name + " is on cuda:" +
                                  std::to_string(attr.device) + " but " + device_arg +
                                  " is on cuda:" + std::to_string(device));
    device = attr.device;
    device_arg = a.name;
  }
  check_cuda(cudaGetDevice(&previous_device_), op, "cudaGetDevice");
  if (device >= 0 && device != previous_device_)
    check_cuda(cudaSetDevice(device), op, "cudaSetDevice");
  else
    previous_device_ = -1;  // nothing to restore

  if (!stream_of(out, &stream_)) stream_ = cudaStreamLegacy;
  for (size_t i = 1; i < inputs.size(); ++i) {
    cudaStream_t s{};
    if (!stream_of(inputs[i], &s) || s == stream_) continue;
    cudaEvent_t ev{};
    cudaError_t err = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (err == cudaSuccess) {
      err = cudaEventRecord(ev, s);
      if (err == cudaSuccess) err = cudaStreamWaitEvent(stream_, ev, 0);
      cudaEventDestroy(ev);  // released once the wait is satisfied
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      if (previous_device_ >= 0) cudaSetDevice(previous_device_);  // no destructor runs on throw
      check_cuda(err, op, "ordering an input's stream before the launch stream");
    }
  }
}

LaunchContext::~LaunchContext() {
  if (previous_device_ >= 0) cudaSetDevice(previous_device_);
}

}  // namespace kiln::cuda
