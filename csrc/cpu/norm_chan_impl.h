// batch_norm and group_norm loops (x viewed as (N, C, S)), and the per-ISA kernel table;
// compiled per ISA like norm_impl.h (internal linkage). Math as in norm_impl.h, with
//   batch_norm: statistics per channel c over its M = N * S elements; y = (x - mean) a + b,
//     a = w * rstd; training also updates running_mean / running_var in place with the
//     momentum and the unbiased variance var * M / (M - 1) (PyTorch); eval uses the running
//     statistics and its backward is gx = g * w * rstd.
//   group_norm: statistics per (n, group) over its C / G * S contiguous elements, affine per
//     channel. Backward sums per (n, c) first (dxs = sum g (x - mean), db = sum g), then
//     gx per group and gw[c] = sum_n rstd dxs, gb[c] = sum_n db in a fixed order.
// Channels (batch_norm) or groups (group_norm) are spread over threads; each reduction runs on
// one thread in a fixed order, so results do not depend on the thread count.
#pragma once
#include "cpu/norm_impl.h"

namespace kiln::cpu {
namespace {
constexpr int64_t kColBlock = 64;  // batch_norm on (N, C): channels per task

// ---- batch_norm -----------------------------------------------------------------------
template <class T>
void bn_stats_update(const ChanArgs<T>& a, int64_t c, double m, double var) {
  const int64_t M = a.N * a.S;
  a.mean[c] = T(m);
  a.rstd[c] = T(1.0 / std::sqrt(var + a.eps));
  if (a.running_mean) a.running_mean[c] = T((1.0 - a.momentum) * a.running_mean[c] + a.momentum * m);
  if (a.running_var)
    a.running_var[c] = T((1.0 - a.momentum) * a.running_var[c] +
                         a.momentum * var * double(M) / double(M - 1));
}

template <class T>
void bn_eval_stats(const ChanArgs<T>& a, int64_t c) {
  a.mean[c] = a.running_mean[c];
  a.rstd[c] = T(1.0 / std::sqrt(double(a.running_var[c]) + a.eps));
}

template <class T>
void batch_norm_all(const ChanArgs<T>& a) {
  const int64_t N = a.N, C = a.C, S = a.S, M = N * S;
  if (S > 1) {
    par_for(C, N * C * S, [&](int64_t c) {
      if (a.training) {
        double s = 0, q = 0;
        for (int64_t n = 0; n < N; ++n) s += sum_of(a.x + (n * C + c) * S, S);
        const double m = s / double(M);
        for (int64_t n = 0; n < N; ++n) q += sqdev_of(a.x + (n * C + c) * S, S, m);
        bn_stats_update(a, c, m, q / double(M));
      } else {
        bn_eval_stats(a, c);
      }
      const T sc = a.rstd[c] * (a.w ? a.w[c] : T(1));
      const T sh = a.b ? a.b[c] : T(0), m = a.mean[c];
      for (int64_t n = 0; n < N; ++n) {
        const T* x = a.x + (n * C + c) * S;
        T* y = a.y + (n * C + c) * S;
#pragma omp simd
        for (int64_t i = 0; i < S; ++i) y[i] = (x[i] - m) * sc + sh;
      }
    });
    return;
  }
  // (N, C): a task owns a block of channels and walks the rows, vectorised along C
  const int64_t nblk = (C + kColBlock - 1) / kColBlock;
  par_for(nblk, N * C, [&](int64_t blk) {
    const int64_t c0 = blk * kColBlock, w = std::min(kColBlock, C - c0);
    T sc[kColBlock], sh[kColBlock];
    if (a.training) {
      double s[kColBlock] = {}, q[kColBlock] = {}, m[kColBlock];
      for (int64_t n = 0; n < N; ++n) {
        const T* x = a.x + n * C + c0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) s[j] += double(x[j]);
      }
      for (int64_t j = 0; j < w; ++j) m[j] = s[j] / double(M);
      for (int64_t n = 0; n < N; ++n) {
        const T* x = a.x + n * C + c0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) {
          const double d = double(x[j]) - m[j];
          q[j] += d * d;
        }
      }
      for (int64_t j = 0; j < w; ++j) bn_stats_update(a, c0 + j, m[j], q[j] / double(M));
    } else {
      for (int64_t j = 0; j < w; ++j) bn_eval_stats(a, c0 + j);
    }
    T mm[kColBlock];
    for (int64_t j = 0; j < w; ++j) {
      sc[j] = a.rstd[c0 + j] * (a.w ? a.w[c0 + j] : T(1));
      sh[j] = a.b ? a.b[c0 + j] : T(0);
      mm[j] = a.mean[c0 + j];
    }
    for (int64_t n = 0; n < N; ++n) {
      const T* x = a.x + n * C + c0;
      T* y = a.y + n * C + c0;
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) y[j] = (x[j] - mm[j]) * sc[j] + sh[j];
    }
  });
}

// gx = k * (g - sg / M - (x - m) * rstd^2 * sgx / M) in training (k = w * rstd), k * g in eval.
template <class T>
void batch_norm_backward_all(const ChanBwdArgs<T>& a) {
  const int64_t N = a.N, C = a.C, S = a.S, M = N * S;
  auto finish = [&](int64_t c, double sg, double sgx, T* k, T* a1, T* a2) {
    const T rs = a.rstd[c];
    if (a.gw) a.gw[c] = T(sgx * double(rs));
    if (a.gb) a.gb[c] = T(sg);
    *k = rs * (a.w ? a.w[c] : T(1));
    *a1 = a.training ? T(sg / double(M)) : T(0);
    *a2 = a.training ? T(double(rs) * double(rs) * sgx / double(M)) : T(0);
  };
  if (S > 1) {
    par_for(C, N * C * S, [&](int64_t c) {
      const T m = a.mean[c];
      double sg = 0, sgx = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* g = a.g + (n * C + c) * S;
        const T* x = a.x + (n * C + c) * S;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t i = 0; i < S; ++i) {
          sg += double(g[i]);
          sgx += double(g[i]) * double(x[i] - m);
        }
      }
      T k, a1, a2;
      finish(c, sg, sgx, &k, &a1, &a2);
      if (!a.gx) return;
      for (int64_t n = 0; n < N; ++n) {
        const T* g = a.g + (n * C + c) * S;
        const T* x = a.x + (n * C + c) * S;
        T* gx = a.gx + (n * C + c) * S;
#pragma omp simd
        for (int64_t i = 0; i < S; ++i) gx[i] = k * (g[i] - a1 - (x[i] - m) * a2);
      }
    });
    return;
  }
  const int64_t nblk = (C + kColBlock - 1) / kColBlock;
  par_for(nblk, N * C, [&](int64_t blk) {
    const int64_t c0 = blk * kColBlock, w = std::min(kColBlock, C - c0);
    double sg[kColBlock] = {}, sgx[kColBlock] = {};
    T m[kColBlock], k[kColBlock], a1[kColBlock], a2[kColBlock];
    for (int64_t j = 0; j < w; ++j) m[j] = a.mean[c0 + j];
    for (int64_t n = 0; n < N; ++n) {
      const T* g = a.g + n * C + c0;
      const T* x = a.x + n * C + c0;
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) {
        sg[j] += double(g[j]);
        sgx[j] += double(g[j]) * double(x[j] - m[j]);
      }
    }
    for (int64_t j = 0; j < w; ++j) finish(c0 + j, sg[j], sgx[j], &k[j], &a1[j], &a2[j]);
    if (!a.gx) return;
    for (int64_t n = 0; n < N; ++n) {
      const T* g = a.g + n * C + c0;
      const T* x = a.x + n * C + c0;
      T* gx = a.gx + n * C + c0;
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) gx[j] = k[j] * (g[j] - a1[j] - (x[j] - m[j]) * a2[j]);
    }
  });
}

// ---- group_norm -----------------------------------------------------------------------
template <class T>
void group_norm_all(const ChanArgs<T>& a) {
  const int64_t N = a.N, C = a.C, S = a.S, G = a.G, Cg = C / G, L = Cg * S;
  par_for(N * G, N * C * S, [&](int64_t r) {
    const int64_t grp = r % G;
    const T* x = a.x + r * L;
    T* y = a.y + r * L;
    const double m = sum_of(x, L) / double(L);
    const double var = sqdev_of(x, L, m) / double(L);
    const T rs = T(1.0 / std::sqrt(var + a.eps)), mt = T(m);
    a.mean[r] = mt;
    a.rstd[r] = rs;
    for (int64_t j = 0; j < Cg; ++j) {
      const int64_t c = grp * Cg + j;
      const T sc = rs * (a.w ? a.w[c] : T(1));
      const T sh = a.b ? a.b[c] : T(0);
      const T* xs = x + j * S;
      T* ys = y + j * S;
#pragma omp simd
      for (int64_t i = 0; i < S; ++i) ys[i] = (xs[i] - mt) * sc + sh;  // exact 0 at the mean
    }
  });
}

template <class T>
void group_norm_backward_all(const ChanBwdArgs<T>& a) {
  const int64_t N = a.N, C = a.C, S = a.S, G = a.G, Cg = C / G, L = Cg * S;
  double* db = a.work;         // (N, C): sum_s g
  double* dxs = a.work + N * C;  // (N, C): sum_s g (x - mean)
  par_for(N * G, N * C * S, [&](int64_t r) {
    const int64_t n = r / G, grp = r % G;
    const T m = a.mean[r], rs = a.rstd[r];
    double sgy = 0, sgyx = 0;
    for (int64_t j = 0; j < Cg; ++j) {
      const int64_t c = grp * Cg + j;
      const T* g = a.g + r * L + j * S;
      const T* x = a.x + r * L + j * S;
      double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t i = 0; i < S; ++i) {
        s1 += double(g[i]);
        s2 += double(g[i]) * double(x[i] - m);
      }
      db[n * C + c] = s1;
      dxs[n * C + c] = s2;
      const double wc = a.w ? double(a.w[c]) : 1.0;
      sgy += wc * s1;
      sgyx += wc * s2;
    }
    if (!a.gx) return;
    const T c1 = T(sgy / double(L)), c2 = T(double(rs) * double(rs) * sgyx / double(L));
    for (int64_t j = 0; j < Cg; ++j) {
      const int64_t c = grp * Cg + j;
      const T wc = a.w ? a.w[c] : T(1);
      const T* g = a.g + r * L + j * S;
      const T* x = a.x + r * L + j * S;
      T* gx = a.gx + r * L + j * S;
#pragma omp simd
      for (int64_t i = 0; i < S; ++i) gx[i] = rs * (g[i] * wc - c1 - (x[i] - m) * c2);
    }
  });
  if (!a.gw && !a.gb) return;
  for (int64_t c = 0; c < C; ++c) {
    double sw = 0, sb = 0;
    for (int64_t n = 0; n < N; ++n) {
      sw += double(a.rstd[n * G + c / Cg]) * dxs[n * C + c];
      sb += db[n * C + c];
    }
    if (a.gw) a.gw[c] = T(sw);
    if (a.gb) a.gb[c] = T(sb);
  }
}

template <class T>
NormTable<T> make_norm_table() {
  NormTable<T> t;
  t.layer_norm = &layer_norm_rows<T>;
  t.layer_norm_backward = &layer_norm_backward_rows<T>;
  t.batch_norm = &batch_norm_all<T>;
  t.batch_norm_backward = &batch_norm_backward_all<T>;
  t.group_norm = &group_norm_all<T>;
  t.group_norm_backward = &group_norm_backward_all<T>;
  t.dropout = &dropout_all<T>;
  return t;
}

}  // namespace
}  // namespace kiln::cpu
