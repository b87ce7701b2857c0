// AVX-512 GEMM steps for the convolution paths of conv_gemm.cpp, built from
// the register-blocked micro-kernel of gemm_driver.h (included, not changed).
//
// Two things the general matmul entry point cannot do, and convolutions want:
//  - the weight is packed into micro-panels once per call (pack_weights) and
//    then shared read-only by every image and thread; through gemm::run_* it
//    would be re-packed for every image (for a 128->128 3x3 layer that is a
//    590 KB copy per image, ~10% of the work);
//  - B and C are addressed with leading dimensions (ldb, ldc), so a chunk of
//    output columns is read / written in place: no copies of gy chunks into
//    contiguous buffers and no staging of C.
// B (an im2col chunk or gy, L2-resident) is addressed in place; each kc x NR
// column panel is copied into a contiguous L1 buffer when several row panels
// of A will read it, and a ragged last panel always is (masked loads), so
// nothing past the end of B is ever read.
//
// Loop order (BLIS): for each kc block of depth, for each NR-wide column panel
// of B (kc x NR, from L2 into L1), for each MR-row panel of packed A (L2):
// one MR x NR micro-tile. Compiled with -mavx512f/dq/bw/vl; only called when
// isa() == avx512.
#include <immintrin.h>

#include "cpu/conv.h"
#include "cpu/gemm_driver.h"

namespace kiln::cpu::conv {
namespace {
using gemm::Act;
using gemm::cdiv;
using gemm::Epi;
using gemm::imin;

struct F32x16 {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static constexpr bool kVecMath = false;
  // trans_b packing with 16 x 16 register transposes (as in gemm_avx512.cpp):
  // dst[k*NR + j] = src[j*ld + k] for j < cols, 0 beyond.
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
  static void transpose16(const V* r, V* out) {
    V t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 4; ++g) {
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
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V relu(V x) {
    const V z = _mm512_setzero_ps();
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, z, _CMP_LT_OQ), z);
  }
  static M mask(int n) { return n <= 0 ? M(0) : n >= L ? M(0xFFFF) : M((1u << n) - 1); }
  static V maskz_load(M m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(T* p, V x) { _mm512_storeu_ps(p, x); }
  static void mask_store(T* p, M m, V x) { _mm512_mask_storeu_ps(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
};

struct F64x8 {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static constexpr bool kVecMath = false;
  static constexpr bool kTransposePack = false;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V relu(V x) {
    const V z = _mm512_setzero_pd();
    return _mm512_mask_mov_pd(x, _mm512_cmp_pd_mask(x, z, _CMP_LT_OQ), z);
  }
  static M mask(int n) { return n <= 0 ? M(0) : n >= L ? M(0xFF) : M((1u << n) - 1); }
  static V maskz_load(M m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(T* p, V x) { _mm512_storeu_pd(p, x); }
  static void mask_store(T* p, M m, V x) { _mm512_mask_storeu_pd(p, m, x); }
  static void prefetch_w(const T* p, int n) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    if (n > L) _mm_prefetch(reinterpret_cast<const char*>(p + n - 1), _MM_HINT_T0);
  }
};

// The matmul kernel's tile shapes (gemm_avx512.cpp): fp32 14 x 32, fp64 8 x 24.
template <class T> struct Kern;
template <> struct Kern<float> { using K = gemm::MicroKernel<F32x16, 14, 2>; };
template <> struct Kern<double> { using K = gemm::MicroKernel<F64x8, 8, 3>; };

template <class T>
int64_t kc_for(int64_t depth) {
  using Kn = typename Kern<T>::K;
  const int64_t kmax = gemm::blocking_for(Kn::MR, Kn::NR, sizeof(T)).kc;
  return cdiv(depth, cdiv(depth, kmax));  // balanced blocks
}
}  // namespace

template <class T>
PackInfo pack_info_avx512(int64_t rows, int64_t depth) {
  using Kn = typename Kern<T>::K;
  // the edge buffer holds one kc x NR panel for any depth (kc <= the blocking's kc)
  const int64_t kmax = gemm::blocking_for(Kn::MR, Kn::NR, sizeof(T)).kc;
  return {cdiv(rows, Kn::MR) * Kn::MR * depth, int64_t(Kn::NR) * imin(kmax, depth)};
}

template <class T>
void pack_a_avx512(const T* src, int64_t rows, int64_t depth, int64_t rs, int64_t cs, T* dst) {
  using Kn = typename Kern<T>::K;
  constexpr int MR = Kn::MR;
  // Each MR-row panel holds the whole depth, k-major, so the kc block at k0
  // starts at panel + k0 * MR.
  for (int64_t r0 = 0; r0 < rows; r0 += MR)
    gemm::pack_a_panel<Kn>(src + r0 * rs, rs, cs, int(imin(MR, rows - r0)), depth, dst + r0 * depth);
}

template <class T>
void gemm_packed_avx512(const T* ap, int64_t M, int64_t K, const T* b, int64_t ldb, bool trans_b,
                        int64_t N, T* c, int64_t ldc, bool accumulate, T* ebuf) {
  using Kn = typename Kern<T>::K;
  constexpr int MR = Kn::MR, NR = Kn::NR;
  if (M == 0 || N == 0) return;
  const int64_t kc = kc_for<T>(K);
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t kcc = imin(kc, K - k0);
    const Epi<T> e{nullptr, Act::none, !accumulate && k0 == 0, k0 + kcc == K};
    for (int64_t jr = 0; jr < N; jr += NR) {
      const int nr = int(imin(NR, N - jr));
      const T* bp = trans_b ? b + jr * ldb + k0 : b + k0 * ldb + jr;
      int64_t lb = ldb;
      // Packed when it is reused by several row panels (a kc x NR panel read in
      // place spans kc rows of B, ~2 cache lines each: more than L1 holds), and
      // always when ragged (masked copy: never a read past B's end) or transposed.
      if (nr < NR || M > MR || trans_b) {
        if (trans_b)
          gemm::pack_b_panel<Kn>(bp, 1, ldb, nr, kcc, ebuf);
        else
          gemm::pack_b_panel<Kn>(bp, ldb, 1, nr, kcc, ebuf);
        bp = ebuf;
        lb = NR;
      }
      for (int64_t ir = 0; ir < M; ir += MR)
        Kn::tile_packed(kcc, ap + ir * K + k0 * MR, MR, bp, lb, c + ir * ldc + jr, ldc,
                        int(imin(MR, M - ir)), nr, e);
    }
  }
}

template PackInfo pack_info_avx512<float>(int64_t, int64_t);
template PackInfo pack_info_avx512<double>(int64_t, int64_t);
template void pack_a_avx512<float>(const float*, int64_t, int64_t, int64_t, int64_t, float*);
template void pack_a_avx512<double>(const double*, int64_t, int64_t, int64_t, int64_t, double*);
template void gemm_packed_avx512<float>(const float*, int64_t, int64_t, const float*, int64_t,
                                        bool, int64_t, float*, int64_t, bool, float*);
template void gemm_packed_avx512<double>(const double*, int64_t, int64_t, const double*, int64_t,
                                         bool, int64_t, double*, int64_t, bool, double*);

}  // namespace kiln::cpu::conv
