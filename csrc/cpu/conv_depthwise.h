// Direct depthwise convolution (groups == C: one input channel per group,
// Co = m*C output channels, output channel co reads input channel co / m).
// There is no GEMM shape here (K = kh*kw, M = 1 per group), so each
// (image, channel) plane is convolved directly:
//   forward  out[n,co,oh,ow] = b[co] + sum_{i,j} w[co,i,j] * P[oh*sh + i*dh][ow*sw + j*dw]
//   dgrad    Pg[oh*sh + i*dh][ow*sw + j*dw] += w[co,i,j] * gy[n,co,oh,ow], gx = crop(Pg)
//   wgrad    gw[co,i,j] = sum_{n,oh,ow} gy[n,co,oh,ow] * P[oh*sh + i*dh][ow*sw + j*dw]
// where P is the input plane copied into a zero-padded per-thread buffer of
// exactly the rows / columns the output reads ((Ho-1)*sh + (kh-1)*dh + 1 by
// (Wo-1)*sw + (kw-1)*dw + 1), so the inner loops have no bounds tests and
// asymmetric padding costs nothing extra.
//
// Written once as plain loops that the compiler vectorizes over ow, and
// compiled per ISA: conv_depthwise.cpp (baseline), conv_depthwise_avx2.cpp,
// conv_depthwise_avx512.cpp. As in gemm_driver.h, everything is in an anonymous
// namespace so each translation unit keeps its own copy built with its flags.
//
// Threads: forward and dgrad split the (image, input channel) planes; wgrad
// splits the input channels (each thread owns its channels' weight gradient
// across the whole batch, so no reduction is needed).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "cpu/conv.h"

namespace kiln::cpu::conv {
namespace {

struct Plane {
  int64_t Hp, Wp;
};
inline Plane plane_of(const Geom& g) {
  return {(g.Ho - 1) * g.sh + (g.kh - 1) * g.dh + 1, (g.Wo - 1) * g.sw + (g.kw - 1) * g.dw + 1};
}

// P[r][c] = x[r - ph][c - pw], 0 outside the image. Plain loops, not
// memcpy / memset: the rows are short (18 elements for a 16-wide plane) and a
// library call per row would cost more than the copy.
template <class T>
void fill_plane(const T* x, const Geom& g, Plane pl, T* P) {
  const int64_t c0 = std::max<int64_t>(0, g.pw), c1 = std::min(pl.Wp, g.W + g.pw);
  for (int64_t r = 0; r < pl.Hp; ++r) {
    T* __restrict row = P + r * pl.Wp;
    const int64_t ih = r - g.ph;
    if (ih < 0 || ih >= g.H || c0 >= c1) {
      for (int64_t c = 0; c < pl.Wp; ++c) row[c] = T(0);
      continue;
    }
    const T* __restrict src = x + ih * g.W + (c0 - g.pw);
    for (int64_t c = 0; c < c0; ++c) row[c] = T(0);
    for (int64_t c = 0; c < c1 - c0; ++c) row[c0 + c] = src[c];
    for (int64_t c = c1; c < pl.Wp; ++c) row[c] = T(0);
  }
}

// f(task, P) for task in [0, ntasks), threaded when the work is large enough;
// P is the calling thread's plane buffer.
template <class T, class F>
bool for_planes(int64_t ntasks, double work, std::size_t plane_bytes, F&& f) {
  int failed = 0;
  const int most = omp_get_max_threads();
  const int nt = (most > 1 && ntasks > 1 && work > 2e5) ? int(std::min<int64_t>(most, ntasks)) : 1;
  auto body = [&](int tid, int team) {
    T* P = static_cast<T*>(workspace(0, plane_bytes));
    if (!P) {
#pragma omp atomic write
      failed = 1;
      return;
    }
    const int64_t per = (ntasks + team - 1) / team;
    const int64_t t0 = std::min<int64_t>(ntasks, tid * per), t1 = std::min(ntasks, t0 + per);
    for (int64_t t = t0; t < t1; ++t) f(t, P);
  };
  if (nt == 1) {
    body(0, 1);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
  }
  return !failed;
}

// One output plane from the padded input plane. KH/KW > 0: the kernel size is
// a compile-time constant and the taps are unrolled inside the ow loop, which
// keeps the accumulator in a register; 0: run-time sizes.
template <int KH, int KW, class T>
void dw_plane_fwd(const T* P, Plane pl, const T* w, T bias, T* o, const Geom& g) {
  const int64_t kh = KH ? KH : g.kh, kw = KW ? KW : g.kw, Wo = g.Wo, sw = g.sw;
  const int64_t dh = g.dh, dw = g.dw;
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    const T* base = P + oh * g.sh * pl.Wp;
    T* __restrict orow = o + oh * Wo;
    if (KH && KW && sw == 1) {
      for (int64_t ow = 0; ow < Wo; ++ow) {
        T acc = bias;
#pragma GCC unroll 16
        for (int i = 0; i < KH; ++i)
#pragma GCC unroll 16
          for (int j = 0; j < KW; ++j) acc += w[i * KW + j] * base[i * dh * pl.Wp + j * dw + ow];
        orow[ow] = acc;
      }
      continue;
    }
    for (int64_t ow = 0; ow < Wo; ++ow) orow[ow] = bias;
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) {
        const T wv = w[i * kw + j];
        const T* __restrict s = base + i * dh * pl.Wp + j * dw;
        if (sw == 1)
          for (int64_t ow = 0; ow < Wo; ++ow) orow[ow] += wv * s[ow];
        else
          for (int64_t ow = 0; ow < Wo; ++ow) orow[ow] += wv * s[ow * sw];
      }
  }
}

template <class T>
void dw_forward(const DwArgs<T>& a) {
  const Geom& g = a.g;
  const Plane pl = plane_of(g);
  const int64_t m = g.Co / g.C, taps = g.kh * g.kw;
  const bool ok = for_planes<T>(g.N * g.C, g.flops(), sizeof(T) * pl.Hp * pl.Wp,
                                [&](int64_t t, T* P) {
    const int64_t n = t / g.C, c = t % g.C;
    fill_plane(a.x + t * g.HW(), g, pl, P);
    for (int64_t mi = 0; mi < m; ++mi) {
      const int64_t co = c * m + mi;
      const T* w = a.w + co * taps;
      const T b = a.gy ? a.gy[co] : T(0);  // forward: gy carries the bias
      T* o = a.out + (n * g.Co + co) * g.HWo();
      if (g.kh == 3 && g.kw == 3)
        dw_plane_fwd<3, 3>(P, pl, w, b, o, g);
      else if (g.kh == 5 && g.kw == 5)
        dw_plane_fwd<5, 5>(P, pl, w, b, o, g);
      else
        dw_plane_fwd<0, 0>(P, pl, w, b, o, g);
    }
  });
  if (!ok) throw std::bad_alloc();
}

// Input gradient. Stride 1 and one output channel per input channel (the
// usual depthwise layer): gx is the forward convolution of gy, zero-padded by
// dilation*(k-1) - padding, with the kernel flipped -- the fast forward loop.
// Otherwise: scatter-add each gy element's taps into a padded plane, then crop.
template <class T>
void dw_dgrad(const DwArgs<T>& a) {
  const Geom& g = a.g;
  const int64_t m = g.Co / g.C, taps = g.kh * g.kw, Wo = g.Wo, sw = g.sw;
  constexpr int64_t kMaxTaps = 64;
  if (g.sh == 1 && g.sw == 1 && m == 1 && taps <= kMaxTaps) {
    // the gather geometry: input gy (Ho x Wo), output gx (H x W), flipped kernel
    Geom t = g;
    t.H = g.Ho;
    t.W = g.Wo;
    t.Ho = g.H;
    t.Wo = g.W;
    t.ph = g.dh * (g.kh - 1) - g.ph;
    t.pw = g.dw * (g.kw - 1) - g.pw;
    const Plane pl = plane_of(t);
    const bool ok = for_planes<T>(g.N * g.C, g.flops(), sizeof(T) * pl.Hp * pl.Wp,
                                  [&](int64_t task, T* P) {
      const int64_t c = task % g.C;
      T wf[kMaxTaps];
      for (int64_t k = 0; k < taps; ++k) wf[k] = a.w[c * taps + taps - 1 - k];
      fill_plane(a.gy + task * g.HWo(), t, pl, P);
      T* gx = a.out + task * g.HW();
      if (g.kh == 3 && g.kw == 3)
        dw_plane_fwd<3, 3>(P, pl, wf, T(0), gx, t);
      else if (g.kh == 5 && g.kw == 5)
        dw_plane_fwd<5, 5>(P, pl, wf, T(0), gx, t);
      else
        dw_plane_fwd<0, 0>(P, pl, wf, T(0), gx, t);
    });
    if (!ok) throw std::bad_alloc();
    return;
  }
  const Plane pl = plane_of(g);
  const bool ok = for_planes<T>(g.N * g.C, g.flops(), sizeof(T) * pl.Hp * pl.Wp,
                                [&](int64_t t, T* P) {
    const int64_t n = t / g.C, c = t % g.C;
    std::memset(P, 0, sizeof(T) * pl.Hp * pl.Wp);
    for (int64_t mi = 0; mi < m; ++mi) {
      const int64_t co = c * m + mi;
      const T* w = a.w + co * taps;
      const T* gy = a.gy + (n * g.Co + co) * g.HWo();
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        const T* __restrict gr = gy + oh * Wo;
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j) {
            const T wv = w[i * g.kw + j];
            T* __restrict d = P + (oh * g.sh + i * g.dh) * pl.Wp + j * g.dw;
            if (sw == 1)
              for (int64_t ow = 0; ow < Wo; ++ow) d[ow] += wv * gr[ow];
            else
              for (int64_t ow = 0; ow < Wo; ++ow) d[ow * sw] += wv * gr[ow];
          }
      }
    }
    // crop: gx[ih][iw] = P[ih + ph][iw + pw] where that lies in P, else 0
    T* gx = a.out + t * g.HW();
    const int64_t iw0 = std::max<int64_t>(0, -g.pw), iw1 = std::min(g.W, pl.Wp - g.pw);
    for (int64_t ih = 0; ih < g.H; ++ih) {
      T* row = gx + ih * g.W;
      const int64_t r = ih + g.ph;
      if (r < 0 || r >= pl.Hp || iw0 >= iw1) {
        std::memset(row, 0, sizeof(T) * g.W);
        continue;
      }
      for (int64_t iw = 0; iw < iw0; ++iw) row[iw] = T(0);
      std::memcpy(row + iw0, P + r * pl.Wp + iw0 + g.pw, sizeof(T) * (iw1 - iw0));
      for (int64_t iw = iw1; iw < g.W; ++iw) row[iw] = T(0);
    }
  });
  if (!ok) throw std::bad_alloc();
}

// 16 partial sums per tap: acc[k] += sum_ow gy[ow] * s[ow*sw], lanes k = ow % 16.
template <class T>
inline void dot_lanes(const T* __restrict gy, const T* __restrict s, int64_t n, int64_t sw,
                      T* __restrict acc) {
  int64_t ow = 0;
  if (sw == 1) {
    for (; ow + 16 <= n; ow += 16)
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) acc[k] += gy[ow + k] * s[ow + k];
  } else {
    for (; ow + 16 <= n; ow += 16)
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) acc[k] += gy[ow + k] * s[(ow + k) * sw];
  }
  for (; ow < n; ++ow) acc[ow - (ow / 16) * 16] += gy[ow] * s[ow * sw];
}

// All KH x KW taps of one (image, channel) plane at once: each gy row chunk of
// 16 is loaded once and multiplied into KH*KW lane accumulators (stride 1,
// compile-time kernel size), instead of one pass over the plane per tap.
template <int KH, int KW, class T>
void dw_wgrad_plane(const T* P, Plane pl, const T* gy, const Geom& g, T* L) {
  const int64_t Wo = g.Wo, dh = g.dh, dw = g.dw;
  for (int64_t ow0 = 0; ow0 < Wo; ow0 += 16) {
    const int64_t nw = std::min<int64_t>(16, Wo - ow0);
    T acc[KH * KW][16] = {};
    if (nw == 16) {
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        const T* __restrict gr = gy + oh * Wo + ow0;
        const T* __restrict base = P + oh * g.sh * pl.Wp + ow0;
#pragma GCC unroll 25
        for (int t = 0; t < KH * KW; ++t) {
          const T* __restrict s = base + (t / KW) * dh * pl.Wp + (t % KW) * dw;
#pragma GCC unroll 16
          for (int k = 0; k < 16; ++k) acc[t][k] += gr[k] * s[k];
        }
      }
    } else {
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        const T* gr = gy + oh * Wo + ow0;
        const T* base = P + oh * g.sh * pl.Wp + ow0;
        for (int t = 0; t < KH * KW; ++t) {
          const T* s = base + (t / KW) * dh * pl.Wp + (t % KW) * dw;
          for (int64_t k = 0; k < nw; ++k) acc[t][k] += gr[k] * s[k];
        }
      }
    }
    for (int t = 0; t < KH * KW; ++t)
      for (int k = 0; k < 16; ++k) L[t * 16 + k] += acc[t][k];
  }
}

template <class T>
void dw_wgrad(const DwArgs<T>& a) {
  const Geom& g = a.g;
  const Plane pl = plane_of(g);
  const int64_t m = g.Co / g.C, taps = g.kh * g.kw, Wo = g.Wo;
  // per thread: the plane, then (taps + 1) x 16 lane sums for one output channel
  const std::size_t pbytes = sizeof(T) * (pl.Hp * pl.Wp + m * (taps + 1) * 16);
  const bool ok = for_planes<T>(g.C, g.flops(), pbytes, [&](int64_t c, T* P) {
    T* lanes = P + pl.Hp * pl.Wp;  // (m, taps + 1, 16)
    std::memset(lanes, 0, sizeof(T) * m * (taps + 1) * 16);
    for (int64_t n = 0; n < g.N; ++n) {
      fill_plane(a.x + (n * g.C + c) * g.HW(), g, pl, P);
      for (int64_t mi = 0; mi < m; ++mi) {
        const int64_t co = c * m + mi;
        const T* gy = a.gy + (n * g.Co + co) * g.HWo();
        T* L = lanes + mi * (taps + 1) * 16;
        if (g.sw == 1 && g.kh == 3 && g.kw == 3) {
          dw_wgrad_plane<3, 3>(P, pl, gy, g, L);
        } else if (g.sw == 1 && g.kh == 5 && g.kw == 5) {
          dw_wgrad_plane<5, 5>(P, pl, gy, g, L);
        } else {
          // tap by tap over the whole plane: the 16 lane sums stay in registers
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              T acc[16] = {};
              for (int64_t oh = 0; oh < g.Ho; ++oh)
                dot_lanes(gy + oh * Wo, P + (oh * g.sh + i * g.dh) * pl.Wp + j * g.dw, Wo, g.sw,
                          acc);
              T* Lt = L + (i * g.kw + j) * 16;
              for (int k = 0; k < 16; ++k) Lt[k] += acc[k];
            }
        }
        for (int64_t oh = 0; a.gb && oh < g.Ho; ++oh) {  // bias: lane sums of gy
          const T* gr = gy + oh * Wo;
          T* lb = L + taps * 16;
          int64_t ow = 0;
          for (; ow + 16 <= Wo; ow += 16)
            for (int k = 0; k < 16; ++k) lb[k] += gr[ow + k];
          for (; ow < Wo; ++ow) lb[ow % 16] += gr[ow];
        }
      }
    }
    for (int64_t mi = 0; mi < m; ++mi) {
      const int64_t co = c * m + mi;
      const T* L = lanes + mi * (taps + 1) * 16;
      for (int64_t t = 0; t <= taps; ++t) {
        T s = T(0);
        for (int k = 0; k < 16; ++k) s += L[t * 16 + k];
        if (t < taps)
          a.out[co * taps + t] = s;
        else if (a.gb)
          a.gb[co] = s;
      }
    }
  });
  if (!ok) throw std::bad_alloc();
}

}  // namespace
}  // namespace kiln::cpu::conv
