// The CUDA launchers: plain C++ entry points (raw device pointers, sizes, a
// stream) that the pybind11 wrappers in table.cpp call once the arguments are
// checked. Defined in the .cu files and explicitly instantiated for float and
// double only, so nvcc compiles each kernel twice per arch and no more.
// Nothing here includes pybind11: nvcc never parses it. Every launcher throws
// std::runtime_error naming the kernel when the launch fails.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace kiln::cuda {

// Epilogue applied by matmul after the optional bias (same names as kiln._cpu).
enum class Activation { none, relu, gelu, gelu_tanh };

// out[z] = act(op(a[z]) @ op(b[z]) + bias); see cpu/kernels.h for the contract.
struct GemmArgs {
  int64_t batch, m, n, k;  // out is (batch, m, n)
  bool a_batched, b_batched;  // false: that operand is broadcast over the batch
  bool trans_a, trans_b;      // a stored (k, m) / b stored (n, k)
  Activation activation;
};

// ---- activation.cu: elementwise over n contiguous elements -------------------
template <class T> void launch_relu(const T* x, T* out, int64_t n, cudaStream_t stream);
template <class T>
void launch_relu_backward(const T* grad, const T* x, T* grad_input, int64_t n, cudaStream_t stream);

// ---- gemm.cu ------------------------------------------------------------------
// Tiled shared-memory gemm; bias is (n,) or nullptr.
template <class T>
void launch_matmul(const T* a, const T* b, const T* bias, T* out, const GemmArgs& g,
                   cudaStream_t stream);
// One thread per output element, k-loop in registers: the reference for tests and bench.
template <class T>
void launch_matmul_naive(const T* a, const T* b, T* out, int64_t m, int64_t n, int64_t k,
                         cudaStream_t stream);

}  // namespace kiln::cuda
