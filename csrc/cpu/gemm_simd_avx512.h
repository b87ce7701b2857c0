// The 512-bit vector types the GEMM micro-kernel (gemm_driver.h) is instantiated with:
// F32x16 (with 16 x 16 register-transpose packing for trans_b and the vector math of the
// GELU epilogue) and F64x8. Shared by gemm_avx512.cpp and conv_gemm_avx512.cpp. Include
// only from *_avx512.cpp files (compiled with -mavx512f/dq/bw/vl -mfma); the definitions
// sit in an anonymous namespace, so each translation unit owns its copy (no ODR mixing
// with baseline code).
#pragma once
#include <immintrin.h>

#include "cpu/gemm_run.h"

namespace kiln::cpu::gemm {
namespace {

struct F32x16 {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // x < 0 ? 0 : x, lane-wise: NaN (unordered) and -0 pass through, as in the
  // scalar path. (Spelled as a masked move: GCC 12 warns on _mm512_max_ps.)
  static V relu(V x) {
    const V z = _mm512_setzero_ps();
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, z, _CMP_LT_OQ), z);
  }
  // relu_backward: m <= 0 ? 0 : x (a NaN m passes x, as in the relu_backward kernel)
  static V relu_mask(V x, V m) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_NLE_UQ), x);
  }
  static M mask(int n) { return n <= 0 ? M(0) : n >= L ? M(0xFFFF) : M((1u << n) - 1); }
  static V maskz_load(M m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(T* p, V x) { _mm512_storeu_ps(p, x); }
  static void mask_store(T* p, M m, V x) { _mm512_mask_storeu_ps(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
  // trans_b packing of one NR-column panel (NR a multiple of 16):
  // dst[k*NR + j] = src[j*ld + k] for j < cols, 0 for cols <= j < NR (column
  // j of op(B) is row j of b). 16 x 16 register transposes instead of scalar
  // moves: for Linear (x @ W^T, small M) this pack rivals the product.
  static constexpr bool kTransposePack = true;
  template <int NR>
  static void pack_bt(const T* src, int64_t ld, int64_t kc, T* __restrict dst, int cols) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int kn = int(kc - k0 < 16 ? kc - k0 : 16);
      const M km = mask(kn);
      for (int h = 0; h < NR / 16; ++h) {
        V r[16], t[16];
        for (int i = 0; i < 16; ++i)
          r[i] = h * 16 + i < cols ? maskz_load(km, src + (h * 16 + i) * ld + k0) : zero();
        transpose16(r, t);
        for (int k = 0; k < kn; ++k) store(dst + (k0 + k) * NR + h * 16, t[k]);
      }
    }
  }
  // Row-major A into one k-major MR-row panel (pack_a_panel): dst[k*MR + i] =
  // src[i*ld + k] for i < rows, 0 for rows <= i < MR -- the same transpose with
  // MR lanes per k, stored masked when MR is not a multiple of 16 (14). The
  // scalar gather it replaces costs two memory ops per element; measured
  // (alternating in one process) 0.88x -> 0.93x of PyTorch at 128x784x256,
  // 0.73x -> 0.76x at 512x1024x64.
  template <int MR>
  static void pack_at(const T* src, int64_t ld, int64_t kc, T* __restrict dst, int rows) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int kn = int(kc - k0 < 16 ? kc - k0 : 16);
      const M km = mask(kn);
      for (int h = 0; h * 16 < MR; ++h) {
        V r[16], t[16];
        for (int i = 0; i < 16; ++i)
          r[i] = h * 16 + i < rows ? maskz_load(km, src + (h * 16 + i) * ld + k0) : zero();
        transpose16(r, t);
        const M sm = mask(MR - h * 16);
        for (int k = 0; k < kn; ++k) mask_store(dst + (k0 + k) * MR + h * 16, sm, t[k]);
      }
    }
  }
  // out[e][i] = r[i][e]. unpack + shuffle_ps leave r'[q] holding element
  // 4L + q of rows 4m..4m+3 in 128-bit lane L; two rounds of shuffle_f32x4
  // then gather lane L of the four row groups.
  static void transpose16(const V* r, V* out) {
    V t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 4; ++g) {  // rows 4g..4g+3
      const V* tg = t + 4 * g;
      u[4 * g + 0] = _mm512_shuffle_ps(tg[0], tg[2], 0x44);
      u[4 * g + 1] = _mm512_shuffle_ps(tg[0], tg[2], 0xEE);
      u[4 * g + 2] = _mm512_shuffle_ps(tg[1], tg[3], 0x44);
      u[4 * g + 3] = _mm512_shuffle_ps(tg[1], tg[3], 0xEE);
    }
    for (int q = 0; q < 4; ++q) {
      const V x0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
      const V x1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
      const V y0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
      const V y1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
      out[q] = _mm512_shuffle_f32x4(x0, x1, 0x88);
      out[q + 8] = _mm512_shuffle_f32x4(x0, x1, 0xDD);
      out[q + 4] = _mm512_shuffle_f32x4(y0, y1, 0x88);
      out[q + 12] = _mm512_shuffle_f32x4(y0, y1, 0xDD);
    }
  }
  // Vector math for the GELU epilogue (vgelu_* in gemm_driver.h).
  static constexpr bool kVecMath = true;
  static V set1(T v) { return _mm512_set1_ps(v); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  // maskz forms: GCC 12 warns (falsely) on the plain _mm512_min/max_ps.
  static V min(V a, V b) { return _mm512_maskz_min_ps(M(0xFFFF), a, b); }
  static V max(V a, V b) { return _mm512_maskz_max_ps(M(0xFFFF), a, b); }
  // exp: Cephes expf (2^n e^r, |r| <= ln2/2, degree-7 polynomial, ~1 ulp);
  // vscalefps applies 2^n with correct overflow to inf / underflow to 0.
  static V exp(V x) {
    x = max(min(x, set1(88.8f)), set1(-104.f));  // keeps r exact; scalef saturates
    const V n = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    V y = fma(set1(1.9875691500e-4f), r, set1(1.3981999507e-3f));
    y = fma(y, r, set1(8.3334519073e-3f));
    y = fma(y, r, set1(4.1665795894e-2f));
    y = fma(y, r, set1(1.6666665459e-1f));
    y = fma(y, r, set1(5.0000001201e-1f));
    y = add(fma(y, mul(r, r), r), set1(1.f));
    return _mm512_scalef_ps(y, n);
  }
};

struct F64x8 {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V relu(V x) {
    const V z = _mm512_setzero_pd();
    return _mm512_mask_mov_pd(x, _mm512_cmp_pd_mask(x, z, _CMP_LT_OQ), z);
  }
  static V relu_mask(V x, V m) {
    return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(m, _mm512_setzero_pd(), _CMP_NLE_UQ), x);
  }
  static M mask(int n) { return n <= 0 ? M(0) : n >= L ? M(0xFF) : M((1u << n) - 1); }
  static V maskz_load(M m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(T* p, V x) { _mm512_storeu_pd(p, x); }
  static void mask_store(T* p, M m, V x) { _mm512_mask_storeu_pd(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
  static constexpr bool kVecMath = false;  // fp64 GELU: libm (gradcheck accuracy)
  static constexpr bool kTransposePack = false;
};

}  // namespace
}  // namespace kiln::cpu::gemm
