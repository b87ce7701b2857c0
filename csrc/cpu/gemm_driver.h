// The BLIS-style GEMM driver and the generic register-blocked micro-kernel,
// written once and compiled once per ISA: each gemm_<isa>.cpp defines a SIMD
// traits struct S (vector type, loads, FMA, masks) and includes this header.
//
// Everything below lives in an anonymous namespace on purpose: every
// translation unit that includes it gets its own private copy compiled with
// that unit's -m flags. With external linkage the linker would keep one copy
// of, say, pack_a<float> -- possibly the AVX-512 one -- for all callers, and
// the scalar path would then execute AVX-512 instructions on a CPU without
// them.
//
// Algorithm (C = A B, row-major, per batch element and per thread tile):
//   for i0 over M in steps of mb:           A block mb x kc   (L3)
//     for k0 over K in steps of kc:
//       pack A[i0:, k0:] into MR-row panels, k-major (zero-padded rows)
//       for j0 over N in steps of nb:       B block kc x nb   (L2)
//         pack B[k0:, j0:] into NR-column panels (zero-padded columns)
//         for each MR-row panel of A:       A micro-panel     (L1)
//           for each NR-column panel of B:  micro-kernel: MR x NR tile of C
// The packing absorbs trans_a / trans_b (only the read strides change), so a
// transposed operand is never copied as a whole. Small row-major operands skip
// packing and are read in place (see gemm_tile). The micro-kernel overwrites C
// on the first kc block, accumulates on later ones, and applies bias and
// activation when it writes back the last one -- the epilogue costs no extra
// pass over C.
#pragma once

#include <cmath>
#include <cstdint>
#include <new>

#include "cpu/gemm.h"
#include "cpu/gemm_epilogue.h"
#include "cpu/gemm_pack.h"

namespace kiln::cpu::gemm {
namespace {

// MR x (NV*L) register tile. a: A k-major (kPackedA: A(i, k) = a[k*lda + i];
// the packed micro-panel with lda = MR, or a trans_a operand read in place
// with lda = M) or A row-major read in place (A(i, k) = a[i*lda + k]). In
// place only for full MR-row panels, so no row past M is read. b: B micro-panel with row stride
// ldb (NR when packed, N when read in place). mr x nr is the valid part of
// the tile (edge tiles); padded columns are computed from zeros and masked
// off at the write-back.
template <class S, int MR_, int NV>
struct MicroKernel {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  using Simd = S;
  static constexpr int L = S::L;
  static constexpr int MR = MR_;
  static constexpr int NR = NV * L;

  // ROWS <= MR rows are computed (a ragged last row panel runs a shorter
  // tile instead of multiplying zero padding); A keeps its k stride lda.
  // kPf: the tile also prefetches (Epi::pf); a separate instantiation, so that the
  // plain loop carries no prefetch branch. Never inlined: compiled on its own the
  // register allocator keeps the accumulators in registers; inlined into the larger
  // driver it spilled them for the 16-row in-place tile of narrow outputs
  // (128x128.128x10: 4.3 -> 7 us).
  template <bool kPackedA, int ROWS = MR, bool kPf = false>
  __attribute__((noinline)) static void tile(int64_t kc, const T* __restrict a, int64_t lda,
                                             const T* __restrict b, int64_t ldb,
                                             T* __restrict c, int64_t ldc, int mr, int nr,
                                             const Epi<T>& e) {
    V acc[ROWS][NV];
#pragma GCC unroll 32
    for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
#pragma GCC unroll 32
    for (int i = 0; i < ROWS; ++i)
      if (i < mr) S::prefetch_w(c + i * ldc, nr);

    const char* pf = e.pf;
    int64_t pf_left = e.pf_left;
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; ++k) {
      V bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * L);
#pragma GCC unroll 32
      for (int i = 0; i < ROWS; ++i) {
        const V av = S::bcast(kPackedA ? a + i : a + i * lda);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(av, bv[v], acc[i][v]);
      }
      a += kPackedA ? lda : 1;
      b += ldb;
      if (kPf && pf) {
        __builtin_prefetch(pf, 0, 2);
        pf += 64;
        if (--pf_left == 0) pf += e.pf_skip, pf_left = e.pf_run;
      }
    }

    const bool full = nr == NR;
    // A full tile with no bias or activation to apply (either no epilogue, or not the
    // last kc block) is written back by a loop of its own: the general one below tests
    // the flags per vector, ~100 cycles a tile, ~8% of a 64^3 product (a tile is ~900
    // FMA cycles at K = 64; batched 64 x 64^3 went from 134 to 146 GFLOP/s).
    if (full && (!e.last || (!e.bias && e.act == Act::none && !e.mask))) {
      if (e.first) {
#pragma GCC unroll 32
        for (int i = 0; i < ROWS; ++i) {
          if (i >= mr) break;
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) S::store(c + i * ldc + v * L, acc[i][v]);
        }
      } else {
#pragma GCC unroll 32
        for (int i = 0; i < ROWS; ++i) {
          if (i >= mr) break;
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) {
            T* cv = c + i * ldc + v * L;
            S::store(cv, S::add(acc[i][v], S::load(cv)));
          }
        }
      }
      return;
    }
    M mk[NV];
    V bias[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      mk[v] = S::mask(nr - v * L);
      bias[v] = e.last && e.bias ? S::maskz_load(mk[v], e.bias + v * L) : S::zero();
    }
    const bool relu = e.last && e.act == Act::relu;
    const T* mask = e.last ? e.mask : nullptr;
    const bool transcendental = e.last && (e.act == Act::gelu || e.act == Act::gelu_tanh);
#pragma GCC unroll 32
    for (int i = 0; i < ROWS; ++i) {
      if (i >= mr) break;
      T* ci = c + i * ldc;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        V x = acc[i][v];
        if (!e.first) x = S::add(x, full ? S::load(ci + v * L) : S::maskz_load(mk[v], ci + v * L));
        if (e.last) x = S::add(x, bias[v]);
        if (relu) x = S::relu(x);
        if (mask) {
          const T* mv = mask + i * ldc + v * L;
          x = S::relu_mask(x, full ? S::load(mv) : S::maskz_load(mk[v], mv));
        }
        if (full)
          S::store(ci + v * L, x);
        else
          S::mask_store(ci + v * L, mk[v], x);
      }
      if (transcendental) act_row_simd<S>(ci, nr, e.act);
    }
  }

  template <bool kPackedA, int ROWS>
  static void pick(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                   int64_t ldc, int mr, int nr, const Epi<T>& e) {
    if (e.pf)
      tile<kPackedA, ROWS, true>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    else
      tile<kPackedA, ROWS, false>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
  }

  // A read in place: a panel of exactly MR or 8 rows (the two heights the
  // driver's row split produces for whole panels).
  template <bool kKMajor>
  static void tile_whole(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                         int64_t ldc, int mr, int nr, const Epi<T>& e) {
    constexpr int r8 = MR < 8 ? MR : 8;
    if (mr == MR)
      pick<kKMajor, MR>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    else
      pick<kKMajor, r8>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
  }

  // A ragged last column panel (packed, zero-padded to NR, so ldb = NR) whose nr valid
  // columns leave a whole vector or more of padding runs a tile that much narrower
  // instead of multiplying the zeros: N = 80 with 8 x 32 tiles is 32 + 32 + 16, not
  // 3 x 32; N = 784 with 14 x 32 ends in 14 x 16. 1 thread, alternating with the padded
  // build and PyTorch: 64 x 80^3 batched 91 -> 101 GFLOP/s (PyTorch 109), 16 x
  // (128x128x80) +11%, 64 x 72^3 +8%, 256x128x784 (trans_a) +2%.
  // SIMD tiles only (the scalar tile's "vectors" are single elements).
  static void packed_fit(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                         int64_t ldc, int mr, int nr, const Epi<T>& e) {
    if constexpr (NV > 1 && L >= 4)
      if (nr <= (NV - 1) * L)
        return MicroKernel<S, MR_, NV - 1>::packed_fit(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    tile_packed(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
  }
  template <bool kKMajor>
  static void whole_fit(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                        int64_t ldc, int mr, int nr, const Epi<T>& e) {
    if constexpr (NV > 1 && L >= 4)
      if (nr <= (NV - 1) * L)
        return MicroKernel<S, MR_, NV - 1>::template whole_fit<kKMajor>(kc, a, lda, b, ldb, c,
                                                                        ldc, mr, nr, e);
    tile_whole<kKMajor>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
  }

  // k-major-A tile (k stride lda) with mr valid rows: the smallest of MR, 8,
  // 4, 2, 1 rows that covers them (rows mr..ROWS-1 are read, so A must hold
  // them: packed panels are zero-padded to MR rows).
  static void tile_packed(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                          int64_t ldc, int mr, int nr, const Epi<T>& e) {
    constexpr int r8 = MR < 8 ? MR : 8, r4 = MR < 4 ? MR : 4, r2 = MR < 2 ? MR : 2;
    if (mr > r8)
      pick<true, MR>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    else if (mr > r4)
      pick<true, r8>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    else if (mr > r2)
      pick<true, r4>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    else if (mr > 1)
      pick<true, r2>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
    else
      pick<true, 1>(kc, a, lda, b, ldb, c, ldc, mr, nr, e);
  }
};


// The serial blocked algorithm on rows [m0, m1) x columns [n0, n1) of one
// batch element. abuf/bbuf/ebuf: this thread's packing buffers; pf (or null):
// the next element's operands to prefetch while this one runs.
template <class Kn>
void gemm_tile(const Problem<typename Kn::T>& p, int64_t bi, int64_t m0, int64_t m1, int64_t n0,
               int64_t n1, const Blocking& bl, typename Kn::T* abuf, typename Kn::T* bbuf,
               typename Kn::T* ebuf, NextPrefetch* pf = nullptr) {
  using T = typename Kn::T;
  constexpr int MR = Kn::MR, NR = Kn::NR;
  const int64_t M = p.M, N = p.N, K = p.K;
  const T* a = p.a + bi * p.a_bstride;
  const T* b = p.b + bi * p.b_bstride;
  T* c = p.c + bi * p.c_bstride;
  // Element strides of A(i, k) and B(k, j) as stored.
  const int64_t a_rs = p.trans_a ? 1 : K, a_cs = p.trans_a ? M : 1;
  const int64_t b_rs = p.trans_b ? 1 : N, b_cs = p.trans_b ? K : 1;

  // Balance the blocks so that no trailing block is a sliver (K = kc + 1
  // would otherwise run a whole extra pass for one step of depth).
  const int64_t nk = cdiv(K, bl.kc);
  const int64_t kc = cdiv(K, nk);
  // A trans_a operand is already k-major (A(i, k) = a[k*M + i]): the kernel
  // reads its full MR-row panels in place with k stride M, as it reads a
  // packed panel. Only for outputs up to 128 x 128 or K up to 32: against packing, in
  // place is +10% at 64^3 and +4% at 256x32x256, even at 128x256x128, but packing wins
  // above (128x128x256 +4-7% in 6 runs, 512x128x512 / 784x128x256 +3-6%). Only for
  // short K (a Linear layer's batch): at 512x1000x1000 the strided reads lose to packing
  // (0.82x vs 0.96x of MKL). Not when a row of a is a multiple of 4 KiB (same L1 sets).
  const bool at_in_place = p.trans_a && NR * int64_t(sizeof(T)) >= 128 &&
                           K * int64_t(sizeof(T)) <= 1024 && (M * N <= 128 * 128 || K <= 32) &&
                           (M * int64_t(sizeof(T))) % 4096 != 0;

  // A small, non-transposed B is read in place: its rows are then short and
  // few enough to stay in L1/L2 unpacked, and packing would cost about as
  // much as the product itself. Only a ragged last column panel is packed.
  // So is any row-major B when this tile has a single row panel (small M):
  // then every B element is used once and packing it would only add a copy.
  // And so is a row-major B for a short tile (M up to a few hundred rows, the
  // Linear-layer backward shapes): packing costs one copy per B element against
  // 2 (m1 - m0) flops on it, ~6% at M = 128, while the kernel streams B rows
  // from L2 about as fast as a packed panel (measured 0.91x -> 0.96x of MKL at
  // 126x128x256). Not when a B row is a multiple of 4 KiB: then every row of
  // the panel maps to the same L1/L2 sets (N = 1024: 0.97x -> 0.84x).
  // And only while the kc x N slab of B fits the L2 share a packed block would
  // use: beyond that, every row panel would re-read B from L3.
  // Wide tiles only (NR >= 32 floats: AVX-512): the AVX2 6 x 16 tile does 12
  // FMAs per 64-byte B row, too few to hide the strided L2 reads (measured
  // 0.52x -> 0.43x of MKL at 256x128x784 with trans_a).
  // And not next to a trans_a A read in place: two strided streams per k step (A's
  // k-major rows and B's) lose to a packed, sequential B: 256x128x784 +8%,
  // 256x128x512 +6%, 128x128x1000 +7% with B packed (128x128x256 even).
  const bool b_short = NR * int64_t(sizeof(T)) >= 128 && m1 - m0 <= 512 &&
                       (N * int64_t(sizeof(T))) % 4096 != 0 && kc * (n1 - n0) <= bl.kc * bl.nb &&
                       !at_in_place;
  const bool b_in_place = !p.trans_b && (K * (n1 - n0) * int64_t(sizeof(T)) <= 64 * 1024 ||
                                         m1 - m0 <= MR || b_short);
  // Likewise short rows (at most 1 KiB) of a row-major A are read in place, unless the tile
  // is both tall (over 256 rows) and wide (512 columns or more): packing costs about 32/N of
  // the product, and such rows keep the MR row streams off the same L1 sets; but in a tall,
  // wide tile the MR strided row streams per panel lose to one packed stream whenever the
  // shared core's L2 is busy. 1 thread, builds alternating with MKL, rounds split by an
  // L2-bandwidth probe: packed, 1280x64x512 +3..+14%, 512x64x512 +5..+15% (2 threads
  // +12%); 1024x64x128 and 1024x128x128 -4..-5%, 1024x128x256 -1..-2%.
  // A ragged last row panel is always packed, so no row past M is ever read.
  // With a single column panel (narrow N) each A element is used once per
  // panel, so packing A never pays off, whatever K.
  // Nor does it for longer rows with a single column block (N <= nb, A would be packed
  // just in time) in a short tile (M up to a few hundred rows) whose rows are not a
  // multiple of 4 KiB (same L1 sets): the panel's rows stay in L1 for all its column
  // tiles, and the pack was ~4% of the product. Measured per build, 1 thread: 128x784x256
  // +2%, 128x1000x128 +6%, 300x900x200 +2..+7%; at M = 1000 it is even (-0.8%).
  const int64_t a_row_bytes = K * int64_t(sizeof(T));
  const bool a_short = a_row_bytes <= 1024
                           ? m1 - m0 <= 256 || n1 - n0 < 16 * NR
                           : n1 - n0 <= bl.nb && m1 - m0 <= 512 && a_row_bytes % 4096 != 0;
  const bool a_in_place = !p.trans_a && (n1 - n0 <= NR || a_short);

  // Just-in-time A packing: with one column block (N <= nb: every Linear layer and
  // most small products) each A panel is used only by the tiles right after it, so it
  // is packed then, into one reused slot that stays in L1, and the next panel's source
  // is prefetched meanwhile (PanelPrefetch).
  const bool jit = n1 - n0 <= bl.nb;
  for (int64_t i0 = m0; i0 < m1; i0 += bl.mb) {
    const int64_t mb = imin(bl.mb, m1 - i0);
    // Row panels: MR rows each, but a remainder of 1 or 2 rows (M = 128 =
    // 9 x 14 + 2) would run a 1- or 2-row tile, whose few accumulator chains
    // leave the FMA units half idle or worse; the last MR + rem rows then go
    // as two panels of at most 8 (the 8-row tile runs near full speed). The
    // panel count is unchanged, so panel pi still packs at abuf + pi*MR*kcc.
    const int64_t rem = mb % MR;
    const bool even_tail = MR > 8 && mb > MR && rem > 0 && MR + rem <= 16;
    const int64_t tail0 = mb - rem - MR;
    auto rows_at = [&](int64_t ir) -> int {
      if (even_tail && ir >= tail0) return ir == tail0 ? int(MR + rem - 8) : 8;
      return int(imin(MR, mb - ir));
    };
    // Panels an in-place kernel can read: exactly MR or 8 rows (no row past M).
    auto whole = [](int r) { return r == MR || (MR > 8 && r == 8); };
    auto packs = [&](int r) { return (!a_in_place && !at_in_place) || !whole(r); };
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kcc = imin(kc, K - k0);
      for (int64_t ir = 0, pi = 0; ir < mb && !jit; ir += rows_at(ir), ++pi)
        if (packs(rows_at(ir)))
          pack_a_panel<Kn>(a + (i0 + ir) * a_rs + k0 * a_cs, a_rs, a_cs, rows_at(ir), kcc,
                           abuf + pi * MR * kcc);
      const Epi<T> epi0{nullptr, p.act, k0 == 0, k0 + kcc == K};
      for (int64_t j0 = n0; j0 < n1; j0 += bl.nb) {
        const int64_t nb = imin(bl.nb, n1 - j0);
        if (!b_in_place)
          for (int64_t jr = 0; jr < nb; jr += NR)
            pack_b_panel<Kn>(b + k0 * b_rs + (j0 + jr) * b_cs, b_rs, b_cs, int(imin(NR, nb - jr)),
                             kcc, bbuf + jr * kcc);
        const int64_t tail = nb % NR;  // width of a ragged last panel (0: none)
        if (b_in_place && tail)
          pack_b_panel<Kn>(b + k0 * b_rs + (j0 + nb - tail) * b_cs, b_rs, b_cs, int(tail), kcc,
                           ebuf);
        for (int64_t ir = 0, pi = 0; ir < mb; ir += rows_at(ir), ++pi) {
          const int mr = rows_at(ir);
          const T* ap = jit ? abuf : abuf + pi * MR * kcc;
          PanelPrefetch apf;
          if (jit) {
            if (packs(mr))
              pack_a_panel<Kn>(a + (i0 + ir) * a_rs + k0 * a_cs, a_rs, a_cs, mr, kcc, abuf);
            const int64_t nx = ir + mr;  // the next panel, if it will be packed
            if (!pf && nx < mb && packs(rows_at(nx))) {
              if (p.trans_a)
                apf.init(a + k0 * M + i0 + nx, kcc, rows_at(nx), M, sizeof(T));
              else
                apf.init(a + (i0 + nx) * K + k0, rows_at(nx), kcc, K, sizeof(T));
            }
          }
          T* crow = c + (i0 + ir) * N;
          for (int64_t jr = 0; jr < nb; jr += NR) {
            const int nr = int(imin(NR, nb - jr));
            const T* bp;
            int64_t ldb;
            if (!b_in_place) {
              bp = bbuf + jr * kcc;
              ldb = NR;
            } else if (nr == NR) {
              bp = b + k0 * N + j0 + jr;
              ldb = N;
            } else {
              bp = ebuf;
              ldb = NR;
            }
            Epi<T> epi = epi0;
            if (epi.last && p.bias) epi.bias = p.bias + j0 + jr;
            if (epi.last && p.mask) epi.mask = p.mask + bi * p.c_bstride + (i0 + ir) * N + j0 + jr;
            if (pf) pf->fill(epi, kcc);
            if (apf.base) apf.fill(epi, kcc);
            if (a_in_place && whole(mr))
              Kn::template whole_fit<false>(kcc, a + (i0 + ir) * K + k0, K, bp, ldb,
                                            crow + j0 + jr, N, mr, nr, epi);
            else if (at_in_place && whole(mr))
              Kn::template whole_fit<true>(kcc, a + k0 * M + i0 + ir, M, bp, ldb, crow + j0 + jr,
                                           N, mr, nr, epi);
            else
              Kn::packed_fit(kcc, ap, MR, bp, ldb, crow + j0 + jr, N, mr, nr, epi);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kiln::cpu::gemm
