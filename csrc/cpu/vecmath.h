// Internal interface of the activation / softmax / loss kernels: the AVX-512 float32 array
// routines (defined in activation_avx512.cpp and softmax_avx512.cpp, compiled with AVX-512
// flags, called only when kiln::cpu::isa() says avx512) and the OpenMP chunking helper that
// all three families share. Float64 and the scalar/avx2 ISA levels use the portable std::
// templates in activation.cpp / softmax.cpp instead.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "cpu/isa.h"

namespace kiln::cpu {

// Below this many elements a parallel region costs more (~1-2 us to wake threads) than it saves.
constexpr int64_t kParallelGrain = 32768;

// f(begin, end) over [0, n): one call inline when n is small or only one thread is allowed,
// else one contiguous chunk per OpenMP thread (chunk starts aligned to 64 elements so that
// threads do not share cache lines). f must not throw.
template <class F>
inline void parallel_chunks(int64_t n, F&& f) {
  if (n < kParallelGrain || omp_get_max_threads() == 1) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = ((n + nt - 1) / nt + 63) / 64 * 64;
    const int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) f(b, e);
  }
}

// True when the AVX-512 float32 routines below should run.
inline bool use_avx512() { return isa() == Isa::avx512; }

namespace avx512 {
// ---- elementwise activations over n floats (activation_avx512.cpp) ---------------------
void leaky_relu(const float* x, float* y, int64_t n, float slope);
void leaky_relu_backward(const float* g, const float* x, float* gi, int64_t n, float slope);
void sigmoid(const float* x, float* y, int64_t n);
void tanh(const float* x, float* y, int64_t n);
void silu(const float* x, float* y, int64_t n);
void silu_backward(const float* g, const float* x, float* gi, int64_t n);
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
void gelu_backward(const float* g, const float* x, float* gi, int64_t n, bool tanh_approx);
void softplus(const float* x, float* y, int64_t n, float beta, float threshold);
void softplus_backward(const float* g, const float* x, float* gi, int64_t n, float beta,
                       float threshold);
void elu(const float* x, float* y, int64_t n, float alpha);
void elu_backward(const float* g, const float* x, float* gi, int64_t n, float alpha);

// ---- row primitives for softmax / log_softmax / cross_entropy (softmax_avx512.cpp) -------
// Contiguous rows of n floats. Sums are accumulated in double.
float row_max(const float* x, int64_t n);
double row_exp_sum(const float* x, float* y, int64_t n, float shift);  // y = exp(x - shift) (y may be null)
void row_exp_scale(const float* x, float* y, int64_t n, float shift, float scale);  // y = exp(x-shift)*scale
void row_scale(float* y, int64_t n, float scale);
void row_sub2(const float* x, float* y, int64_t n, float a, float b);  // y = (x - a) - b
double row_sum(const float* x, int64_t n);
double row_dot(const float* a, const float* b, int64_t n);
void row_sub_mul(const float* g, const float* y, float* gx, int64_t n, float d);  // gx = y * (g - d)
void row_sub_exp_scale(const float* g, const float* y, float* gx, int64_t n, float s);  // gx = g - exp(y)*s
// Strided layout: w columns of one row d of an (outer, D, inner) block, per-column state.
void cols_max(const float* x, float* m, int64_t w);                              // m = max(m, x)
void cols_exp_sum(const float* x, float* y, const float* m, double* s, int64_t w);  // y = exp(x-m); s += y
void cols_sub_exp_scale(const float* g, const float* y, float* gx, const float* s, int64_t w);
}  // namespace avx512
}  // namespace kiln::cpu

namespace kiln::cpu {
// Row primitives behind one static interface, so the softmax / cross-entropy drivers are
// written once: RowOps<T, false> is portable std:: code in T (float64, and float32 below
// AVX-512); RowOps<float, true> forwards to the AVX-512 routines above. Sums are in double.
template <class T, bool Simd>
struct RowOps {
  static T max(const T* x, int64_t n) {
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;  // NaN: caught later by exp
    return m;
  }
  static double exp_sum(const T* x, T* y, int64_t n, T shift) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T e = std::exp(x[i] - shift);
      if (y) y[i] = e;
      s += e;
    }
    return s;
  }
  static void exp_scale(const T* x, T* y, int64_t n, T shift, T scale) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - shift) * scale;
  }
  static void scale(T* y, int64_t n, T c) {
    for (int64_t i = 0; i < n; ++i) y[i] *= c;
  }
  static void sub2(const T* x, T* y, int64_t n, T a, T b) {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - a) - b;
  }
  static double sum(const T* x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    return s;
  }
  static double dot(const T* a, const T* b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
    return s;
  }
  static void sub_mul(const T* g, const T* y, T* gx, int64_t n, T d) {
    for (int64_t i = 0; i < n; ++i) gx[i] = y[i] * (g[i] - d);
  }
  static void sub_exp_scale(const T* g, const T* y, T* gx, int64_t n, T s) {
    for (int64_t i = 0; i < n; ++i) gx[i] = g[i] - std::exp(y[i]) * s;
  }
  static void cols_max(const T* x, T* m, int64_t w) {
    for (int64_t j = 0; j < w; ++j) m[j] = x[j] > m[j] ? x[j] : m[j];
  }
  static void cols_exp_sum(const T* x, T* y, const T* m, double* s, int64_t w) {
    for (int64_t j = 0; j < w; ++j) {
      const T e = std::exp(x[j] - m[j]);
      if (y) y[j] = e;
      s[j] += e;
    }
  }
  static void cols_sub_exp_scale(const T* g, const T* y, T* gx, const T* s, int64_t w) {
    for (int64_t j = 0; j < w; ++j) gx[j] = g[j] - std::exp(y[j]) * s[j];
  }
};

template <>
struct RowOps<float, true> {
  static float max(const float* x, int64_t n) { return avx512::row_max(x, n); }
  static double exp_sum(const float* x, float* y, int64_t n, float shift) {
    return avx512::row_exp_sum(x, y, n, shift);
  }
  static void exp_scale(const float* x, float* y, int64_t n, float shift, float scale) {
    avx512::row_exp_scale(x, y, n, shift, scale);
  }
  static void scale(float* y, int64_t n, float c) { avx512::row_scale(y, n, c); }
  static void sub2(const float* x, float* y, int64_t n, float a, float b) { avx512::row_sub2(x, y, n, a, b); }
  static double sum(const float* x, int64_t n) { return avx512::row_sum(x, n); }
  static double dot(const float* a, const float* b, int64_t n) { return avx512::row_dot(a, b, n); }
  static void sub_mul(const float* g, const float* y, float* gx, int64_t n, float d) {
    avx512::row_sub_mul(g, y, gx, n, d);
  }
  static void sub_exp_scale(const float* g, const float* y, float* gx, int64_t n, float s) {
    avx512::row_sub_exp_scale(g, y, gx, n, s);
  }
  static void cols_max(const float* x, float* m, int64_t w) { avx512::cols_max(x, m, w); }
  static void cols_exp_sum(const float* x, float* y, const float* m, double* s, int64_t w) {
    avx512::cols_exp_sum(x, y, m, s, w);
  }
  static void cols_sub_exp_scale(const float* g, const float* y, float* gx, const float* s, int64_t w) {
    avx512::cols_sub_exp_scale(g, y, gx, s, w);
  }
};

// Calls f(RowOps<T, simd>{}) with simd chosen at run time (AVX-512 float32 when available).
template <class T, class F>
inline void with_row_ops(F&& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_avx512()) return f(RowOps<float, true>{});
  }
  f(RowOps<T, false>{});
}
}  // namespace kiln::cpu
