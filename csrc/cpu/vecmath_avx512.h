// Vectorised float32 math on __m512 (16 lanes): exp, expm1 (x <= 0), log1p on [0, 1], tanh,
// sigmoid and the normal CDF Phi(x) = 0.5 * erfc(-x / sqrt(2)). Include only from *_avx512.cpp
// files (they are compiled with -mavx512f/dq/bw/vl -mfma).
//
// The math, and why it is accurate (errors measured against double precision):
//   exp(x)   Cephes expf: n = round(x log2 e), r = x - n ln2 (ln2 split in two for an exact
//            product), e^r by a degree-6 polynomial on |r| <= ln2/2, then scalef(p, n) = p * 2^n,
//            which produces overflow to +inf. <= 2 ulp. Results below FLT_MIN (x < -87.33) are
//            flushed to 0 rather than made denormal: denormals cost a microcode assist each.
//   expm1(x) for x <= 0: Taylor polynomial (degree 8) on [-0.5, 0], where exp(x) - 1 would cancel;
//            exp(x) - 1 below (|result| >= 0.39, so no cancellation).
//   log1p(u) for u in [0, 1]: w = 1 + u, c = (u - (w - 1)) / w recovers the rounding of 1 + u;
//            log(w) by Cephes logf (mantissa in [sqrt(1/2), sqrt(2)), degree-9 polynomial).
//   tanh(x)  Cephes tanhf: odd polynomial for |x| < 0.625 (where 1 - 2/(e^2x + 1) would cancel),
//            1 - 2 / (exp(2|x|) + 1) above, sign restored.
//   sigmoid  1 / (1 + exp(-x)); exp overflow to +inf gives exactly 0 for x << 0.
//   Divisions by d >= 1 use recip(): rcp14 + one Newton step (~1 ulp), much cheaper than vdivps.
//   Phi(x)   erfc(z) = exp(-z^2) * t * P(t), t = 1 / (1 + p z), z = |x| / sqrt(2), with P of
//            degree 9 fitted (iteratively reweighted least squares, relative error) on z in
//            [0, 12]: 8e-9 fit error (|x| > 12.5 flushes to the limits, see phi_cdf), ~4e-7 in float. exp(-z^2) = exp(-x^2/2) is computed from the
//            exact split x^2 = hi + lo (FMA), exp(-hi/2) * (1 - lo/2), so the tail stays accurate
//            in relative terms. Phi = x < 0 ? erfc/2 : 1 - erfc/2 -- one branch, no cancellation:
//            1 - erfc/2 >= 1/2.
// NaN propagates through every function (min/max operand order below is chosen for that).
#pragma once
#include <immintrin.h>

#include <cmath>

namespace kiln::cpu::vm {

// Clamp to [lo, hi] keeping NaN: _mm512_min/max_ps return the second operand when either is NaN.
inline __m512 clamp_keep_nan(__m512 x, float lo, float hi) {
  return _mm512_max_ps(_mm512_set1_ps(lo), _mm512_min_ps(_mm512_set1_ps(hi), x));
}

// 1/d for d >= 1 (or +inf, or NaN): 14-bit rcp14 refined by one Newton step, ~1 ulp, about a
// third of the cost of vdivps. The Newton step would turn 1/inf = 0 into 0 * inf = NaN, so
// infinite d keeps rcp14's exact 0.
inline __m512 recip(__m512 d) {
  const __m512 r0 = _mm512_rcp14_ps(d);
  const __m512 r1 = _mm512_fmadd_ps(r0, _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(1.0f)), r0);
  const __mmask16 inf = _mm512_cmp_ps_mask(d, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ);
  return _mm512_mask_mov_ps(r1, inf, r0);
}

// e^x for x in [-87.33, 89] (no NaN): the range reduction and polynomial of exp() below,
// without its clamps. For callers that have already bounded x (tanh), where the compare,
// clamp and blend would be a sixth of the work.

// 1/d for finite d >= 1: recip() without the infinity check.
inline __m512 recip_finite(__m512 d) {
  const __m512 r0 = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r0, _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(1.0f)), r0);
}

inline __m512 exp_in_range(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 = C1 + C2, C1 exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __m512 exp(__m512 x) {
  // Beyond 89, exp overflows. Below -87.33 the result would be a float denormal: producing
  // one costs a ~100-cycle microcode assist per instruction (sigmoid/silu/softplus of
  // |x| > 87 inputs ran 10-20x slower), so those lanes are flushed to 0 (absolute error
  // < 1.2e-38) and their argument clamped so no instruction creates a denormal.
  // (NaN passes the clamp and the polynomial, and comes out NaN.)
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33f), _CMP_LT_OQ);
  x = clamp_keep_nan(x, -87.33f, 89.0f);
  return _mm512_mask_blend_ps(tiny, exp_in_range(x), _mm512_setzero_ps());
}

// expm1 for x <= 0 (ELU's negative branch); NaN propagates.
inline __m512 expm1_neg(__m512 x) {
  const __m512 big = _mm512_sub_ps(exp(x), _mm512_set1_ps(1.0f));
  // Taylor: x + x^2/2! + ... + x^8/8!; truncation < 0.5^9/9! = 5e-9 on [-0.5, 0].
  __m512 p = _mm512_set1_ps(1.0f / 40320.0f);
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 5040.0f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, x), x, x);
  const __mmask16 small = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-0.5f), _CMP_GE_OQ);
  return _mm512_mask_blend_ps(small, big, p);
}

// log(w) for w in [1, 2] (Cephes logf with the mantissa folded into [sqrt(1/2), sqrt(2))).
inline __m512 log_1_2(__m512 w) {
  const __mmask16 hi = _mm512_cmp_ps_mask(w, _mm512_set1_ps(1.41421356237f), _CMP_GT_OQ);
  const __m512 m = _mm512_mask_mul_ps(w, hi, w, _mm512_set1_ps(0.5f));
  const __m512 e = _mm512_maskz_mov_ps(hi, _mm512_set1_ps(1.0f));
  const __m512 x = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 y = _mm512_set1_ps(7.0376836292e-2f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-1.1514610310e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.1676998740e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-1.2420140846e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.4249322787e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-1.6668057665e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(2.0000714765e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-2.4999993993e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(3.3333331174e-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, x), z);
  y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), y);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(x, y));
}

// log1p(u) for u in [0, 1]; NaN propagates.
inline __m512 log1p_01(__m512 u) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 w = _mm512_add_ps(one, u);
  // The part of u lost when rounding 1 + u, divided by w: d log(w)/dw = 1/w. For u < 2^-24
  // this term is the whole result, so it needs the full-precision reciprocal.
  const __m512 c = _mm512_mul_ps(_mm512_sub_ps(u, _mm512_sub_ps(w, one)), recip(w));
  return _mm512_add_ps(log_1_2(w), c);
}

inline __m512 sigmoid(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return recip(_mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

inline __m512 tanh(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  // Large branch: 1 - 2 / (exp(2|x|) + 1). 2|x| capped at 20: tanh(10) already rounds to 1
  // in float, and the cap keeps exp in range, so its clamps and the infinity check of
  // recip() are not needed (a NaN x reads 20 here: min returns its second operand; the
  // polynomial branch below carries the NaN).
  const __m512 e = exp_in_range(_mm512_min_ps(_mm512_add_ps(ax, ax), _mm512_set1_ps(20.0f)));
  const __m512 r = recip_finite(_mm512_add_ps(e, _mm512_set1_ps(1.0f)));
  // 1 - 2r (2r exact, so one rounding, as 1 - (r + r)), then x's sign bit or-ed in:
  // ternary logic 0xF8 = a | (b & c).
  const __m512 big = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      _mm512_castps_si512(_mm512_fnmadd_ps(r, _mm512_set1_ps(2.0f), _mm512_set1_ps(1.0f))),
      _mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u)), 0xF8));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __mmask16 large = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_GE_OQ);
  return _mm512_mask_blend_ps(large, p, big);  // NaN compares false -> polynomial -> NaN
}

// Phi(x) (normal CDF) and, through *gauss_out, exp(-x^2/2) (the unnormalised density); see
// the file header.
inline __m512 phi_cdf(__m512 x, __m512* gauss_out) {
  // Beyond |x| = 12.5 the tail (Phi(-12.5) = 4e-36, exp(-x^2/2) < 2e-34) heads into
  // float denormals, which cost ~100 cycles per operation on this hardware (a (1024, 512)
  // gelu with std 11 inputs ran 15x slower); there both results are flushed to exactly 0
  // (absolute error < 5e-35) and the clamp keeps the arithmetic in normal range.
  const __m512 ax = _mm512_abs_ps(x);
  const __mmask16 far = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(12.5f), _CMP_GT_OQ);  // NaN: no
  const __m512 a = _mm512_min_ps(_mm512_set1_ps(12.5f), ax);  // NaN kept
  const __m512 hi = _mm512_mul_ps(a, a);
  const __m512 lo = _mm512_fmsub_ps(a, a, hi);  // a*a - hi exactly
  const __m512 half = _mm512_set1_ps(0.5f);
  __m512 g = exp(_mm512_mul_ps(hi, _mm512_set1_ps(-0.5f)));
  // * (1 - lo/2), the factor formed first: g * lo can be a denormal when g is small
  g = _mm512_mul_ps(g, _mm512_fnmadd_ps(lo, half, _mm512_set1_ps(1.0f)));
  *gauss_out = _mm512_mask_blend_ps(far, g, _mm512_setzero_ps());
  // t = 1 / (1 + p z), z = a / sqrt(2): fold 1/sqrt(2) into p.
  const __m512 t = recip(_mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f * 0.70710678118654752f),
                                         _mm512_set1_ps(1.0f)));
  __m512 P = _mm512_set1_ps(5.338008702e-02f);
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(-2.990190685e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(5.841935277e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(-5.015839338e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(4.518419504e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(-2.321854420e-02f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(1.963224411e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(1.677604169e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(1.855299324e-01f));
  P = _mm512_fmadd_ps(P, t, _mm512_set1_ps(1.847931743e-01f));
  const __m512 half_erfc = _mm512_mask_blend_ps(
      far, _mm512_mul_ps(_mm512_mul_ps(g, t), _mm512_mul_ps(P, half)), _mm512_setzero_ps());
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc), half_erfc);
}

// Mask for the first n (< 16) lanes, for tails.
inline __mmask16 tail_mask(long n) { return static_cast<__mmask16>((1u << n) - 1u); }

}  // namespace kiln::cpu::vm
