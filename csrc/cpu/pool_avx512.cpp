// The pooling loops of pool_impl.h compiled with AVX512 flags (the build gives
// *_avx512.cpp files those flags); chosen at run time by pool_table().
//
// Plus a float32 max_pool2d for the commonest window, 2 x 2 with stride 2 and no padding
// (every CNN's downsampling, LeNet's two pools): the generic loop runs it as strided
// scalar taps, one task per output row, ~75 ns of setup per row of 14 outputs -- 0.8 ms
// with indices for (64, 6, 28, 28) on this machine, a sixth of a LeNet-5 training step.
// Here a task is a whole plane, and 16 outputs of a row are one vector: two masked loads
// of 32 inputs per input row, even/odd lanes split by one permute each, and the max of
// the four taps with PyTorch's exact rule (in (h, w) order, the first max wins, a NaN
// always wins, so the last NaN does) kept as pairwise selects: top pair, bottom pair,
// then bottom over top -- the same result as the sequential scan (checked against the
// generic loop in tests/test_pool.py, NaN and ties included).
#include <immintrin.h>

#include "cpu/pool_impl.h"

namespace kiln::cpu {
namespace {

// One row of n <= 16 outputs at (oh, ow0) of plane xp (H x W), indices relative to the
// plane (h * W + w).
template <bool WithIdx>
inline void max2x2_chunk(const float* xp, int64_t W, int64_t oh, int64_t ow0, int n, float* y,
                         int64_t* idx) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const int n2 = 2 * n;
  const __mmask16 lo = static_cast<__mmask16>(n2 >= 16 ? 0xFFFF : (1u << n2) - 1u);
  const __mmask16 hi = static_cast<__mmask16>(n2 <= 16 ? 0 : (1u << (n2 - 16)) - 1u);
  const float* top = xp + 2 * oh * W + 2 * ow0;
  const float* bot = top + W;
  const __m512 t0 = _mm512_maskz_loadu_ps(lo, top), t1 = _mm512_maskz_loadu_ps(hi, top + 16);
  const __m512 b0 = _mm512_maskz_loadu_ps(lo, bot), b1 = _mm512_maskz_loadu_ps(hi, bot + 16);
  const __m512 te = _mm512_permutex2var_ps(t0, even, t1), to = _mm512_permutex2var_ps(t0, odd, t1);
  const __m512 be = _mm512_permutex2var_ps(b0, even, b1), bo = _mm512_permutex2var_ps(b0, odd, b1);
  // take the later tap when it is greater or NaN
  auto later = [](__m512 first, __m512 second) {
    return static_cast<__mmask16>(_mm512_cmp_ps_mask(second, first, _CMP_GT_OQ) |
                                  _mm512_cmp_ps_mask(second, second, _CMP_UNORD_Q));
  };
  const __mmask16 ct = later(te, to), cb = later(be, bo);
  const __m512 mt = _mm512_mask_blend_ps(ct, te, to), mb = _mm512_mask_blend_ps(cb, be, bo);
  const __mmask16 c = later(mt, mb);
  const __mmask16 out = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
  _mm512_mask_storeu_ps(y, out, _mm512_mask_blend_ps(c, mt, mb));
  if constexpr (WithIdx) {
    // top-left tap of each output: 2 oh W + 2 (ow0 + j); + 1 for the right column, + W for
    // the bottom row
    const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oh * W + 2 * ow0)), even);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i it = _mm512_mask_add_epi32(base, ct, base, one);
    const __m512i ib0 = _mm512_add_epi32(base, _mm512_set1_epi32(int32_t(W)));
    const __m512i ib = _mm512_mask_add_epi32(ib0, cb, ib0, one);
    const __m512i i = _mm512_mask_blend_epi32(c, it, ib);
    _mm512_mask_storeu_epi64(idx, static_cast<__mmask8>(out & 0xFF),
                             _mm512_cvtepi32_epi64(_mm512_castsi512_si256(i)));
    _mm512_mask_storeu_epi64(idx + 8, static_cast<__mmask8>(out >> 8),
                             _mm512_cvtepi32_epi64(_mm512_extracti32x8_epi32(i, 1)));
  }
}

void max_pool2d_f32(const PoolArgs<float>& a) {
  const bool fast = a.kH == 2 && a.kW == 2 && a.sH == 2 && a.sW == 2 && a.pH == 0 &&
                    a.pW == 0 && a.dH == 1 && a.dW == 1 && 2 * a.OH <= a.H &&
                    2 * a.OW <= a.W && a.H * a.W < (int64_t(1) << 30);
  if (!fast) return max_pool_all<float>(a);
  const int64_t HW = a.H * a.W, O = a.OH * a.OW;
  pool_for(a.P, a.P * HW, [&](int64_t p) {
    const float* xp = a.x + p * HW;
    for (int64_t oh = 0; oh < a.OH; ++oh)
      for (int64_t ow0 = 0; ow0 < a.OW; ow0 += 16) {
        const int n = int(std::min<int64_t>(16, a.OW - ow0));
        float* y = a.y + p * O + oh * a.OW + ow0;
        if (a.idx)
          max2x2_chunk<true>(xp, a.W, oh, ow0, n, y, a.idx + p * O + oh * a.OW + ow0);
        else
          max2x2_chunk<false>(xp, a.W, oh, ow0, n, y, nullptr);
      }
  });
}

}  // namespace

PoolTable<float> pool_table_avx512(float) {
  PoolTable<float> t = make_pool_table<float>();
  t.max_pool2d = &max_pool2d_f32;
  return t;
}
PoolTable<double> pool_table_avx512(double) { return make_pool_table<double>(); }
}  // namespace kiln::cpu
