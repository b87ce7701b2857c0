// AVX-512 dropout (inner == 1): 16 Philox4x32-10 blocks (64 elements) per step in zmm
// registers. The 32x32 -> 64-bit products come from _mm512_mul_epu32 on the even and odd
// lanes. Lane 4q + r computes block 4r + q of the group, so that after a 4x4 transpose
// inside each 128-bit lane (unpack) vector r holds the words of elements 16r .. 16r + 15 in
// order and needs no further shuffle. Bit-identical masks to the portable loop (integer
// arithmetic only): kept when (word >> 8) >= thr = ceil(p 2^24).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/norm_impl.h"

namespace kiln::cpu {
namespace {
struct Mul {
  __m512i lo, hi;
};

inline Mul mulhilo(__m512i a, __m512i m) {
  const __m512i even = _mm512_mul_epu32(a, m);                          // lanes 0, 2, ..
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);    // lanes 1, 3, ..
  Mul r;
  r.lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  r.hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  return r;
}

// Keep masks of the 64 elements of group g (elements 64 g .. 64 g + 63), 16 bits each.
inline void group_masks(uint64_t seed, uint64_t g, __m512i thr, __mmask16 keep[4]) {
  // lane L = 4q + r -> block 4g*4 + 4r + q
  const __m512i lane_blk = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const uint64_t b0 = g * 16;
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(int(uint32_t(b0))), lane_blk);
  // b0 is a multiple of 16, so adding 0..15 never carries into the high word
  __m512i c1 = _mm512_set1_epi32(int(uint32_t(b0 >> 32)));
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  const __m512i M0 = _mm512_set1_epi64(0xD2511F53u), M1 = _mm512_set1_epi64(0xCD9E8D57u);
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const Mul p0 = mulhilo(c0, M0), p1 = mulhilo(c2, M1);
    const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(p1.hi, c1), _mm512_set1_epi32(int(k0)));
    const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(p0.hi, c3), _mm512_set1_epi32(int(k1)));
    c1 = p1.lo;
    c3 = p0.lo;
    c0 = n0;
    c2 = n2;
  }
  const __m512i a = _mm512_unpacklo_epi32(c0, c1), b = _mm512_unpackhi_epi32(c0, c1);
  const __m512i c = _mm512_unpacklo_epi32(c2, c3), d = _mm512_unpackhi_epi32(c2, c3);
  const __m512i t[4] = {_mm512_unpacklo_epi64(a, c), _mm512_unpackhi_epi64(a, c),
                        _mm512_unpacklo_epi64(b, d), _mm512_unpackhi_epi64(b, d)};
  for (int r = 0; r < 4; ++r) keep[r] = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(t[r], 8), thr);
}

template <class T>
void span(const DropoutArgs<T>& a, int64_t b, int64_t e, uint32_t thr_s, T scale) {
  const __m512i thr = _mm512_set1_epi32(int(thr_s));
  // b is a multiple of 64 (task boundaries are group boundaries)
  for (int64_t i = b; i < e; i += 64) {
    __mmask16 keep[4];
    group_masks(a.seed, uint64_t(i) >> 6, thr, keep);
    const int64_t len = std::min<int64_t>(64, e - i);
    if constexpr (sizeof(T) == 4) {
      const __m512 s = _mm512_set1_ps(scale);
      for (int r = 0; r < 4; ++r) {
        const int64_t off = i + 16 * r, n = std::min<int64_t>(16, len - 16 * r);
        if (n <= 0) break;
        const __mmask16 in = n == 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(in, a.x + off);
        // x * (keep ? scale : 0), not a zeroing mask: a dropped inf/NaN gives NaN, as x * 0 does
        // on the portable path and in PyTorch
        _mm512_mask_storeu_ps(a.y + off, in, _mm512_mul_ps(x, _mm512_maskz_mov_ps(keep[r], s)));
      }
    } else {
      const __m512d s = _mm512_set1_pd(scale);
      for (int h = 0; h < 8; ++h) {
        const int64_t off = i + 8 * h, n = std::min<int64_t>(8, len - 8 * h);
        if (n <= 0) break;
        const __mmask8 in = n == 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1);
        const __mmask8 k = __mmask8(keep[h / 2] >> (8 * (h % 2)));
        const __m512d x = _mm512_maskz_loadu_pd(in, a.x + off);
        _mm512_mask_storeu_pd(a.y + off, in, _mm512_mul_pd(x, _mm512_maskz_mov_pd(k, s)));
      }
    }
  }
}

template <class T>
void dropout_simd(const DropoutArgs<T>& a) {
  if (a.inner != 1) return dropout_all<T>(a);  // feature dropout: one draw per run, portable
  const uint32_t thr = uint32_t(std::ceil(double(float(a.p)) * 16777216.0));
  const T scale = T(1.0 / (1.0 - a.p));
  const int64_t per = kDropoutGroupsPerTask * 64, ntasks = (a.n + per - 1) / per;
  par_for(ntasks, a.n, [&](int64_t t) {
    span<T>(a, t * per, std::min(a.n, (t + 1) * per), thr, scale);
  });
}
}  // namespace

void dropout_avx512(const DropoutArgs<float>& a) { dropout_simd<float>(a); }
void dropout_avx512(const DropoutArgs<double>& a) { dropout_simd<double>(a); }
}  // namespace kiln::cpu
