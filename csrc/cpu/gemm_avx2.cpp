// AVX2 + FMA GEMM: the generic driver and micro-kernel of gemm_driver.h bound
// to 256-bit vectors. Tiles: fp32 6 x 16, fp64 6 x 8 -- 12 accumulators + 2 B
// vectors + 1 broadcast = 15 of the 16 ymm registers. Edge columns use
// vmaskmov, which never faults on masked-off lanes. Compiled with -mavx2 -mfma
// (CMakeLists.txt); only called when isa() >= avx2.
#include <immintrin.h>

#include <cmath>

#include "cpu/gemm_run.h"

namespace kiln::cpu::gemm {
namespace {

// Lane mask for the first n lanes (n may be <= 0 or >= lanes): lane i is
// selected when i < n, i.e. when its sign bit is set in (i - n).
inline __m256i lanes_below(int n, __m256i iota) {
  return _mm256_sub_epi32(iota, _mm256_set1_epi32(n));
}

struct F32x8 {
  using T = float;
  using V = __m256;
  using M = __m256i;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  // vmaxps returns its second operand when either is NaN: NaN propagates.
  static V relu(V x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }
  static V relu_mask(V x, V m) {  // m <= 0 ? 0 : x; a NaN m passes x
    return _mm256_and_ps(x, _mm256_cmp_ps(m, _mm256_setzero_ps(), _CMP_NLE_UQ));
  }
  static M mask(int n) { return lanes_below(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
  static V maskz_load(M m, const T* p) { return _mm256_maskload_ps(p, m); }
  static void store(T* p, V x) { _mm256_storeu_ps(p, x); }
  static void mask_store(T* p, M m, V x) { _mm256_maskstore_ps(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
  static constexpr bool kTransposePack = false;
  // Vector math for the GELU epilogue (vgelu_* in gemm_driver.h).
  static constexpr bool kVecMath = true;
  static V set1(T v) { return _mm256_set1_ps(v); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  // exp: Cephes expf (2^n e^r, |r| <= ln2/2, degree-7 polynomial, ~1 ulp).
  // The clamp keeps n in [-126, 127] so 2^n can be built in the exponent bits.
  static V exp(V x_in) {
    const V x = max(min(x_in, set1(88.3f)), set1(-87.3f));
    const V n = _mm256_round_ps(mul(x, set1(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    V y = fma(set1(1.9875691500e-4f), r, set1(1.3981999507e-3f));
    y = fma(y, r, set1(8.3334519073e-3f));
    y = fma(y, r, set1(4.1665795894e-2f));
    y = fma(y, r, set1(1.6666665459e-1f));
    y = fma(y, r, set1(5.0000001201e-1f));
    y = add(fma(y, mul(r, r), r), set1(1.f));
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    const __m256i e = _mm256_slli_epi32(biased, 23);
    // Above the clamp, overflow to +inf as the AVX-512 path does.
    const V big = _mm256_cmp_ps(x_in, set1(88.3f), _CMP_GT_OQ);
    return _mm256_blendv_ps(mul(y, _mm256_castsi256_ps(e)), set1(HUGE_VALF), big);
  }
};

struct F64x4 {
  using T = double;
  using V = __m256d;
  using M = __m256i;
  static constexpr int L = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V relu(V x) { return _mm256_max_pd(_mm256_setzero_pd(), x); }
  static V relu_mask(V x, V m) {
    return _mm256_and_pd(x, _mm256_cmp_pd(m, _mm256_setzero_pd(), _CMP_NLE_UQ));
  }
  // 64-bit lanes: each lane's sign bit comes from (i - n) as a 64-bit integer.
  static M mask(int n) {
    return _mm256_sub_epi64(_mm256_setr_epi64x(0, 1, 2, 3), _mm256_set1_epi64x(n));
  }
  static V maskz_load(M m, const T* p) { return _mm256_maskload_pd(p, m); }
  static void store(T* p, V x) { _mm256_storeu_pd(p, x); }
  static void mask_store(T* p, M m, V x) { _mm256_maskstore_pd(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
  static constexpr bool kVecMath = false;  // fp64 GELU: libm (gradcheck accuracy)
  static constexpr bool kTransposePack = false;
};

using KernelF32 = MicroKernel<F32x8, 6, 2>;
using KernelF64 = MicroKernel<F64x4, 6, 2>;
// Narrow outputs (N <= one vector): one vector per row, 12 rows (12
// accumulators + B + broadcast fit the 16 ymm registers), instead of a
// 16-wide tile that is mostly zero padding.
using KernelF32N = MicroKernel<F32x8, 12, 1>;
using KernelF64N = MicroKernel<F64x4, 12, 1>;

}  // namespace

void run_avx2(const Problem<float>& p) {
  if (p.N <= KernelF32N::NR) return run_problem<KernelF32N>(p);
  run_problem<KernelF32>(p);
}
void run_avx2(const Problem<double>& p) {
  if (p.N <= KernelF64N::NR) return run_problem<KernelF64N>(p);
  run_problem<KernelF64>(p);
}

}  // namespace kiln::cpu::gemm
