// Products with very few output columns (N up to 12: matrix-vector products, Linear
// heads with a handful of classes) as dot products along k instead of outer products.
//
// The register-tile kernels (gemm_driver.h) vectorize across N: with N = 1 a 16-lane
// tile computes 1 useful lane and spends one broadcast load per FMA, so a 128 x 128
// matrix-vector product ran at half PyTorch's speed. Here each of R rows of A
// (contiguous in k) meets each of the N rows of B^T (B's columns; read in place when
// trans_b, else packed once per element, N x K) 16 k-values at a time: R x N vector
// accumulators, R + N loads per R x N FMAs, no padded lanes. Each accumulator is then
// summed across its lanes by a shuffle tree that does 16 of them at once (~3 vector
// operations per dot product), and the epilogue (bias, relu, the relu-backward mask, GELU)
// runs on the N sums of a row.
//
// Chosen (gemm_avx512.cpp) when it does less work than the narrow 16 x 16 tile, whose
// k step is bound by its 17 loads (~K/2 cycles a row): N (ceil(K / L) + 6) < K (the dot
// products' FMAs, ~N K / 2L cycles a row, and their sums, ~3N), A not transposed, B^T
// within 256 KiB. 1 thread, alternating with the narrow tile and PyTorch, GFLOP/s narrow
// -> dot (PyTorch): 128x128x1 5 -> 19 (8), 1024x1024x1 4 -> 15 (14), 128x128x4 18 -> 44
// (16), 128x128x6 30 -> 46 (25), 128x784x8 (trans_b) 41 -> 83 (41), 128x784x10 48 -> 82
// (48); 128x128x8 (trans_b) and 128x128x10 even (so N = 10 at K = 128 stays narrow).
// Include only from gemm_avx512.cpp (AVX-512 intrinsics; anonymous namespace, like the
// driver).
#pragma once
#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <new>

#include "cpu/gemm_epilogue.h"
#include "cpu/gemm_simd_avx512.h"

namespace kiln::cpu::gemm {
namespace {

// Sums the lanes of each of x[0..n) into out[0..n), n <= 16: a tree of 256-bit, 128-bit,
// 64-bit and 32-bit halvings, each level adding two vectors' halves into one vector
// (~3 operations per pair). n is a constant, so a level only does the pairs it has.
template <int n>
__attribute__((always_inline)) inline void lane_sums(const __m512* x, float* out) {
  static_assert(n >= 1 && n <= 16);
  constexpr int n1 = (n + 1) / 2, n2 = (n1 + 1) / 2, n3 = (n2 + 1) / 2;
  const __m512 zero = _mm512_setzero_ps();
  __m512 y[8], z[4], w[2];
#pragma GCC unroll 8
  for (int i = 0; i < n1; ++i) {  // 256-bit halves: y[i] = 8 partials of x[2i] | of x[2i+1]
    const __m512 a = x[2 * i], b = 2 * i + 1 < n ? x[2 * i + 1] : zero;
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
#pragma GCC unroll 4
  for (int i = 0; i < n2; ++i) {  // 128-bit lane q of z[i]: 4 partials of x[4i + q]
    const __m512 a = y[2 * i], b = 2 * i + 1 < n1 ? y[2 * i + 1] : zero;
    z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  }
#pragma GCC unroll 2
  for (int i = 0; i < n3; ++i) {  // lane q of w[i]: 2 partials of x[8i + q], of x[8i + 4 + q]
    const __m512 a = z[2 * i], b = 2 * i + 1 < n2 ? z[2 * i + 1] : zero;
    w[i] = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
  }
  const __m512 b = n3 > 1 ? w[1] : zero;
  // element 4q + e of r is the sum of x[4e + q]; reorder to element i = sum of x[i]
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(w[0], b, 0x88), _mm512_shuffle_ps(w[0], b, 0xDD));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_mask_storeu_ps(out, __mmask16((1u << n) - 1), _mm512_permutexvar_ps(idx, r));
}
// Sums the lanes of each of x[0..n) into out[0..n), n <= 8.
template <int n>
__attribute__((always_inline)) inline void lane_sums(const __m512d* x, double* out) {
  static_assert(n >= 1 && n <= 8);
  constexpr int n1 = (n + 1) / 2, n2 = (n1 + 1) / 2;
  const __m512d zero = _mm512_setzero_pd();
  __m512d y[4], z[2];
#pragma GCC unroll 4
  for (int i = 0; i < n1; ++i) {  // y[i] = 4 partials of x[2i] | of x[2i+1]
    const __m512d a = x[2 * i], b = 2 * i + 1 < n ? x[2 * i + 1] : zero;
    y[i] = _mm512_add_pd(_mm512_shuffle_f64x2(a, b, 0x44), _mm512_shuffle_f64x2(a, b, 0xEE));
  }
#pragma GCC unroll 2
  for (int i = 0; i < n2; ++i) {  // 128-bit lane q of z[i]: 2 partials of x[4i + q]
    const __m512d a = y[2 * i], b = 2 * i + 1 < n1 ? y[2 * i + 1] : zero;
    z[i] = _mm512_add_pd(_mm512_shuffle_f64x2(a, b, 0x88), _mm512_shuffle_f64x2(a, b, 0xDD));
  }
  const __m512d b = n2 > 1 ? z[1] : zero;
  // element 2q + e of r is the sum of x[4e + q]
  const __m512d r = _mm512_add_pd(_mm512_unpacklo_pd(z[0], b), _mm512_unpackhi_pd(z[0], b));
  const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
  _mm512_mask_storeu_pd(out, __mmask8((1u << n) - 1), _mm512_permutexvar_pd(idx, r));
}

// lane_sums over x[0..n) in groups of one vector's lanes (n a constant).
template <class V, class T, int n, int L, int i = 0>
__attribute__((always_inline)) inline void all_lane_sums(const V* x, T* out) {
  if constexpr (i < n) {
    lane_sums<(n - i < L ? n - i : L)>(x + i, out + i);
    all_lane_sums<V, T, n, L, i + L>(x, out);
  }
}

// s[r * NN + j] = dot(row r of a (stride lda), row j of bt (stride ldb)) over K, r < R.
template <class S, int R, int NN>
__attribute__((noinline)) void dot_rows(const typename S::T* __restrict a, int64_t lda,
                                        const typename S::T* __restrict bt, int64_t ldb, int64_t K,
                                        typename S::T* s) {
  using V = typename S::V;
  constexpr int L = S::L;
  V acc[R * NN];
#pragma GCC unroll 64
  for (int i = 0; i < R * NN; ++i) acc[i] = S::zero();
  int64_t k = 0;
  for (; k + L <= K; k += L) {
    V av[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) av[r] = S::load(a + r * lda + k);
#pragma GCC unroll 16
    for (int j = 0; j < NN; ++j) {
      const V bv = S::load(bt + j * ldb + k);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r * NN + j] = S::fma(av[r], bv, acc[r * NN + j]);
    }
  }
  if (k < K) {  // masked loads read nothing past the rows' ends
    const typename S::M m = S::mask(int(K - k));
    V av[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) av[r] = S::maskz_load(m, a + r * lda + k);
#pragma GCC unroll 16
    for (int j = 0; j < NN; ++j) {
      const V bv = S::maskz_load(m, bt + j * ldb + k);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r * NN + j] = S::fma(av[r], bv, acc[r * NN + j]);
    }
  }
  all_lane_sums<V, typename S::T, R * NN, L>(acc, s);
}

// Rows per call: enough accumulators to cover the FMA latency (R x NN >= 8) and few
// enough registers (R x NN + R + 1 <= 32).
template <int NN>
constexpr int dot_rows_for() {
  return NN == 1 ? 8 : NN <= 6 ? 4 : NN <= 8 ? 3 : 2;
}

// Rows [i0, i1) of batch element bi: dot products, then the epilogue on each row.
template <class S, int NN>
void dot_block(const Problem<typename S::T>& p, int64_t bi, int64_t i0, int64_t i1,
               const typename S::T* bt, int64_t ldb) {
  using T = typename S::T;
  constexpr int R = dot_rows_for<NN>();
  const T* a = p.a + bi * p.a_bstride;
  T* c = p.c + bi * p.c_bstride;
  const T* mask = p.mask ? p.mask + bi * p.c_bstride : nullptr;
  T s[R * NN];
  for (int64_t i = i0; i < i1;) {
    const int rows = i1 - i >= R ? R : 1;
    if (rows == R)
      dot_rows<S, R, NN>(a + i * p.K, p.K, bt, ldb, p.K, s);
    else
      dot_rows<S, 1, NN>(a + i * p.K, p.K, bt, ldb, p.K, s);
    for (int r = 0; r < rows; ++r) {
      T* ci = c + (i + r) * NN;
      for (int j = 0; j < NN; ++j) {
        T x = s[r * NN + j];
        if (p.bias) x += p.bias[j];
        if (p.act == Act::relu && x < T(0)) x = T(0);
        if (mask && mask[(i + r) * NN + j] <= T(0)) x = T(0);  // a NaN mask keeps x
        ci[j] = x;
      }
      if (p.act == Act::gelu || p.act == Act::gelu_tanh) act_row_simd<S>(ci, NN, p.act);
    }
    i += rows;
  }
}

// The whole batched problem, N == NN: rows split evenly over the threads (a thread's
// range may span batch elements); B^T packed per element unless b is transposed.
template <class S, int NN>
void run_dot_n(const Problem<typename S::T>& p) {
  using T = typename S::T;
  const double flops = 2.0 * double(p.batch) * double(p.M) * double(p.N) * double(p.K);
  const int nt = int(imin(threads_for(flops), imax(1, p.batch * p.M / 64)));
  const int64_t total = p.batch * p.M;
  std::atomic<int> failed{0};
  auto body = [&](int tid, int team) {
    const int64_t per = cdiv(total, team);
    const int64_t r0 = imin(total, tid * per), r1 = imin(total, r0 + per);
    T* pack = nullptr;
    if (!p.trans_b && r0 < r1) {
      pack = static_cast<T*>(workspace(1, size_t(NN * p.K) * sizeof(T)));
      if (!pack) {
        failed.store(1, std::memory_order_relaxed);
        return;
      }
    }
    int64_t packed = -1;  // the batch element whose B^T is in pack
    for (int64_t r = r0; r < r1;) {
      const int64_t bi = r / p.M, i = r % p.M, i1 = imin(p.M, i + (r1 - r));
      const T* b = p.b + bi * p.b_bstride;
      const T* bt = b;  // trans_b: b is stored (N, K), B^T in place
      if (!p.trans_b) {
        const int64_t src = p.b_bstride ? bi : 0;
        if (src != packed) {
          for (int64_t k = 0; k < p.K; ++k)
            for (int j = 0; j < NN; ++j) pack[j * p.K + k] = b[k * NN + j];
          packed = src;
        }
        bt = pack;
      }
      dot_block<S, NN>(p, bi, i, i1, bt, p.K);
      r += i1 - i;
    }
  };
  if (nt == 1) {
    body(0, 1);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
  }
  if (failed.load()) throw std::bad_alloc();
}

// Whether the dot-product form does less work than the narrow tile (see the top).
template <class T>
bool dot_pays(const Problem<T>& p) {
  constexpr int64_t L = 64 / sizeof(T);
  return p.N <= 12 && !p.trans_a && p.N * (cdiv(p.K, L) + 6) < p.K &&
         p.N * p.K * int64_t(sizeof(T)) <= 256 * 1024;
}

template <class S>
void run_dot(const Problem<typename S::T>& p) {
  switch (p.N) {
    case 1: return run_dot_n<S, 1>(p);
    case 2: return run_dot_n<S, 2>(p);
    case 3: return run_dot_n<S, 3>(p);
    case 4: return run_dot_n<S, 4>(p);
    case 5: return run_dot_n<S, 5>(p);
    case 6: return run_dot_n<S, 6>(p);
    case 7: return run_dot_n<S, 7>(p);
    case 8: return run_dot_n<S, 8>(p);
    case 9: return run_dot_n<S, 9>(p);
    case 10: return run_dot_n<S, 10>(p);
    case 11: return run_dot_n<S, 11>(p);
    default: return run_dot_n<S, 12>(p);
  }
}

}  // namespace
}  // namespace kiln::cpu::gemm
