// softmax / log_softmax over one axis of a contiguous N-d array, and their fused backward.
// The array is viewed as (outer, D, inner) with D the softmax axis:
//   softmax      y = exp(x - m) / sum exp(x - m),        m = max over the axis
//   log_softmax  y = (x - m) - log sum exp(x - m)
//   backward     softmax:     gx = y * (g - sum(g * y))
//                log_softmax: gx = g - exp(y) * sum(g)
// Subtracting the max makes every exp <= 1, so logits of +-1e4 are exact; a row of all -inf
// (or any NaN / +inf) gives NaN, as in PyTorch. Sums are accumulated in double.
// inner == 1 (the last axis): each row is contiguous and handled by RowOps (AVX-512 float32
// or portable). inner > 1: strips of up to kStrip columns are processed row by row of the
// axis with per-column state on the stack, so memory is read in contiguous runs and no
// workspace is allocated. Rows / strips are spread over OpenMP threads for large arrays.
#include <cmath>

#include "cpu/kernels.h"
#include "cpu/vecmath.h"

namespace kiln::cpu {
namespace {
constexpr int64_t kStrip = 256;

struct Geometry {
  int64_t outer = 1, D = 1, inner = 1;
};

Geometry check_softmax(const char* op, const Arr& x, const char* xname, const Arr* g,
                       const Arr& out, const char* outname, int dim) {
  check_float(x, op, xname);
  check_input(x, op, xname);
  if (g) {
    check_input(*g, op, "grad");
    check_same_dtype(*g, x, op, "grad", xname);
    check_same_shape(*g, x, op, "grad", xname);
  }
  check_same_dtype(x, out, op, xname, outname);
  check_same_shape(x, out, op, xname, outname);
  check_output(out, op, outname);
  const int nd = static_cast<int>(x.ndim());
  const int lim = nd == 0 ? 1 : nd;  // a 0-d array is one row of one element (PyTorch)
  if (dim < -lim || dim >= lim)
    fail_index(std::string(op) + ": dim " + std::to_string(dim) + " is out of range for " +
               describe(x, xname));
  if (dim < 0) dim += lim;
  Geometry geo;
  for (int i = 0; i < nd; ++i) {
    if (i < dim) geo.outer *= x.shape(i);
    else if (i == dim) geo.D = x.shape(i);
    else geo.inner *= x.shape(i);
  }
  return geo;
}

// f(task) for task in [0, ntasks), threaded when the whole array is large enough.
template <class F>
void for_tasks(int64_t ntasks, int64_t total, F&& f) {
  if (total < kParallelGrain || ntasks < 2 || omp_get_max_threads() == 1) {
    for (int64_t t = 0; t < ntasks; ++t) f(t);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < ntasks; ++t) f(t);
}

template <class T, class Ops, bool Log>
void forward(const T* x, T* y, Geometry geo) {
  const int64_t D = geo.D, inner = geo.inner;
  if (inner == 1) {
    for_tasks(geo.outer, geo.outer * D, [&](int64_t o) {
      const T* xr = x + o * D;
      T* yr = y + o * D;
      const T m = Ops::max(xr, D);
      if constexpr (Log) {
        const T ls = T(std::log(Ops::exp_sum(xr, nullptr, D, m)));
        Ops::sub2(xr, yr, D, m, ls);  // (x - m) first: exact near the max, even for 1e4 logits
      } else {
        const double s = Ops::exp_sum(xr, yr, D, m);
        Ops::scale(yr, D, T(1.0 / s));
      }
    });
    return;
  }
  const int64_t nstrip = (inner + kStrip - 1) / kStrip;
  for_tasks(geo.outer * nstrip, geo.outer * D * inner, [&](int64_t task) {
    const int64_t o = task / nstrip, j0 = (task % nstrip) * kStrip;
    const int64_t w = std::min(kStrip, inner - j0);
    const T* xb = x + o * D * inner + j0;
    T* yb = y + o * D * inner + j0;
    T m[kStrip];
    double s[kStrip];
    for (int64_t j = 0; j < w; ++j) m[j] = -std::numeric_limits<T>::infinity(), s[j] = 0;
    for (int64_t d = 0; d < D; ++d) Ops::cols_max(xb + d * inner, m, w);
    for (int64_t d = 0; d < D; ++d) Ops::cols_exp_sum(xb + d * inner, Log ? nullptr : yb + d * inner, m, s, w);
    T c[kStrip];  // log: log-sum; softmax: 1 / sum
    for (int64_t j = 0; j < w; ++j) c[j] = Log ? T(std::log(s[j])) : T(1.0 / s[j]);
    for (int64_t d = 0; d < D; ++d) {
      const T* xr = xb + d * inner;
      T* yr = yb + d * inner;
      if constexpr (Log) {
        for (int64_t j = 0; j < w; ++j) yr[j] = (xr[j] - m[j]) - c[j];
      } else {
        for (int64_t j = 0; j < w; ++j) yr[j] *= c[j];
      }
    }
  });
}

template <class T, class Ops, bool Log>
void backward(const T* g, const T* y, T* gx, Geometry geo) {
  const int64_t D = geo.D, inner = geo.inner;
  if (inner == 1) {
    for_tasks(geo.outer, geo.outer * D, [&](int64_t o) {
      const int64_t off = o * D;
      if constexpr (Log) Ops::sub_exp_scale(g + off, y + off, gx + off, D, T(Ops::sum(g + off, D)));
      else Ops::sub_mul(g + off, y + off, gx + off, D, T(Ops::dot(g + off, y + off, D)));
    });
    return;
  }
  const int64_t nstrip = (inner + kStrip - 1) / kStrip;
  for_tasks(geo.outer * nstrip, geo.outer * D * inner, [&](int64_t task) {
    const int64_t o = task / nstrip, j0 = (task % nstrip) * kStrip;
    const int64_t w = std::min(kStrip, inner - j0), base = o * D * inner + j0;
    double acc[kStrip];
    for (int64_t j = 0; j < w; ++j) acc[j] = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T* gr = g + base + d * inner;
      const T* yr = y + base + d * inner;
      if constexpr (Log) {
        for (int64_t j = 0; j < w; ++j) acc[j] += gr[j];
      } else {
        for (int64_t j = 0; j < w; ++j) acc[j] += double(gr[j]) * double(yr[j]);
      }
    }
    T c[kStrip];
    for (int64_t j = 0; j < w; ++j) c[j] = T(acc[j]);
    for (int64_t d = 0; d < D; ++d) {
      const int64_t off = base + d * inner;
      if constexpr (Log) {
        Ops::cols_sub_exp_scale(g + off, y + off, gx + off, c, w);
      } else {
        for (int64_t j = 0; j < w; ++j) gx[off + j] = y[off + j] * (g[off + j] - c[j]);
      }
    }
  });
}

template <bool Log>
void run_forward(const char* op, const Arr& x, Arr& out, int dim) {
  const Geometry geo = check_softmax(op, x, "x", nullptr, out, "out", dim);
  if (x.size() == 0) return;
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    const T* xp = cdata<T>(x);
    T* yp = data<T>(out);
    py::gil_scoped_release nogil;
    with_row_ops<T>([&](auto ops) { forward<T, decltype(ops), Log>(xp, yp, geo); });
  });
}

template <bool Log>
void run_backward(const char* op, const Arr& grad, const Arr& y, Arr& gi, int dim) {
  const Geometry geo = check_softmax(op, y, "y", &grad, gi, "grad_input", dim);
  if (y.size() == 0) return;
  dispatch_float(y, op, "y", [&](auto t) {
    using T = decltype(t);
    const T* gp = cdata<T>(grad);
    const T* yp = cdata<T>(y);
    T* op_ = data<T>(gi);
    py::gil_scoped_release nogil;
    with_row_ops<T>([&](auto ops) { backward<T, decltype(ops), Log>(gp, yp, op_, geo); });
  });
}
}  // namespace

void softmax(const Arr& x, Arr out, int dim) { run_forward<false>("softmax", x, out, dim); }
void log_softmax(const Arr& x, Arr out, int dim) { run_forward<true>("log_softmax", x, out, dim); }
void softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim) {
  run_backward<false>("softmax_backward", grad, y, grad_input, dim);
}
void log_softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim) {
  run_backward<true>("log_softmax_backward", grad, y, grad_input, dim);
}

}  // namespace kiln::cpu
