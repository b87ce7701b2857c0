// AVX-512 float32 row primitives for softmax, log_softmax and cross_entropy (see vecmath.h):
// max, exp(x - shift) with its sum, scaling, dot products and the fused backward updates,
// for contiguous rows and for w-wide column strips of a strided (outer, D, inner) layout.
// Sums are accumulated in double (two 8-lane accumulators per 16 floats) so rows of 10^5+
// entries keep float32-rounding-level accuracy; exp is vm::exp (<= 2 ulp).
#include <cmath>

#include "cpu/vecmath.h"
#include "cpu/vecmath_avx512.h"

namespace kiln::cpu::avx512 {
namespace {
// Adds the 16 floats of v to the two double accumulators.
inline void acc16(__m512d& lo, __m512d& hi, __m512 v) {
  lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
inline double hsum(__m512d lo, __m512d hi) { return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi)); }
}  // namespace

float row_max(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) m = _mm512_mask_max_ps(m, vm::tail_mask(n - i), m, _mm512_maskz_loadu_ps(vm::tail_mask(n - i), x + i));
  // NaN entries may be dropped here; they still poison the row through exp(NaN - max).
  return _mm512_reduce_max_ps(m);
}

double row_exp_sum(const float* x, float* y, int64_t n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = vm::exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    if (y) _mm512_storeu_ps(y + i, e);
    acc16(lo, hi, e);
  }
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, vm::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    if (y) _mm512_mask_storeu_ps(y + i, m, e);
    acc16(lo, hi, e);
  }
  return hsum(lo, hi);
}

void row_exp_scale(const float* x, float* y, int64_t n, float shift, float scale) {
  const __m512 s = _mm512_set1_ps(shift), c = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(vm::exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)), c));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(vm::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)), c));
  }
}

void row_scale(float* y, int64_t n, float scale) {
  const __m512 c = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), c));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), c));
  }
}

void row_sub2(const float* x, float* y, int64_t n, float a, float b) {
  const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), va), vb));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), va), vb));
  }
}

double row_sum(const float* x, int64_t n) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc16(lo, hi, _mm512_loadu_ps(x + i));
  if (i < n) acc16(lo, hi, _mm512_maskz_loadu_ps(vm::tail_mask(n - i), x + i));
  return hsum(lo, hi);
}

double row_dot(const float* a, const float* b, int64_t n) {
  // Products are formed in double: exact for float inputs, so only the summation rounds.
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  auto step = [&](__m512 va, __m512 vb) {
    lo = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(va)),
                         _mm512_cvtps_pd(_mm512_castps512_ps256(vb)), lo);
    hi = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(va), 1))),
                         _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vb), 1))), hi);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) step(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    step(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
  }
  return hsum(lo, hi);
}

void row_sub_mul(const float* g, const float* y, float* gx, int64_t n, float d) {
  const __m512 dv = _mm512_set1_ps(d);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(gx + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), _mm512_sub_ps(_mm512_loadu_ps(g + i), dv)));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(gx + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i),
                                                   _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g + i), dv)));
  }
}

void row_sub_exp_scale(const float* g, const float* y, float* gx, int64_t n, float s) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(gx + i, _mm512_fnmadd_ps(vm::exp(_mm512_loadu_ps(y + i)), sv, _mm512_loadu_ps(g + i)));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(gx + i, m, _mm512_fnmadd_ps(vm::exp(_mm512_maskz_loadu_ps(m, y + i)), sv,
                                                      _mm512_maskz_loadu_ps(m, g + i)));
  }
}

void cols_max(const float* x, float* m, int64_t w) {
  int64_t i = 0;
  // Operand order keeps a NaN already in m (max_ps returns its second operand on NaN).
  for (; i + 16 <= w; i += 16)
    _mm512_storeu_ps(m + i, _mm512_max_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(m + i)));
  if (i < w) {
    const __mmask16 k = vm::tail_mask(w - i);
    _mm512_mask_storeu_ps(m + i, k, _mm512_max_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, m + i)));
  }
}

void cols_exp_sum(const float* x, float* y, const float* m, double* s, int64_t w) {
  auto step = [&](int64_t i, __mmask16 k) {
    const __m512 e = _mm512_maskz_mov_ps(k, vm::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i),
                                                                  _mm512_maskz_loadu_ps(k, m + i))));
    if (y) _mm512_mask_storeu_ps(y + i, k, e);
    const __mmask8 klo = static_cast<__mmask8>(k), khi = static_cast<__mmask8>(k >> 8);
    _mm512_mask_storeu_pd(s + i, klo, _mm512_add_pd(_mm512_maskz_loadu_pd(klo, s + i),
                                                    _mm512_cvtps_pd(_mm512_castps512_ps256(e))));
    _mm512_mask_storeu_pd(s + i + 8, khi,
                          _mm512_add_pd(_mm512_maskz_loadu_pd(khi, s + i + 8),
                                        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)))));
  };
  int64_t i = 0;
  for (; i + 16 <= w; i += 16) step(i, 0xFFFF);
  if (i < w) step(i, vm::tail_mask(w - i));
}

void cols_sub_exp_scale(const float* g, const float* y, float* gx, const float* s, int64_t w) {
  int64_t i = 0;
  for (; i + 16 <= w; i += 16)
    _mm512_storeu_ps(gx + i, _mm512_fnmadd_ps(vm::exp(_mm512_loadu_ps(y + i)), _mm512_loadu_ps(s + i),
                                              _mm512_loadu_ps(g + i)));
  if (i < w) {
    const __mmask16 k = vm::tail_mask(w - i);
    _mm512_mask_storeu_ps(gx + i, k, _mm512_fnmadd_ps(vm::exp(_mm512_maskz_loadu_ps(k, y + i)),
                                                      _mm512_maskz_loadu_ps(k, s + i),
                                                      _mm512_maskz_loadu_ps(k, g + i)));
  }
}

}  // namespace kiln::cpu::avx512
