// Panel packing and software prefetch for the GEMM driver (gemm_driver.h). Like
// the driver, everything is in an anonymous namespace so each ISA translation
// unit compiles its own copy with its own -m flags.
#pragma once
#include <cstdint>

#include "cpu/gemm_epilogue.h"

namespace kiln::cpu::gemm {
namespace {

// Packs rows [0, rows) x depth [0, kc) of A into one MR-row panel, k-major:
// dst[k*MR + i] = A(i, k), rows >= `rows` zero. A(i, k) = src[i*rs + k*cs].
template <class Kn, class T = typename Kn::T>
void pack_a_panel(const T* src, int64_t rs, int64_t cs, int rows, int64_t kc, T* __restrict dst) {
  using S = typename Kn::Simd;
  constexpr int MR = Kn::MR;
  if (rs == 1) {  // trans_a: `rows` contiguous values per k, masked vector moves
    for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 4
      for (int i = 0; i < MR; i += S::L) {
        const typename S::M m = S::mask(rows - i), ms = S::mask(MR - i);
        S::mask_store(dst + k * MR + i, ms, S::maskz_load(m, src + k * cs + i));
      }
  } else if (cs == 1 && S::kTransposePack) {  // A row-major: in-register transposes
    if constexpr (S::kTransposePack) S::template pack_at<MR>(src, rs, kc, dst, rows);
  } else if (cs == 1 && rows == MR) {  // A row-major: gather one column of MR rows per k
    for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i * rs + k];
  } else {  // edge panel
    for (int64_t k = 0; k < kc; ++k)
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < rows ? src[i * rs + k * cs] : T(0);
  }
}

// Packs depth [0, kc) x columns [0, cols) of B into one NR-column panel:
// dst[k*NR + j] = B(k, j), columns >= `cols` zero. B(k, j) = src[k*rs + j*cs].
template <class Kn, class T = typename Kn::T>
void pack_b_panel(const T* src, int64_t rs, int64_t cs, int cols, int64_t kc, T* __restrict dst) {
  using S = typename Kn::Simd;
  constexpr int NR = Kn::NR;
  if (cs == 1 && cols == NR) {  // B row-major: NR contiguous values per k
    // Explicit vector moves: left alone, GCC turns this into a memcpy call per row.
    for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 8
      for (int j = 0; j < NR; j += S::L) S::store(dst + k * NR + j, S::load(src + k * rs + j));
  } else if (rs == 1 && cols == NR) {  // trans_b: column j of op(B) is row j of b
    if constexpr (S::kTransposePack) {  // in-register transposes where the ISA has them
      S::template pack_bt<NR>(src, cs, kc, dst, NR);
      return;
    }
    // Blocks of 8 k keep the 8 x NR destination lines hot while each source
    // row is read contiguously.
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8)
      for (int j = 0; j < NR; ++j)
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) dst[(k0 + k) * NR + j] = src[j * cs + k0 + k];
    for (; k0 < kc; ++k0)
      for (int j = 0; j < NR; ++j) dst[k0 * NR + j] = src[j * cs + k0];
  } else if (rs == 1 && S::kTransposePack) {  // ragged trans_b panel: rows >= cols read as 0
    if constexpr (S::kTransposePack) S::template pack_bt<NR>(src, cs, kc, dst, cols);
  } else if (cs == 1) {  // ragged row-major panel (the only panel when N < NR): masked rows
    for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 8
      for (int j = 0; j < NR; j += S::L)
        S::store(dst + k * NR + j, S::maskz_load(S::mask(cols - j), src + k * rs + j));
  } else {  // edge panel
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < cols ? src[k * rs + j * cs] : T(0);
  }
}

// Software prefetch of the next batch element's A and B into L2 while the current
// one runs: one line per k step of each micro-tile (Epi::pf), about as many lines
// as a small product has k steps in all (64^3: 640 steps, 512 lines). A batch of
// small products streams its operands from L3 once the batch outgrows L2 (64 x
// 64^3 fp32: 3 MiB), and the in-place reads of many short rows defeat the
// hardware prefetcher: kiln fell from 0.92x to 0.84x of PyTorch going from 8 to
// 128 products; with this 64 and 128 products run at 1.0-1.09x. A burst of
// prefetches before each tile instead made it worse (0.78x): once the line-fill
// buffers are full a prefetch stalls the loads behind it. C is not prefetched
// (no measurable gain: it is written before it is read).
struct NextPrefetch {
  const char* lo[3] = {};
  int64_t len[3] = {};  // bytes per range
  int r = 0;
  int64_t off = 0;
  void add(const void* p, int64_t bytes) {
    for (int i = 0; i < 3; ++i)
      if (!lo[i]) {
        lo[i] = static_cast<const char*>(p), len[i] = bytes;
        return;
      }
  }
  // Hands the next `lines` cache lines (fewer at the end of a range) to a tile.
  template <class T>
  void fill(Epi<T>& e, int64_t lines) {
    while (r < 3 && (!lo[r] || off >= len[r])) ++r, off = 0;
    if (r == 3) return;
    e.pf = lo[r] + off, e.pf_left = e.pf_run = lines + 1, e.pf_skip = 0;
    off += lines * 64;
  }
};

// Software prefetch of the next A panel's source rows (rows `run` lines long,
// `stride` bytes apart) while the current panel's tiles run, for A packed just in
// time (gemm_tile): A streams from L3 once it outgrows L2, and packing a panel then
// stalls on memory between two stretches of pure FMA work. Measured against
// PyTorch (MKL), alternating in one process, 1 thread, before -> packed just in
// time -> and prefetched: 512x1024x64 0.78x -> 0.83x -> 0.93x; 2048x1024x64 0.72x
// -> 0.84x -> 0.91x; 256x1024x784 (trans_a, a weight gradient) 0.87x -> 1.00x;
// 128x784x256 (trans_b, a Linear forward) 0.97x -> 1.00x -> 1.03x. (Short tiles like
// that last one now read A in place instead: see a_short in gemm_tile.)
struct PanelPrefetch {
  const char* base = nullptr;
  int64_t run = 0, stride = 0, rows = 0, r = 0, l = 0;
  // rows x cols elements of `esize` bytes, row stride ld elements
  void init(const void* src, int64_t nrows, int64_t cols, int64_t ld, int64_t esize) {
    const uintptr_t a0 = reinterpret_cast<uintptr_t>(src);
    base = reinterpret_cast<const char*>(a0 & ~uintptr_t(63));
    run = int64_t((a0 + uintptr_t(cols * esize) + 63) / 64 - a0 / 64);
    stride = ld * esize, rows = nrows, r = l = 0;
  }
  template <class T>
  void fill(Epi<T>& e, int64_t lines) {
    if (!base || r >= rows) return;
    e.pf = base + r * stride + l * 64, e.pf_left = run - l, e.pf_run = run;
    e.pf_skip = stride - run * 64;
    const int64_t at = l + lines;
    r += at / run, l = at % run;
  }
};

}  // namespace
}  // namespace kiln::cpu::gemm
