// Pooling loops over P planes of (H, W), written once and compiled per ISA (pool.cpp:
// baseline, pool_avx2.cpp, pool_avx512.cpp); internal linkage, as in norm_impl.h.
// Windows follow PyTorch's CPU kernels exactly:
//   max_pool2d: ih0 = oh sH - pH, ih1 = min(ih0 + (kH - 1) dH + 1, H), ih0 raised by dH
//     until >= 0 (same in w); the max over the window in (h, w) order, the first max winning
//     and a NaN always winning (`v > m || v != v`); the index is h * W + w (-1 for an
//     empty window, which only a dilation larger than the input can make).
//   avg_pool2d: ih1 = min(ih0 + kH, H + pH), pool = (ih1 - ih0)(iw1 - iw0) before clipping
//     to the input; divisor = divisor_override, or pool (count_include_pad), or the clipped
//     window's size; an empty clipped window gives 0.
//   adaptive_avg_pool2d: rows floor(oh H / OH) .. ceil((oh + 1) H / OH), same in w.
// Outputs whose window lies inside the input in w ("interior" columns) are computed for a
// strip of columns at once, one (h, kw) tap at a time, so the inner loop runs over output
// columns and vectorises; border columns take the scalar path. Forward tasks are (plane,
// output row); backward tasks are planes (windows of different rows overlap).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/pool_kernels.h"

namespace kiln::cpu {
namespace {
constexpr int64_t kPoolGrain = 16384;
constexpr int64_t kStripW = 128;

template <class F>
inline void pool_for(int64_t n, int64_t work, F&& f) {
  if (work < kPoolGrain || n < 2 || omp_get_max_threads() == 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// Output columns [lo, hi) whose taps ow * s - p + k * d, k < kw, all lie in [0, W).
inline void interior(int64_t OW, int64_t W, int64_t k, int64_t s, int64_t p, int64_t d,
                     int64_t* lo, int64_t* hi) {
  const int64_t a = std::min(OW, (p + s - 1) / s);
  const int64_t num = W - 1 - (k - 1) * d + p;
  const int64_t b = num < 0 ? 0 : std::min(OW, num / s + 1);
  *lo = a;
  *hi = std::max(a, b);
}

// ---- max_pool2d -----------------------------------------------------------------------
template <class T, bool WithIdx>
void max_pool_row(const PoolArgs<T>& a, int64_t task) {
  const int64_t p = task / a.OH, oh = task % a.OH, W = a.W, OW = a.OW;
  const T* xp = a.x + p * a.H * W;
  T* yp = a.y + task * OW;
  int64_t* ip = WithIdx ? a.idx + task * OW : nullptr;
  int64_t ih0 = oh * a.sH - a.pH;
  const int64_t ih1 = std::min(ih0 + (a.kH - 1) * a.dH + 1, a.H);
  while (ih0 < 0) ih0 += a.dH;
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  auto scalar = [&](int64_t ow) {
    int64_t iw0 = ow * a.sW - a.pW;
    const int64_t iw1 = std::min(iw0 + (a.kW - 1) * a.dW + 1, W);
    while (iw0 < 0) iw0 += a.dW;
    int64_t mi = (ih0 < ih1 && iw0 < iw1) ? ih0 * W + iw0 : -1;
    T m = ninf;
    for (int64_t ih = ih0; ih < ih1; ih += a.dH)
      for (int64_t iw = iw0; iw < iw1; iw += a.dW) {
        const T v = xp[ih * W + iw];
        if (v > m || v != v) {
          m = v;
          mi = ih * W + iw;
        }
      }
    yp[ow] = m;
    if constexpr (WithIdx) ip[ow] = mi;
  };
  int64_t lo, hi;
  interior(OW, W, a.kW, a.sW, a.pW, a.dW, &lo, &hi);
  if (ih0 >= ih1) lo = hi = OW;  // empty rows: every column takes the scalar path
  for (int64_t ow = 0; ow < lo; ++ow) scalar(ow);
  const int64_t sW = a.sW;
  for (int64_t o0 = lo; o0 < hi; o0 += kStripW) {
    const int64_t n = std::min(kStripW, hi - o0);
    T m[kStripW];
    int64_t id[kStripW];
    for (int64_t j = 0; j < n; ++j) {
      m[j] = ninf;
      if constexpr (WithIdx) id[j] = ih0 * W + (o0 + j) * sW - a.pW;
    }
    for (int64_t ih = ih0; ih < ih1; ih += a.dH) {
      for (int64_t kw = 0; kw < a.kW; ++kw) {
        const int64_t off = ih * W + o0 * sW - a.pW + kw * a.dW;  // tap of column o0
        const T* src = xp + off;
        if (sW == 1) {
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) {
            const T v = src[j];
            const bool c = v > m[j] || v != v;
            m[j] = c ? v : m[j];
            if constexpr (WithIdx) id[j] = c ? off + j : id[j];
          }
        } else {  // strided taps: gathers cost more than they save, left to the compiler
          for (int64_t j = 0; j < n; ++j) {
            const T v = src[j * sW];
            const bool c = v > m[j] || v != v;
            m[j] = c ? v : m[j];
            if constexpr (WithIdx) id[j] = c ? off + j * sW : id[j];
          }
        }
      }
    }
    std::memcpy(yp + o0, m, size_t(n) * sizeof(T));
    if constexpr (WithIdx) std::memcpy(ip + o0, id, size_t(n) * sizeof(int64_t));
  }
  for (int64_t ow = hi; ow < OW; ++ow) scalar(ow);
}

template <class T>
void max_pool_all(const PoolArgs<T>& a) {
  pool_for(a.P * a.OH, a.P * a.H * a.W, [&](int64_t t) {
    if (a.idx) max_pool_row<T, true>(a, t);
    else max_pool_row<T, false>(a, t);
  });
}

// grad_input[p, idx] += grad[p, o]; indices outside the plane (-1: empty window) are skipped.
template <class T>
void max_pool_backward_all(const PoolArgs<T>& a) {
  const int64_t HW = a.H * a.W, O = a.OH * a.OW;
  pool_for(a.P, a.P * (HW + O), [&](int64_t p) {
    T* gi = a.y + p * HW;
    const T* g = a.x + p * O;
    const int64_t* id = a.cidx + p * O;
    std::memset(gi, 0, size_t(HW) * sizeof(T));
    for (int64_t o = 0; o < O; ++o)
      if (id[o] >= 0 && id[o] < HW) gi[id[o]] += g[o];
  });
}

// ---- avg_pool2d -----------------------------------------------------------------------
struct AvgRow {
  int64_t h0, h1, hpool;  // clipped rows [h0, h1); rows in the padded window
};

template <class T>
AvgRow avg_row(const PoolArgs<T>& a, int64_t oh) {
  const int64_t ih0 = oh * a.sH - a.pH, ih1 = std::min(ih0 + a.kH, a.H + a.pH);
  return {std::max<int64_t>(ih0, 0), std::min(ih1, a.H), ih1 - ih0};
}

// Window [w0, w1) in w (clipped) and the divisor of output (row r, column ow); 0: empty.
template <class T>
int64_t avg_col(const PoolArgs<T>& a, const AvgRow& r, int64_t ow, int64_t* w0, int64_t* w1) {
  const int64_t iw0 = ow * a.sW - a.pW, iw1 = std::min(iw0 + a.kW, a.W + a.pW);
  *w0 = std::max<int64_t>(iw0, 0);
  *w1 = std::min(iw1, a.W);
  if (r.h0 >= r.h1 || *w0 >= *w1) return 0;
  if (a.divisor) return a.divisor;
  return a.count_include_pad ? r.hpool * (iw1 - iw0) : (r.h1 - r.h0) * (*w1 - *w0);
}

template <class T>
void avg_pool_all(const PoolArgs<T>& a) {
  pool_for(a.P * a.OH, a.P * a.H * a.W, [&](int64_t task) {
    const int64_t p = task / a.OH, oh = task % a.OH, W = a.W, OW = a.OW, sW = a.sW;
    const T* xp = a.x + p * a.H * W;
    T* yp = a.y + task * OW;
    const AvgRow r = avg_row(a, oh);
    auto scalar = [&](int64_t ow) {
      int64_t w0, w1;
      const int64_t div = avg_col(a, r, ow, &w0, &w1);
      T s = 0;
      for (int64_t ih = r.h0; ih < r.h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) s += xp[ih * W + iw];
      yp[ow] = div ? s / T(div) : T(0);
    };
    int64_t lo, hi;
    interior(OW, W, a.kW, sW, a.pW, 1, &lo, &hi);
    if (r.h0 >= r.h1) lo = hi = OW;
    for (int64_t ow = 0; ow < lo; ++ow) scalar(ow);
    if (lo < hi) {
      int64_t w0, w1;
      const T inv = T(1) / T(avg_col(a, r, lo, &w0, &w1));  // the same for every interior column
      for (int64_t o0 = lo; o0 < hi; o0 += kStripW) {
        const int64_t n = std::min(kStripW, hi - o0);
        T s[kStripW] = {};
        for (int64_t ih = r.h0; ih < r.h1; ++ih)
          for (int64_t kw = 0; kw < a.kW; ++kw) {
            const T* src = xp + ih * W + o0 * sW - a.pW + kw;
            if (sW == 1) {
#pragma omp simd
              for (int64_t j = 0; j < n; ++j) s[j] += src[j];
            } else {
              for (int64_t j = 0; j < n; ++j) s[j] += src[j * sW];
            }
          }
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) yp[o0 + j] = s[j] * inv;
      }
    }
    for (int64_t ow = hi; ow < OW; ++ow) scalar(ow);
  });
}

template <class T>
void avg_pool_backward_all(const PoolArgs<T>& a) {
  const int64_t HW = a.H * a.W, O = a.OH * a.OW, W = a.W;
  pool_for(a.P, a.P * (HW + O), [&](int64_t p) {
    T* gi = a.y + p * HW;
    const T* g = a.x + p * O;
    std::memset(gi, 0, size_t(HW) * sizeof(T));
    for (int64_t oh = 0; oh < a.OH; ++oh) {
      const AvgRow r = avg_row(a, oh);
      for (int64_t ow = 0; ow < a.OW; ++ow) {
        int64_t w0, w1;
        const int64_t div = avg_col(a, r, ow, &w0, &w1);
        if (!div) continue;
        const T v = g[oh * a.OW + ow] / T(div);
        for (int64_t ih = r.h0; ih < r.h1; ++ih) {
          T* row = gi + ih * W;
          for (int64_t iw = w0; iw < w1; ++iw) row[iw] += v;  // short: plain loop
        }
      }
    }
  });
}

// ---- adaptive_avg_pool2d --------------------------------------------------------------
inline int64_t a_start(int64_t o, int64_t O, int64_t I) { return (o * I) / O; }
inline int64_t a_end(int64_t o, int64_t O, int64_t I) { return ((o + 1) * I + O - 1) / O; }

template <class T>
void adaptive_avg_all(const PoolArgs<T>& a) {
  if (a.OH == 1 && a.OW == 1) {  // global average pooling: one contiguous sum per plane
    const int64_t HW = a.H * a.W;
    const T inv = T(1) / T(HW);
    pool_for(a.P, a.P * HW, [&](int64_t p) {
      const T* run = a.x + p * HW;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < HW; ++i) s += run[i];
      a.y[p] = s * inv;
    });
    return;
  }
  pool_for(a.P * a.OH, a.P * a.H * a.W, [&](int64_t task) {
    const int64_t p = task / a.OH, oh = task % a.OH, W = a.W;
    const T* xp = a.x + p * a.H * W;
    T* yp = a.y + task * a.OW;
    const int64_t h0 = a_start(oh, a.OH, a.H), h1 = a_end(oh, a.OH, a.H);
    for (int64_t ow = 0; ow < a.OW; ++ow) {
      const int64_t w0 = a_start(ow, a.OW, W), w1 = a_end(ow, a.OW, W);
      T s = 0;
      if (w0 == 0 && w1 == W) {  // whole rows: one contiguous run (global average pooling)
        const T* run = xp + h0 * W;
        const int64_t len = (h1 - h0) * W;
        if (len >= 16) {
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < len; ++i) s += run[i];
        } else {
          for (int64_t i = 0; i < len; ++i) s += run[i];
        }
      } else {
        for (int64_t ih = h0; ih < h1; ++ih) {
          const T* row = xp + ih * W;
          for (int64_t iw = w0; iw < w1; ++iw) s += row[iw];
        }
      }
      yp[ow] = s / T((h1 - h0) * (w1 - w0));
    }
  });
}

template <class T>
void adaptive_avg_backward_all(const PoolArgs<T>& a) {
  const int64_t HW = a.H * a.W, O = a.OH * a.OW, W = a.W;
  pool_for(a.P, a.P * (HW + O), [&](int64_t p) {
    T* gi = a.y + p * HW;
    const T* g = a.x + p * O;
    std::memset(gi, 0, size_t(HW) * sizeof(T));
    for (int64_t oh = 0; oh < a.OH; ++oh) {
      const int64_t h0 = a_start(oh, a.OH, a.H), h1 = a_end(oh, a.OH, a.H);
      for (int64_t ow = 0; ow < a.OW; ++ow) {
        const int64_t w0 = a_start(ow, a.OW, W), w1 = a_end(ow, a.OW, W);
        const T v = g[oh * a.OW + ow] / T((h1 - h0) * (w1 - w0));
        if (a.OH == 1 && a.OW == 1) {  // global pooling: fill the plane
          const int64_t len = (h1 - h0) * W;
#pragma omp simd
          for (int64_t i = 0; i < len; ++i) gi[i] = v;
          continue;
        }
        for (int64_t ih = h0; ih < h1; ++ih) {
          T* row = gi + ih * W;
          for (int64_t iw = w0; iw < w1; ++iw) row[iw] += v;
        }
      }
    }
  });
}

template <class T>
PoolTable<T> make_pool_table() {
  PoolTable<T> t;
  t.max_pool2d = &max_pool_all<T>;
  t.max_pool2d_backward = &max_pool_backward_all<T>;
  t.avg_pool2d = &avg_pool_all<T>;
  t.avg_pool2d_backward = &avg_pool_backward_all<T>;
  t.adaptive_avg_pool2d = &adaptive_avg_all<T>;
  t.adaptive_avg_pool2d_backward = &adaptive_avg_backward_all<T>;
  return t;
}

}  // namespace
}  // namespace kiln::cpu
