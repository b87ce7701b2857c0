// Row / channel loops of the normalization and dropout kernels, written once as portable
// templates and compiled three times: in norm.cpp (baseline x86-64, SSE2), norm_avx2.cpp
// and norm_avx512.cpp (with those ISA flags). Everything here has internal linkage (anonymous
// namespace), so each translation unit keeps its own copy and no AVX-512 instruction can leak
// into the baseline build through the linker's choice of a shared inline symbol. The inner
// loops are plain unit-stride loops with `omp simd` reductions (GCC does not reorder floating
// point sums without them), so the compiler vectorises them at the TU's width. A
// reduction's order depends only on the data's shape (never on the
// thread count), so results are deterministic for a given ISA.
//
// The math (per normalized group of n elements, xhat = (x - mean) * rstd, gy = g * w):
//   forward   y = xhat * w + b,  mean = sum x / n,  rstd = 1 / sqrt(sum (x - mean)^2 / n + eps)
// (layer_norm rows sum in T over the vector lanes -- short rows, blocked sums; batch_norm and
// group_norm reductions, which can be long, and every final cross-block sum use double)
//   backward  gx = rstd * (gy - sum(gy) / n - xhat * sum(gy * xhat) / n)
//             gw = sum over groups of g * xhat,  gb = sum over groups of g
// Dropout: element i is kept when its Philox uniform (common/philox.h) is >= p, i.e. when
// (word >> 8) >= ceil(p * 2^24); kept elements are scaled by 1 / (1 - p).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/norm_kernels.h"

namespace kiln::cpu {
namespace {

// f(i) for i in [0, n), on OpenMP threads when the work (total elements) is large enough.
template <class F>
inline void par_for(int64_t n, int64_t work, F&& f) {
  if (work < kNormGrain || n < 2 || omp_get_max_threads() == 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <class T, class Acc = double>
inline double sum_of(const T* x, int64_t n) {
  Acc s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += Acc(x[i]);
  return double(s);
}

// sum (x - m)^2, the second pass of a two-pass variance (exact for data far from zero).
template <class T, class Acc = double>
inline double sqdev_of(const T* x, int64_t n, double m) {
  Acc s = 0;
  const Acc ma = Acc(m);
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const Acc d = Acc(x[i]) - ma;
    s += d * d;
  }
  return double(s);
}

// ---- layer_norm -----------------------------------------------------------------------
template <class T>
void layer_norm_rows(const NormArgs<T>& a) {
  const int64_t R = a.rows, D = a.cols;
  par_for(R, R * D, [&](int64_t r) {
    const T* x = a.x + r * D;
    T* y = a.y + r * D;
    // rows are short (in L1): T sums over the vector lanes are blocked sums, accurate
    // enough, and twice as fast as double for float32
    const double m = sum_of<T, T>(x, D) / double(D);
    const double var = sqdev_of<T, T>(x, D, m) / double(D);
    const T rs = T(1.0 / std::sqrt(var + a.eps));
    const T mt = T(m);
    a.mean[r] = mt;
    a.rstd[r] = rs;
    const T* w = a.w;
    const T* b = a.b;
    if (w && b) {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) y[i] = (x[i] - mt) * rs * w[i] + b[i];
    } else if (w) {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) y[i] = (x[i] - mt) * rs * w[i];
    } else if (b) {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) y[i] = (x[i] - mt) * rs + b[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) y[i] = (x[i] - mt) * rs;
    }
  });
}

// Rows are cut into a fixed number of blocks (a function of R only); each block sums its
// rows' g * xhat and g into its own partial (T, D each: a block holds at most R / 64 rows),
// and the partials are added in block order in double, so gw / gb do not depend on the
// thread count.
template <class T>
void layer_norm_backward_rows(const NormBwdArgs<T>& a) {
  const int64_t R = a.rows, D = a.cols;
  const bool wgrads = a.gw || a.gb;
  const int64_t nblk = wgrads ? std::min<int64_t>(R, kLnBlocks) : R;
  const int64_t per = (R + nblk - 1) / nblk;
  T* part = reinterpret_cast<T*>(a.work);  // nblk * 2 * D values when wgrads
  par_for(nblk, R * D, [&](int64_t blk) {
    T* pw = wgrads ? part + blk * 2 * D : nullptr;
    T* pb = wgrads ? pw + D : nullptr;
    if (wgrads)
      for (int64_t i = 0; i < 2 * D; ++i) pw[i] = 0;
    const int64_t r1 = std::min(R, (blk + 1) * per);
    for (int64_t r = blk * per; r < r1; ++r) {
      const T* g = a.g + r * D;
      const T* x = a.x + r * D;
      const T m = a.mean[r], rs = a.rstd[r];
      const T* w = a.w;
      T* gx = a.gx ? a.gx + r * D : nullptr;
      if (gx) {
        T s1 = 0, s2 = 0;
        if (w) {
#pragma omp simd reduction(+ : s1, s2)
          for (int64_t i = 0; i < D; ++i) {
            const T gy = g[i] * w[i];
            s1 += gy;
            s2 += gy * ((x[i] - m) * rs);
          }
        } else {
#pragma omp simd reduction(+ : s1, s2)
          for (int64_t i = 0; i < D; ++i) {
            s1 += g[i];
            s2 += g[i] * ((x[i] - m) * rs);
          }
        }
        const T c1 = s1 / T(D), c2 = s2 / T(D);
        if (w && wgrads) {  // one pass for gx and the partials
#pragma omp simd
          for (int64_t i = 0; i < D; ++i) {
            const T xh = (x[i] - m) * rs;
            gx[i] = rs * (g[i] * w[i] - c1 - xh * c2);
            pw[i] += g[i] * xh;
            pb[i] += g[i];
          }
          continue;
        }
        if (w) {
#pragma omp simd
          for (int64_t i = 0; i < D; ++i) gx[i] = rs * (g[i] * w[i] - c1 - (x[i] - m) * rs * c2);
        } else {
#pragma omp simd
          for (int64_t i = 0; i < D; ++i) gx[i] = rs * (g[i] - c1 - (x[i] - m) * rs * c2);
        }
      }
      if (wgrads) {
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) {
          pw[i] += g[i] * ((x[i] - m) * rs);
          pb[i] += g[i];
        }
      }
    }
  });
  if (!wgrads) return;
  par_for(D, nblk * D, [&](int64_t i) {
    double sw = 0, sb = 0;
    for (int64_t blk = 0; blk < nblk; ++blk) {
      sw += double(part[blk * 2 * D + i]);
      sb += double(part[blk * 2 * D + D + i]);
    }
    if (a.gw) a.gw[i] = T(sw);
    if (a.gb) a.gb[i] = T(sb);
  });
}

// ---- dropout --------------------------------------------------------------------------
constexpr int kLanes = 16;  // Philox blocks per step: 64 elements

// The 4 words of kLanes consecutive Philox blocks starting at `block`, word j of lane l in
// out[j][l] (the same function as philox4x32 in common/philox.h, lane-parallel).
inline void philox_lanes(uint64_t seed, uint64_t block, uint32_t out[4][kLanes]) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  alignas(64) uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    c0[l] = uint32_t(block + l);
    c1[l] = uint32_t((block + l) >> 32);
    c2[l] = 0;
    c3[l] = 0;
  }
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k0 += W0;
      k1 += W1;
    }
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const uint64_t p0 = uint64_t(M0) * c0[l], p1 = uint64_t(M1) * c2[l];
      const uint32_t n0 = uint32_t(p1 >> 32) ^ c1[l] ^ k0, n2 = uint32_t(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = uint32_t(p1);
      c3[l] = uint32_t(p0);
      c0[l] = n0;
      c2[l] = n2;
    }
  }
  for (int l = 0; l < kLanes; ++l) {
    out[0][l] = c0[l];
    out[1][l] = c1[l];
    out[2][l] = c2[l];
    out[3][l] = c3[l];
  }
}

// Word `idx` of the convention, one at a time (a local copy: no shared inline symbol).
inline uint32_t philox_word1(uint64_t seed, uint64_t idx) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  const uint64_t block = idx >> 2;
  uint32_t c[4] = {uint32_t(block), uint32_t(block >> 32), 0u, 0u};
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k0 += W0;
      k1 += W1;
    }
    const uint64_t p0 = uint64_t(M0) * c[0], p1 = uint64_t(M1) * c[2];
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c[1] ^ k0, n2 = uint32_t(p0 >> 32) ^ c[3] ^ k1;
    c[1] = uint32_t(p1);
    c[3] = uint32_t(p0);
    c[0] = n0;
    c[2] = n2;
  }
  return c[idx & 3];
}

// y[i] = keep(base + i) ? x[i] * scale : 0 for i < n; base is the element index of x[0].
// thr = ceil(p * 2^24): element kept when (word >> 8) >= thr.
template <class T>
void dropout_span(const T* x, T* y, int64_t n, uint64_t seed, uint64_t base, uint32_t thr,
                  T scale) {
  alignas(64) uint32_t w[4][kLanes];
  alignas(64) T f[4 * kLanes];
  int64_t i = 0;
  while (i < n) {
    const uint64_t e = base + uint64_t(i);  // element index; its group of 64 starts at e & ~63
    const uint64_t g0 = e & ~uint64_t(4 * kLanes - 1);
    philox_lanes(seed, g0 >> 2, w);
    for (int l = 0; l < kLanes; ++l)
      for (int j = 0; j < 4; ++j) f[4 * l + j] = (w[j][l] >> 8) >= thr ? scale : T(0);
    const int64_t off = int64_t(e - g0), len = std::min<int64_t>(4 * kLanes - off, n - i);
    const T* xs = x + i;
    T* ys = y + i;
    const T* fs = f + off;
#pragma omp simd
    for (int64_t k = 0; k < len; ++k) ys[k] = xs[k] * fs[k];
    i += len;
  }
}

template <class T>
void dropout_all(const DropoutArgs<T>& a) {
  const uint32_t thr = uint32_t(std::ceil(double(float(a.p)) * 16777216.0));
  const T scale = T(1.0 / (1.0 - a.p));
  if (a.inner == 1) {
    // chunks of 64-element groups: every thread starts at a group boundary
    const int64_t ngroups = (a.n + 4 * kLanes - 1) / (4 * kLanes);
    const int64_t per = std::max<int64_t>(1, kDropoutGroupsPerTask);
    const int64_t ntasks = (ngroups + per - 1) / per;
    par_for(ntasks, a.n, [&](int64_t t) {
      const int64_t b = t * per * 4 * kLanes, e = std::min(a.n, b + per * 4 * kLanes);
      dropout_span(a.x + b, a.y + b, e - b, a.seed, uint64_t(b), thr, scale);
    });
    return;
  }
  // feature dropout: one draw (index f) per run of `inner` elements
  const int64_t nf = a.n / a.inner, inner = a.inner;
  par_for(nf, a.n, [&](int64_t f) {
    const T s = (philox_word1(a.seed, uint64_t(f)) >> 8) >= thr ? scale : T(0);
    const T* x = a.x + f * inner;
    T* y = a.y + f * inner;
#pragma omp simd
    for (int64_t k = 0; k < inner; ++k) y[k] = x[k] * s;
  });
}

}  // namespace
}  // namespace kiln::cpu
