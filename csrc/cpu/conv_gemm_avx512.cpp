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
#include "cpu/gemm_simd_avx512.h"

namespace kiln::cpu::conv {
namespace {
using gemm::Act;
using gemm::cdiv;
using gemm::Epi;
using gemm::imin;

using gemm::F32x16;
using gemm::F64x8;

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
