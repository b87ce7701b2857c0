// Convolution as GEMM on im2col panels (every conv that is not depthwise).
// Per image n and group g (see conv.h for the notation; K = Cg*kh*kw):
//   forward  out[n,g] (Cog, HWo) = W[g] (Cog, K) @ col(x[n,g]) (K, HWo)   (+ bias per row)
//   dgrad    gx[n,g]  (Cg, HW)   = col2im(W[g]^T (K, Cog) @ gy[n,g] (Cog, HWo))
//   wgrad    gW[g]    (Cog, K)  += gy[n,g] (Cog, HWo) @ col(x[n,g])^T (HWo, K)
//            gb[co]             += sum_{oh, ow} gy[n, co, oh, ow]
// A 1x1, stride-1, unpadded conv needs no im2col: x[n,g] (Cg, HW) already is
// the panel, and dgrad writes gx directly.
//
// The panel is built for a chunk of output rows at a time, sized to stay in
// L2 while the GEMM uses it (a whole image's panel of a 64-channel 3x3 layer
// at 32x32 is 2.4 MB); the bias is added per image while its output is hot.
//
// Two GEMM back ends:
//  - AVX-512 (the *_avx512 functions here, GEMM steps in conv_gemm_avx512.cpp):
//    the weight is packed once per call and shared by all images and threads;
//    B and C take leading dimensions, so chunks are read and written in place,
//    and the weight gradient accumulates straight into its per-thread sum.
//  - otherwise the general gemm::run_<isa> entry points, which have no leading
//    dimensions: with several chunks per image the chunk's output or gy columns
//    go through a small contiguous buffer, and the weight gradient's per-chunk
//    product is added to the per-thread sum.
//
// Threads: with at least as many images as threads, each thread takes a
// contiguous range of images, with its own panel buffers and a one-thread
// GEMM (no synchronisation inside a call; the weight gradient is summed per
// thread and reduced at the end). With fewer images than threads (batch 1),
// images run one after another and the GEMM itself is threaded -- through the
// general back end, as the AVX-512 steps run on one thread.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "cpu/conv.h"
#include "cpu/gemm.h"
#include "cpu/isa.h"

namespace kiln::cpu::conv {
namespace {

// im2col panel budget per chunk, in bytes (KILN_CONV_PANEL / KILN_CONV_PANEL512
// override them for tuning; read once). Measured on the bench shapes with a
// 2 MiB L2: 1-2 MiB is flat, 256-512 KiB loses ~10% to per-chunk overheads.
static std::size_t kPanelBytes = [] {
  const char* e = std::getenv("KILN_CONV_PANEL");
  return e ? std::size_t(std::atol(e)) : std::size_t(1536 * 1024);
}();
// The AVX-512 path packs only one kc x NR panel of it at a time next to it in L2.
static std::size_t kPanelBytesAvx512 = [] {
  const char* e = std::getenv("KILN_CONV_PANEL512");
  return e ? std::size_t(std::atol(e)) : std::size_t(1024 * 1024);
}();

// C (M, N) = op(A) @ op(B), row-major, through the ISA the process uses.
template <class T>
void gemm_call(const T* a, const T* b, T* c, int64_t M, int64_t N, int64_t K, bool ta, bool tb) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(c, 0, sizeof(T) * M * N);
    return;
  }
  const gemm::Problem<T> p{a, b, c, nullptr, 1, M, N, K, 0, 0, 0, ta, tb, gemm::Act::none};
  switch (isa()) {
    case Isa::avx512: return gemm::run_avx512(p);
    case Isa::avx2: return gemm::run_avx2(p);
    default: return gemm::run_scalar(p);
  }
}

// Output rows per panel chunk: as many as fit the panel budget, balanced so
// that the last chunk is not a sliver.
template <class T>
int64_t chunk_rows(const Geom& g, std::size_t budget = kPanelBytes) {
  if (g.pointwise()) return g.Ho;
  const int64_t row_bytes = std::max<int64_t>(1, g.K() * g.Wo * int64_t(sizeof(T)));
  const int64_t most = std::max<int64_t>(1, int64_t(budget) / row_bytes);
  const int64_t nchunks = (g.Ho + most - 1) / most;
  return (g.Ho + nchunks - 1) / nchunks;
}

// Images per thread: nt > 1 means "parallel over images" (each thread runs one-thread GEMMs).
int image_threads(const Geom& g) {
  const int most = omp_get_max_threads();
  if (most <= 1 || g.N < most || g.flops() < 4e6) return 1;
  return most;
}

// f(n, tid) for every image n; parallel over images when nt > 1. Inside the
// team each thread's GEMMs run on one thread (nthreads-var is per task).
// claimed: the threads claim images one at a time instead of taking a static share, so a
// core slowed by another tenant does fewer (on this shared machine one core often runs
// 20-40% slower for seconds). Only where the result does not depend on which thread did
// which image: not for the weight gradients' per-thread partial sums, whose order of
// summation would then change from call to call.
template <class F>
void for_images(const Geom& g, int nt, F&& f, bool claimed = false) {
  if (nt <= 1) {
    for (int64_t n = 0; n < g.N; ++n) f(n, 0);
    return;
  }
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  {
    omp_set_num_threads(1);
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    if (claimed) {
      for (int64_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < g.N;) f(n, tid);
    } else {
      const int64_t per = (g.N + team - 1) / team;
      const int64_t n0 = std::min<int64_t>(g.N, tid * per), n1 = std::min<int64_t>(g.N, n0 + per);
      for (int64_t n = n0; n < n1; ++n) f(n, tid);
    }
  }
}
template <class F>
void for_images_claimed(const Geom& g, int nt, F&& f) {
  for_images(g, nt, f, true);
}

// The AVX-512 back end: whenever the images are spread over the threads (or
// one thread does everything), not when a single image needs a threaded GEMM.
bool use_avx512(const Geom& g) {
  return isa() == Isa::avx512 && g.K() > 0 &&
         (image_threads(g) > 1 || omp_get_max_threads() == 1 || g.flops() < 4e6);
}

// Sum of a row with 16 independent partial sums (a single accumulator would be
// bound by the add latency; the compiler cannot reassociate FP sums itself).
template <class T>
T row_sum(const T* x, int64_t n) {
  T acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += x[i + k];
  for (; i < n; ++i) acc[i & 15] += x[i];
  T s = T(0);
  for (int k = 0; k < 16; ++k) s += acc[k];
  return s;
}

}  // namespace

// Adds bias[co] to the Cog rows (HWo long) of one group's output.
template <class T>
void add_bias_rows(T* og, const T* bg, int64_t Cog, int64_t HWo) {
  for (int64_t co = 0; co < Cog; ++co) {
    T* r = og + co * HWo;
    const T bv = bg[co];
    for (int64_t k = 0; k < HWo; ++k) r[k] += bv;
  }
}

// AVX-512: the weight of every group packed once (into the calling thread's
// workspace slot 3, read by the whole team), panels read / written in place.
template <class T>
void forward_avx512(const T* x, const T* w, const T* bias, T* out, const Geom& g) {
  const int64_t Cg = g.Cg(), Cog = g.Cog(), K = g.K(), HW = g.HW(), HWo = g.HWo();
  const PackInfo pi = pack_info_avx512<T>(Cog, K);
  T* wp = static_cast<T*>(workspace(3, sizeof(T) * pi.a_elems * g.G));
  if (!wp) throw std::bad_alloc();
  for (int64_t gi = 0; gi < g.G; ++gi)
    pack_a_avx512(w + gi * Cog * K, Cog, K, K, int64_t(1), wp + gi * pi.a_elems);
  const int64_t rows = chunk_rows<T>(g, kPanelBytesAvx512);
  int failed = 0;
  for_images_claimed(g, image_threads(g), [&](int64_t n, int) {
    T* col = g.pointwise() ? nullptr : static_cast<T*>(workspace(0, sizeof(T) * K * rows * g.Wo));
    T* ebuf = static_cast<T*>(workspace(2, sizeof(T) * pi.edge_elems));
    if ((!g.pointwise() && !col) || !ebuf) {
#pragma omp atomic write
      failed = 1;
      return;
    }
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* xg = x + (n * g.C + gi * Cg) * HW;
      T* og = out + (n * g.Co + gi * Cog) * HWo;
      const T* wg = wp + gi * pi.a_elems;
      if (g.pointwise()) {
        gemm_packed_avx512(wg, Cog, K, xg, HW, false, HW, og, HWo, false, ebuf);
      } else {
        for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
          const int64_t oh1 = std::min(g.Ho, oh0 + rows), nc = (oh1 - oh0) * g.Wo;
          im2col(xg, g, oh0, oh1, col);
          gemm_packed_avx512(wg, Cog, K, col, nc, false, nc, og + oh0 * g.Wo, HWo, false, ebuf);
        }
      }
      if (bias) add_bias_rows(og, bias + gi * Cog, Cog, HWo);
    }
  });
  if (failed) throw std::bad_alloc();
}

template <class T>
void dgrad_avx512(const T* gy, const T* w, T* gx, const Geom& g) {
  const int64_t Cg = g.Cg(), Cog = g.Cog(), K = g.K(), HW = g.HW(), HWo = g.HWo();
  // A = W[g]^T (K x Cog): A(i, k) = W[k][i], i.e. rs = 1, cs = K
  const PackInfo pi = pack_info_avx512<T>(K, Cog);
  T* wp = static_cast<T*>(workspace(3, sizeof(T) * pi.a_elems * g.G));
  if (!wp) throw std::bad_alloc();
  for (int64_t gi = 0; gi < g.G; ++gi)
    pack_a_avx512(w + gi * Cog * K, K, Cog, int64_t(1), K, wp + gi * pi.a_elems);
  const int64_t rows = chunk_rows<T>(g, kPanelBytesAvx512);
  int failed = 0;
  for_images_claimed(g, image_threads(g), [&](int64_t n, int) {
    T* gcol = g.pointwise() ? nullptr : static_cast<T*>(workspace(0, sizeof(T) * K * rows * g.Wo));
    T* ebuf = static_cast<T*>(workspace(2, sizeof(T) * pi.edge_elems));
    if ((!g.pointwise() && !gcol) || !ebuf) {
#pragma omp atomic write
      failed = 1;
      return;
    }
    for (int64_t gi = 0; gi < g.G; ++gi) {
      T* gxg = gx + (n * g.C + gi * Cg) * HW;
      const T* wg = wp + gi * pi.a_elems;
      const T* gyg = gy + (n * g.Co + gi * Cog) * HWo;
      if (g.pointwise()) {
        gemm_packed_avx512(wg, Cg, Cog, gyg, HWo, false, HWo, gxg, HW, false, ebuf);
        continue;
      }
      std::memset(gxg, 0, sizeof(T) * Cg * HW);
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + rows), nc = (oh1 - oh0) * g.Wo;
        gemm_packed_avx512(wg, K, Cog, gyg + oh0 * g.Wo, HWo, false, nc, gcol, nc, false, ebuf);
        col2im_add(gcol, g, oh0, oh1, gxg);
      }
    }
  });
  if (failed) throw std::bad_alloc();
}

template <class T>
void gemm_forward(const T* x, const T* w, const T* bias, T* out, const Geom& g) {
  if (use_avx512(g)) return forward_avx512(x, w, bias, out, g);
  const int64_t Cg = g.Cg(), Cog = g.Cog(), K = g.K(), HW = g.HW(), HWo = g.HWo();
  const int64_t rows = chunk_rows<T>(g);
  const bool chunked = rows < g.Ho;
  const int nt = image_threads(g);
  int failed = 0;
  for_images_claimed(g, nt, [&](int64_t n, int) {
    T* col = nullptr;
    T* tmp = nullptr;
    if (!g.pointwise()) {
      col = static_cast<T*>(workspace(0, sizeof(T) * K * rows * g.Wo));
      if (chunked) tmp = static_cast<T*>(workspace(1, sizeof(T) * Cog * rows * g.Wo));
      if (!col || (chunked && !tmp)) {
#pragma omp atomic write
        failed = 1;
        return;
      }
    }
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* xg = x + (n * g.C + gi * Cg) * HW;
      const T* wg = w + gi * Cog * K;
      T* og = out + (n * g.Co + gi * Cog) * HWo;
      const T* bg = bias ? bias + gi * Cog : nullptr;
      if (!chunked) {
        const T* b = xg;
        if (!g.pointwise()) {
          im2col(xg, g, 0, g.Ho, col);
          b = col;
        }
        gemm_call(wg, b, og, Cog, HWo, K, false, false);
        if (bg)
          for (int64_t co = 0; co < Cog; ++co) {
            T* r = og + co * HWo;
            const T bv = bg[co];
            for (int64_t k = 0; k < HWo; ++k) r[k] += bv;
          }
        continue;
      }
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + rows), nc = (oh1 - oh0) * g.Wo;
        im2col(xg, g, oh0, oh1, col);
        gemm_call(wg, col, tmp, Cog, nc, K, false, false);
        for (int64_t co = 0; co < Cog; ++co) {
          T* __restrict dst = og + co * HWo + oh0 * g.Wo;
          const T* __restrict src = tmp + co * nc;
          const T bv = bg ? bg[co] : T(0);
          for (int64_t k = 0; k < nc; ++k) dst[k] = src[k] + bv;
        }
      }
    }
  });
  if (failed) throw std::bad_alloc();
}

template <class T>
void gemm_dgrad(const T* gy, const T* w, T* gx, const Geom& g) {
  if (use_avx512(g)) return dgrad_avx512(gy, w, gx, g);
  const int64_t Cg = g.Cg(), Cog = g.Cog(), K = g.K(), HW = g.HW(), HWo = g.HWo();
  const int64_t rows = chunk_rows<T>(g);
  const bool chunked = rows < g.Ho;
  const int nt = image_threads(g);
  int failed = 0;
  for_images_claimed(g, nt, [&](int64_t n, int) {
    T* gcol = nullptr;
    T* tmp = nullptr;
    if (!g.pointwise()) {
      gcol = static_cast<T*>(workspace(0, sizeof(T) * K * rows * g.Wo));
      if (chunked) tmp = static_cast<T*>(workspace(1, sizeof(T) * Cog * rows * g.Wo));
      if (!gcol || (chunked && !tmp)) {
#pragma omp atomic write
        failed = 1;
        return;
      }
    }
    for (int64_t gi = 0; gi < g.G; ++gi) {
      T* gxg = gx + (n * g.C + gi * Cg) * HW;
      const T* wg = w + gi * Cog * K;
      const T* gyg = gy + (n * g.Co + gi * Cog) * HWo;
      if (g.pointwise()) {  // gx = W^T @ gy, straight into place
        gemm_call(wg, gyg, gxg, Cg, HW, Cog, true, false);
        continue;
      }
      std::memset(gxg, 0, sizeof(T) * Cg * HW);
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + rows), nc = (oh1 - oh0) * g.Wo;
        const T* b = gyg;
        if (chunked) {  // the chunk's columns of gy, made contiguous
          for (int64_t co = 0; co < Cog; ++co)
            std::memcpy(tmp + co * nc, gyg + co * HWo + oh0 * g.Wo, sizeof(T) * nc);
          b = tmp;
        }
        gemm_call(wg, b, gcol, K, nc, Cog, true, false);
        col2im_add(gcol, g, oh0, oh1, gxg);
      }
    }
  });
  if (failed) throw std::bad_alloc();
}

// AVX-512 weight gradient accumulated in place: per chunk,
//   gW[g] (Cog, K) += pack(gy[n,g][:, chunk]) (Cog, nc) @ col(x[n,g])^T (nc, K),
// the gy chunk packed as A straight from gy (ld HWo; no copy), col read as a
// transposed B (register transposes into the L1 panel), every chunk of every
// image of a thread summed into that thread's gW (thread 0: gw itself).
template <class T>
void wgrad_avx512(const T* gy, const T* x, T* gw, T* gb, const Geom& g) {
  const int64_t Cg = g.Cg(), Cog = g.Cog(), K = g.K(), HW = g.HW(), HWo = g.HWo();
  const int64_t wsize = g.Co * K;
  const int64_t rows = chunk_rows<T>(g, kPanelBytesAvx512);
  const int64_t ncmax = rows * g.Wo;
  const int nt = image_threads(g);
  const PackInfo pa = pack_info_avx512<T>(Cog, ncmax), pb = pack_info_avx512<T>(Cog, ncmax);
  std::vector<T*> part(nt, nullptr);
  int failed = 0;
  std::memset(gw, 0, sizeof(T) * wsize);
  if (gb) std::memset(gb, 0, sizeof(T) * g.Co);
  for_images(g, nt, [&](int64_t n, int tid) {
    T* acc = gw;
    T* bacc = gb;
    if (tid > 0) {
      if (!part[tid]) {
        part[tid] = static_cast<T*>(workspace(3, sizeof(T) * (wsize + g.Co)));
        if (part[tid]) std::memset(part[tid], 0, sizeof(T) * (wsize + g.Co));
      }
      acc = part[tid];
      bacc = acc ? acc + wsize : nullptr;
    }
    T* col = g.pointwise() ? nullptr : static_cast<T*>(workspace(0, sizeof(T) * K * ncmax));
    T* ap = static_cast<T*>(workspace(1, sizeof(T) * pa.a_elems));
    T* ebuf = static_cast<T*>(workspace(2, sizeof(T) * pb.edge_elems));
    if (!acc || (!g.pointwise() && !col) || !ap || !ebuf) {
#pragma omp atomic write
      failed = 1;
      return;
    }
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* xg = x + (n * g.C + gi * Cg) * HW;
      const T* gyg = gy + (n * g.Co + gi * Cog) * HWo;
      if (bacc)
        for (int64_t co = 0; co < Cog; ++co) bacc[gi * Cog + co] += row_sum(gyg + co * HWo, HWo);
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + rows), nc = (oh1 - oh0) * g.Wo;
        pack_a_avx512(gyg + oh0 * g.Wo, Cog, nc, HWo, int64_t(1), ap);
        const T* b = xg;
        if (!g.pointwise()) {
          im2col(xg, g, oh0, oh1, col);
          b = col;
        }
        gemm_packed_avx512(ap, Cog, nc, b, g.pointwise() ? HW : nc, true, K, acc + gi * Cog * K,
                           K, true, ebuf);
      }
    }
  });
  if (failed) throw std::bad_alloc();
  for (int t = 1; t < nt; ++t) {
    const T* p = part[t];
    if (!p) continue;  // a thread that got no image
    for (int64_t k = 0; k < wsize; ++k) gw[k] += p[k];
    if (gb)
      for (int64_t k = 0; k < g.Co; ++k) gb[k] += p[wsize + k];
  }
}

template <class T>
void gemm_wgrad(const T* gy, const T* x, T* gw, T* gb, const Geom& g) {
  if (use_avx512(g)) return wgrad_avx512(gy, x, gw, gb, g);
  const int64_t Cg = g.Cg(), Cog = g.Cog(), K = g.K(), HW = g.HW(), HWo = g.HWo();
  const int64_t wsize = g.Co * K;  // the whole weight: G * Cog * K
  const int64_t rows = chunk_rows<T>(g);
  const bool chunked = rows < g.Ho;
  const int nt = image_threads(g);
  // Per-thread partial sums of the weight and bias gradients; thread 0 sums
  // straight into the outputs.
  std::vector<T*> part(nt, nullptr);
  int failed = 0;
  std::memset(gw, 0, sizeof(T) * wsize);
  if (gb) std::memset(gb, 0, sizeof(T) * g.Co);
  for_images(g, nt, [&](int64_t n, int tid) {
    T* acc = gw;
    T* bacc = gb;
    if (tid > 0) {
      // slot 3: the partial sums, zeroed on this thread's first image
      if (!part[tid]) {
        part[tid] = static_cast<T*>(workspace(3, sizeof(T) * (wsize + g.Co)));
        if (part[tid]) std::memset(part[tid], 0, sizeof(T) * (wsize + g.Co));
      }
      acc = part[tid];
      bacc = acc ? acc + wsize : nullptr;
    }
    T* prod = static_cast<T*>(workspace(2, sizeof(T) * Cog * K));
    T* col = g.pointwise() ? nullptr : static_cast<T*>(workspace(0, sizeof(T) * K * rows * g.Wo));
    T* tmp = chunked ? static_cast<T*>(workspace(1, sizeof(T) * Cog * rows * g.Wo)) : nullptr;
    if (!acc || !prod || (!g.pointwise() && !col) || (chunked && !tmp)) {
#pragma omp atomic write
      failed = 1;
      return;
    }
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* xg = x + (n * g.C + gi * Cg) * HW;
      const T* gyg = gy + (n * g.Co + gi * Cog) * HWo;
      T* ag = acc + gi * Cog * K;
      if (bacc)
        for (int64_t co = 0; co < Cog; ++co) bacc[gi * Cog + co] += row_sum(gyg + co * HWo, HWo);
      for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows) {
        const int64_t oh1 = std::min(g.Ho, oh0 + rows), nc = (oh1 - oh0) * g.Wo;
        const T* a = gyg;
        if (chunked) {
          for (int64_t co = 0; co < Cog; ++co)
            std::memcpy(tmp + co * nc, gyg + co * HWo + oh0 * g.Wo, sizeof(T) * nc);
          a = tmp;
        }
        const T* b = xg;
        if (!g.pointwise()) {
          im2col(xg, g, oh0, oh1, col);
          b = col;
        }
        gemm_call(a, b, prod, Cog, K, nc, false, true);  // (Cog, nc) @ (K, nc)^T
        for (int64_t k = 0; k < Cog * K; ++k) ag[k] += prod[k];
      }
    }
  });
  if (failed) throw std::bad_alloc();
  for (int t = 1; t < nt; ++t) {
    if (!part[t]) continue;  // a thread that got no image
    const T* p = part[t];
    for (int64_t k = 0; k < wsize; ++k) gw[k] += p[k];
    if (gb)
      for (int64_t k = 0; k < g.Co; ++k) gb[k] += p[wsize + k];
  }
}

template void gemm_forward<float>(const float*, const float*, const float*, float*, const Geom&);
template void gemm_forward<double>(const double*, const double*, const double*, double*,
                                   const Geom&);
template void gemm_dgrad<float>(const float*, const float*, float*, const Geom&);
template void gemm_dgrad<double>(const double*, const double*, double*, const Geom&);
template void gemm_wgrad<float>(const float*, const float*, float*, float*, const Geom&);
template void gemm_wgrad<double>(const double*, const double*, double*, double*, const Geom&);

}  // namespace kiln::cpu::conv
