// Launch-geometry helpers for the .cu files: grid-stride loops over int64
// indices, so any element count works with a bounded grid (no overflow of
// gridDim, no int32 wrap-around past 2^31 elements).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace kiln::cuda {

constexpr int kBlock = 256;  // threads per block for elementwise kernels
// 2^16 blocks x 256 threads keep every SM of a current GPU busy; the loop covers the rest.
constexpr int64_t kMaxBlocks = 65536;

inline unsigned int grid_for(int64_t n) {
  return static_cast<unsigned int>(std::clamp<int64_t>((n + kBlock - 1) / kBlock, 1, kMaxBlocks));
}

// for (int64_t i : GridStride(n)) visits this thread's share of [0, n).
struct GridStride {
  struct It {
    int64_t i, step;
    __device__ int64_t operator*() const { return i; }
    __device__ It& operator++() { i += step; return *this; }
    __device__ bool operator!=(const It& end) const { return i < end.i; }
  };
  int64_t n;
  __device__ explicit GridStride(int64_t count) : n(count) {}
  __device__ It begin() const {
    return {static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
            static_cast<int64_t>(gridDim.x) * blockDim.x};
  }
  __device__ It end() const { return {n, 0}; }
};

}  // namespace kiln::cuda
