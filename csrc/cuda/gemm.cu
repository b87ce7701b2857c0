// General matrix multiply on CUDA (same names as csrc/cpu/gemm.cpp):
//   out[z] = act(op(a[z]) @ op(b[z]) + bias),  op(x) = x or x^T,
//   z over the batch, an operand with batch 1 broadcast to every z.
// matmul: the textbook shared-memory tiling. Each 16x16 block computes one
// 16x16 tile of out; per step it stages a 16x16 tile of op(a) and of op(b) in
// shared memory, so every element read from global memory is used 16 times.
// Transposed operands are loaded with the thread roles swapped so the global
// reads stay coalesced; the +1 column of padding keeps the transposed shared
// stores free of bank conflicts. Accumulation is in T (float32 stays float32).
// matmul_naive: one thread per output element, no reuse -- the reference.
#include "common/cuda_check.h"
#include "cuda/grid.cuh"
#include "cuda/launchers.h"

namespace kiln::cuda {
namespace {

constexpr int kTile = 16;
constexpr unsigned int kMaxGridYZ = 65535;  // CUDA's limit on gridDim.y and gridDim.z

// Single-precision math for float: no silent promotion to the slow double routines.
template <class T> __device__ T erf_t(T v) {
  if constexpr (sizeof(T) == 4) return erff(v); else return erf(v);
}
template <class T> __device__ T tanh_t(T v) {
  if constexpr (sizeof(T) == 4) return tanhf(v); else return tanh(v);
}

template <class T> __device__ T activate(T v, Activation act) {
  constexpr T kSqrt1_2 = T(0.70710678118654752440);  // 1/sqrt(2)
  constexpr T kSqrt2_Pi = T(0.79788456080286535588);  // sqrt(2/pi)
  switch (act) {
    case Activation::relu: return v < T(0) ? T(0) : v;
    case Activation::gelu: return T(0.5) * v * (T(1) + erf_t(v * kSqrt1_2));
    case Activation::gelu_tanh:
      return T(0.5) * v * (T(1) + tanh_t(kSqrt2_Pi * (v + T(0.044715) * v * v * v)));
    default: return v;
  }
}

template <class T>
__global__ void __launch_bounds__(kTile* kTile)
    matmul_tiled_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias,
                        T* __restrict__ out, GemmArgs g) {
  __shared__ T as[kTile][kTile + 1];  // as[i][j] = op(a)(m0 + i, k0 + j)
  __shared__ T bs[kTile][kTile + 1];  // bs[i][j] = op(b)(k0 + i, n0 + j)
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t m = g.m, n = g.n, k = g.k;
  const int64_t tiles_m = (m + kTile - 1) / kTile;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTile;
  // y and z loop so that any m and batch fit the bounded grid; the bounds depend
  // on blockIdx only, so every thread of a block reaches the same __syncthreads.
  for (int64_t z = blockIdx.z; z < g.batch; z += gridDim.z) {
    const T* az = a + (g.a_batched ? z * m * k : 0);
    const T* bz = b + (g.b_batched ? z * k * n : 0);
    for (int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      const int64_t m0 = tm * kTile;
      T acc = T(0);
      for (int64_t k0 = 0; k0 < k; k0 += kTile) {
        if (!g.trans_a) {  // a is (m, k): thread (ty, tx) reads row m0+ty, column k0+tx
          const int64_t r = m0 + ty, c = k0 + tx;
          as[ty][tx] = (r < m && c < k) ? az[r * k + c] : T(0);
        } else {  // a is (k, m): thread (ty, tx) reads row k0+ty, column m0+tx
          const int64_t r = k0 + ty, c = m0 + tx;
          as[tx][ty] = (r < k && c < m) ? az[r * m + c] : T(0);
        }
        if (!g.trans_b) {  // b is (k, n)
          const int64_t r = k0 + ty, c = n0 + tx;
          bs[ty][tx] = (r < k && c < n) ? bz[r * n + c] : T(0);
        } else {  // b is (n, k): thread (ty, tx) reads row n0+ty, column k0+tx
          const int64_t r = n0 + ty, c = k0 + tx;
          bs[tx][ty] = (r < n && c < k) ? bz[r * k + c] : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTile; ++kk) acc += as[ty][kk] * bs[kk][tx];
        __syncthreads();
      }
      const int64_t row = m0 + ty, col = n0 + tx;
      if (row < m && col < n) {
        if (bias) acc += bias[col];
        out[(z * m + row) * n + col] = activate(acc, g.activation);
      }
    }
  }
}

template <class T>
__global__ void matmul_naive_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                    T* __restrict__ out, int64_t m, int64_t n, int64_t k) {
  for (int64_t idx : GridStride(m * n)) {
    const int64_t i = idx / n, j = idx % n;
    T acc = T(0);
    for (int64_t p = 0; p < k; ++p) acc += a[i * k + p] * b[p * n + j];
    out[idx] = acc;
  }
}

unsigned int capped(int64_t v, unsigned int cap) {
  return static_cast<unsigned int>(v < 1 ? 1 : (v > cap ? cap : v));
}

}  // namespace

template <class T>
void launch_matmul(const T* a, const T* b, const T* bias, T* out, const GemmArgs& g,
                   cudaStream_t stream) {
  if (g.batch == 0 || g.m == 0 || g.n == 0) return;
  const int64_t tiles_n = (g.n + kTile - 1) / kTile, tiles_m = (g.m + kTile - 1) / kTile;
  if (tiles_n > 0x7fffffff)
    throw std::runtime_error("matmul: n = " + std::to_string(g.n) + " exceeds the grid limit");
  const dim3 grid(static_cast<unsigned int>(tiles_n), capped(tiles_m, kMaxGridYZ),
                  capped(g.batch, kMaxGridYZ));
  matmul_tiled_kernel<T><<<grid, dim3(kTile, kTile), 0, stream>>>(a, b, bias, out, g);
  check_launch("matmul");
}

template <class T>
void launch_matmul_naive(const T* a, const T* b, T* out, int64_t m, int64_t n, int64_t k,
                         cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  matmul_naive_kernel<T><<<grid_for(m * n), kBlock, 0, stream>>>(a, b, out, m, n, k);
  check_launch("matmul_naive");
}

template void launch_matmul<float>(const float*, const float*, const float*, float*,
                                   const GemmArgs&, cudaStream_t);
template void launch_matmul<double>(const double*, const double*, const double*, double*,
                                    const GemmArgs&, cudaStream_t);
template void launch_matmul_naive<float>(const float*, const float*, float*, int64_t, int64_t,
                                         int64_t, cudaStream_t);
template void launch_matmul_naive<double>(const double*, const double*, double*, int64_t,
                                          int64_t, int64_t, cudaStream_t);

}  // namespace kiln::cuda
