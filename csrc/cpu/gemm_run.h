// How the GEMM driver's work (gemm_driver.h: gemm_tile) is spread over OpenMP threads:
// over the batch, over a static grid of C tiles, or over many tiles handed out one at a
// time. Like the driver, everything is in an anonymous namespace, so
// each ISA translation unit (gemm_avx512.cpp, gemm_avx2.cpp, gemm_scalar.cpp) compiles its
// own copy with its own -m flags.
#pragma once
#include <omp.h>

#include <atomic>
#include <cstdint>
#include <new>

#include "cpu/gemm_driver.h"

namespace kiln::cpu::gemm {
namespace {

// Splits an M x N output among nt threads as a tm x tn grid of tiles whose
// edges are multiples of MR / NR: least work per thread first (padding
// counted), then least packing (tile perimeter).
template <class Kn>
void split_grid(int64_t M, int64_t N, int nt, int* tm_out, int* tn_out) {
  int64_t best_work = -1, best_perim = 0;
  for (int tn = 1; tn <= nt; ++tn) {
    if (nt % tn) continue;
    const int tm = nt / tn;
    const int64_t rows = cdiv(cdiv(M, tm), Kn::MR) * Kn::MR;
    const int64_t cols = cdiv(cdiv(N, tn), Kn::NR) * Kn::NR;
    const int64_t work = rows * cols, perim = rows + cols;
    if (best_work < 0 || work < best_work || (work == best_work && perim < best_perim)) {
      best_work = work;
      best_perim = perim;
      *tm_out = tm;
      *tn_out = tn;
    }
  }
}

// Runs the whole batched problem: parallel over the batch when it has enough
// elements to keep every thread busy; for large products with rows over 1 KiB, over
// many C tiles that the threads claim one at a time; otherwise over a static grid of C
// tiles (every thread does its tile of each batch element). Tiles are disjoint, so no
// barrier is needed; each thread packs into its own buffers.
template <class Kn>
void run_problem(const Problem<typename Kn::T>& p) {
  using T = typename Kn::T;
  constexpr int MR = Kn::MR, NR = Kn::NR;
  if (p.batch == 0 || p.M == 0 || p.N == 0 || p.K == 0) return;  // K = 0 handled by the caller
  const Blocking bl = blocking_for(MR, NR, sizeof(T));
  const double flops = 2.0 * double(p.batch) * double(p.M) * double(p.N) * double(p.K);
  int nt = threads_for(flops);
  const double per_matrix = 2.0 * double(p.M) * double(p.N) * double(p.K);
  const bool by_batch = p.batch >= nt && (p.batch % nt == 0 || p.batch >= 4 * nt ||
                                          per_matrix <= 2.0 * 128 * 128 * 128);
  int tm = 1, tn = 1;
  if (!by_batch) {
    // Don't hand a thread less than one micro-tile of work.
    const int64_t tiles = cdiv(p.M, MR) * cdiv(p.N, NR);
    if (tiles < nt) nt = int(imax(1, tiles));
    split_grid<Kn>(p.M, p.N, nt, &tm, &tn);
  }
  // Large products with rows over 1 KiB go as many tiles, at most one B block wide (the
  // columns split evenly) and at least 4 MR rows high, about 4 per thread, each claimed by
  // whichever thread is free next: on a shared machine one core often runs 20-40% slower
  // than the other for a while (another tenant on its caches; measured: the slower of two
  // static halves took 1.2-1.4x the faster one's time in such stretches), and a static
  // split waits for it. 2 threads, alternating with the static split and MKL: 512^3,
  // 4096x512x2048, 600x700x800, 3000x1500x3000 +4..+33% in busy stretches, 1024^3 and
  // 2048^3 -1..+4%; within 1% in quiet ones. (Short rows stay static: 1280x64x512 lost 12%
  // as 8 tiles that read A and B in place.) Every C element is still computed by one
  // tile with the same k blocking, so results do not depend on the split.
  int64_t dyn_rows = 0, dyn_cols = 0, dyn_nc = 0, dyn_tiles = 0;
  if (!by_batch && nt > 1 && per_matrix >= 2.0 * 256 * 256 * 256 &&
      p.K * int64_t(sizeof(T)) > 1024) {
    dyn_nc = cdiv(p.N, bl.nb);
    dyn_cols = cdiv(cdiv(p.N, dyn_nc), NR) * NR;
    dyn_rows = imax(4 * MR, cdiv(cdiv(p.M, cdiv(4 * nt, dyn_nc)), MR) * MR);
    dyn_tiles = cdiv(p.M, dyn_rows) * dyn_nc;
    if (dyn_tiles < 3 * nt) dyn_tiles = 0;
  }
  const bool dynamic = dyn_tiles > 0;
  const int64_t kc = imin(bl.kc, p.K);
  const size_t a_bytes = size_t(cdiv(imin(bl.mb, p.M), MR) * MR * kc) * sizeof(T);
  const size_t b_bytes = size_t(cdiv(imin(bl.nb, p.N), NR) * NR * kc) * sizeof(T);
  const size_t e_bytes = size_t(NR * kc) * sizeof(T);
  int failed = 0;
  // Batch elements of at most 256 KiB each (A + B + C): prefetch the next one
  // (larger products reuse their operands long enough for the hardware).
  const double elem_bytes = double(sizeof(T)) * double(p.M * p.K + p.K * p.N + p.M * p.N);
  const bool prefetch_next = by_batch && elem_bytes <= 256.0 * 1024;

  // The team body. One thread runs it directly: even an if(false) parallel region
  // costs libgomp ~0.7 us of team setup, several times a 4x4 product.
  // tid/team are passed in, never read from OpenMP: a direct call made inside some
  // outer parallel region must still do all the work itself.
  std::atomic<int64_t> next_tile{0};
  auto body = [&](int tid, int team) {
    T* abuf = static_cast<T*>(workspace(0, a_bytes));
    T* bbuf = static_cast<T*>(workspace(1, b_bytes));
    T* ebuf = static_cast<T*>(workspace(2, e_bytes));
    const bool ok = abuf && bbuf && ebuf;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
    if (by_batch) {
      // static split of the batch, the same as schedule(static)
      const int64_t per = cdiv(p.batch, team);
      const int64_t b0 = imin(p.batch, tid * per), b1 = imin(p.batch, b0 + per);
      for (int64_t bi = b0; bi < b1; ++bi) {
        if (!ok) continue;
        NextPrefetch pf, *next = nullptr;
        if (prefetch_next && bi + 1 < b1) {
          const int64_t e = int64_t(sizeof(T));
          if (p.a_bstride) pf.add(p.a + (bi + 1) * p.a_bstride, p.M * p.K * e);
          if (p.b_bstride) pf.add(p.b + (bi + 1) * p.b_bstride, p.K * p.N * e);
          next = &pf;
        }
        gemm_tile<Kn>(p, bi, 0, p.M, 0, p.N, bl, abuf, bbuf, ebuf, next);
      }
    } else if (dynamic) {
      // A thread whose buffers failed claims nothing; the others take its tiles.
      const int64_t total = p.batch * dyn_tiles;
      for (int64_t t = 0; ok && (t = next_tile.fetch_add(1, std::memory_order_relaxed)) < total;) {
        const int64_t bi = t / dyn_tiles, r = t % dyn_tiles;
        const int64_t m0 = r / dyn_nc * dyn_rows, n0 = r % dyn_nc * dyn_cols;
        gemm_tile<Kn>(p, bi, m0, imin(p.M, m0 + dyn_rows), n0, imin(p.N, n0 + dyn_cols), bl,
                      abuf, bbuf, ebuf);
      }
    } else if (ok) {
      // Normally one tile per thread; the stride loop covers a team smaller
      // than asked for (nested inside another parallel region, OMP_DYNAMIC).
      const int64_t rows = cdiv(cdiv(p.M, tm), MR) * MR;
      const int64_t cols = cdiv(cdiv(p.N, tn), NR) * NR;
      for (int t = tid; t < tm * tn; t += team) {
        const int ti = t / tn, tj = t % tn;
        const int64_t m0 = imin(p.M, ti * rows), m1 = imin(p.M, m0 + rows);
        const int64_t n0 = imin(p.N, tj * cols), n1 = imin(p.N, n0 + cols);
        if (m0 < m1 && n0 < n1)
          for (int64_t bi = 0; bi < p.batch; ++bi)
            gemm_tile<Kn>(p, bi, m0, m1, n0, n1, bl, abuf, bbuf, ebuf);
      }
    }
  };
  if (nt == 1) {
    body(0, 1);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace
}  // namespace kiln::cpu::gemm
