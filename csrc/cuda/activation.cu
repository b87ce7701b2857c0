// Elementwise activation kernels on CUDA (same names as csrc/cpu/activation.cpp):
//   relu(x)            = max(x, 0), NaN passes through (as in PyTorch)
//   relu_backward      = 0 where x <= 0, else grad (subgradient 0 at 0; a NaN x passes
//                        grad through, as PyTorch's threshold_backward does)
// One grid-stride loop per kernel, instantiated for float and double only. No
// __restrict__: out may alias an input (in-place relu_), which is safe because
// each element is read and then written by the same thread.
#include "common/cuda_check.h"
#include "cuda/grid.cuh"
#include "cuda/launchers.h"

namespace kiln::cuda {
namespace {

template <class T> __global__ void relu_kernel(const T* x, T* out, int64_t n) {
  // `x < 0 ? 0 : x` rather than fmax: fmax(NaN, 0) would return 0 and hide the NaN.
  for (int64_t i : GridStride(n)) out[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
__global__ void relu_backward_kernel(const T* grad, const T* x, T* grad_input, int64_t n) {
  for (int64_t i : GridStride(n)) grad_input[i] = x[i] <= T(0) ? T(0) : grad[i];
}

}  // namespace

template <class T> void launch_relu(const T* x, T* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(x, out, n);
  check_launch("relu");
}

template <class T>
void launch_relu_backward(const T* grad, const T* x, T* grad_input, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_backward_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(grad, x, grad_input, n);
  check_launch("relu_backward");
}

template void launch_relu<float>(const float*, float*, int64_t, cudaStream_t);
template void launch_relu<double>(const double*, double*, int64_t, cudaStream_t);
template void launch_relu_backward<float>(const float*, const float*, float*, int64_t, cudaStream_t);
template void launch_relu_backward<double>(const double*, const double*, double*, int64_t,
                                           cudaStream_t);

}  // namespace kiln::cuda
