// AVX-512 float32 activations, forward and backward, for the transcendental ones (sigmoid,
// tanh, silu, gelu exact and tanh-approximate, softplus, elu) and leaky_relu. 16 lanes per step; the tail is
// one masked load/store, so any n works. The math functions and their accuracy are described
// in vecmath_avx512.h; formulas mirror PyTorch's CPU kernels (same branch conditions, so the
// kinks, NaN and threshold behaviour agree) but use the cancellation-free forms below.
#include "cpu/vecmath.h"
#include "cpu/vecmath_avx512.h"

namespace kiln::cpu::avx512 {
namespace {

// y[i] = f(x[i]) for i < n.
template <class F>
inline void map1(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// gi[i] = f(g[i], x[i]) for i < n.
template <class F>
inline void map2(const float* g, const float* x, float* gi, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(gi + i, f(_mm512_loadu_ps(g + i), _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(gi + i, m, f(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, x + i)));
  }
}

inline __m512 set(float v) { return _mm512_set1_ps(v); }

// gelu(tanh) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3);
// the sigmoid form has no cancellation for x << 0. Returns sigmoid(2u); *du receives du/dx.
constexpr float kBeta = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kKappa = 0.044715f;
inline __m512 gelu_tanh_s(__m512 x, __m512* du) {
  const __m512 x2 = _mm512_mul_ps(x, x);
  const __m512 u = _mm512_mul_ps(_mm512_mul_ps(x, set(kBeta)), _mm512_fmadd_ps(x2, set(kKappa), set(1.0f)));
  if (du) *du = _mm512_mul_ps(set(kBeta), _mm512_fmadd_ps(x2, set(3.0f * kKappa), set(1.0f)));
  return vm::sigmoid(_mm512_add_ps(u, u));
}
}  // namespace

// leaky_relu = x > 0 ? x : slope x, leaky_relu' = x > 0 ? 1 : slope (NaN x takes the slope
// branch: NaN forward, grad * slope backward, as PyTorch). Here because the portable ?: form
// does not vectorise reliably.
void leaky_relu(const float* x, float* y, int64_t n, float slope) {
  map1(x, y, n, [=](__m512 v) {
    const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, set(slope)), v);
  });
}

void leaky_relu_backward(const float* g, const float* x, float* gi, int64_t n, float slope) {
  map2(g, x, gi, n, [=](__m512 gv, __m512 v) {
    const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(gv, set(slope)), gv);
  });
}

void sigmoid(const float* x, float* y, int64_t n) { map1(x, y, n, [](__m512 v) { return vm::sigmoid(v); }); }

void tanh(const float* x, float* y, int64_t n) { map1(x, y, n, [](__m512 v) { return vm::tanh(v); }); }

// silu = x * 1/(1 + exp(-x)) (PyTorch: x / (1 + exp(-x)); same -0 and NaN limits).
void silu(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](__m512 v) {
    return _mm512_mul_ps(v, vm::recip(_mm512_add_ps(set(1.0f), vm::exp(_mm512_sub_ps(_mm512_setzero_ps(), v)))));
  });
}

// silu' = s (1 + x (1 - s)), s = sigmoid(x).
void silu_backward(const float* g, const float* x, float* gi, int64_t n) {
  map2(g, x, gi, n, [](__m512 gv, __m512 v) {
    const __m512 s = vm::sigmoid(v);
    const __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(set(1.0f), s), set(1.0f)));
    return _mm512_mul_ps(gv, d);
  });
}

void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    map1(x, y, n, [](__m512 v) { return _mm512_mul_ps(v, gelu_tanh_s(v, nullptr)); });
  } else {
    map1(x, y, n, [](__m512 v) {
      __m512 gauss;
      return _mm512_mul_ps(v, vm::phi_cdf(v, &gauss));
    });
  }
}

// exact: gelu' = Phi(x) + x phi(x);  tanh: s + 2 x s (1 - s) du/dx  (1 + tanh u = 2s,
// 1 - tanh^2 u = 4 s (1 - s)).
void gelu_backward(const float* g, const float* x, float* gi, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    map2(g, x, gi, n, [](__m512 gv, __m512 v) {
      __m512 du;
      const __m512 s = gelu_tanh_s(v, &du);
      const __m512 s1 = _mm512_mul_ps(s, _mm512_sub_ps(set(1.0f), s));
      const __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_add_ps(v, v), s1), du, s);
      return _mm512_mul_ps(gv, d);
    });
  } else {
    map2(g, x, gi, n, [](__m512 gv, __m512 v) {
      __m512 gauss;
      const __m512 cdf = vm::phi_cdf(v, &gauss);
      const __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(v, gauss), set(0.3989422804014327f), cdf);
      return _mm512_mul_ps(gv, d);
    });
  }
}

// softplus = t > threshold ? x : log1p(exp(t)) / beta, t = beta x, with
// log1p(exp(t)) = max(t, 0) + log1p(exp(-|t|)) so exp never overflows.
void softplus(const float* x, float* y, int64_t n, float beta, float threshold) {
  const float inv_beta = float(1.0 / double(beta));
  map1(x, y, n, [=](__m512 v) {
    const __m512 t = _mm512_mul_ps(v, set(beta));
    const __m512 e = vm::exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(t)));
    // max(t, 0) returns 0 for NaN t; the log1p term carries the NaN.
    const __m512 r = _mm512_add_ps(_mm512_max_ps(t, _mm512_setzero_ps()), vm::log1p_01(e));
    const __mmask16 lin = _mm512_cmp_ps_mask(t, set(threshold), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(lin, _mm512_mul_ps(r, set(inv_beta)), v);
  });
}

// softplus' = t > threshold ? 1 : sigmoid(t)  (PyTorch: z / (z + 1), z = exp(t)).
void softplus_backward(const float* g, const float* x, float* gi, int64_t n, float beta,
                       float threshold) {
  map2(g, x, gi, n, [=](__m512 gv, __m512 v) {
    const __m512 t = _mm512_mul_ps(v, set(beta));
    const __mmask16 lin = _mm512_cmp_ps_mask(t, set(threshold), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(lin, _mm512_mul_ps(gv, vm::sigmoid(t)), gv);
  });
}

// elu = x <= 0 ? alpha expm1(x) : x  (NaN fails "<= 0" and passes through, as in PyTorch).
void elu(const float* x, float* y, int64_t n, float alpha) {
  map1(x, y, n, [=](__m512 v) {
    const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ);
    const __m512 em1 = vm::expm1_neg(_mm512_min_ps(v, _mm512_setzero_ps()));
    return _mm512_mask_mul_ps(v, neg, em1, set(alpha));
  });
}

// elu' = x > 0 ? 1 : alpha exp(x)  (PyTorch: at x = 0 the slope is alpha; NaN x gives NaN).
void elu_backward(const float* g, const float* x, float* gi, int64_t n, float alpha) {
  map2(g, x, gi, n, [=](__m512 gv, __m512 v) {
    const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    const __m512 d = _mm512_mul_ps(_mm512_mul_ps(gv, set(alpha)), vm::exp(v));
    return _mm512_mask_blend_ps(pos, d, gv);
  });
}

}  // namespace kiln::cpu::avx512
