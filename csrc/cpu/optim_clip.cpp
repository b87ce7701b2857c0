// Multi-tensor helpers for gradient clipping (kiln.nn.utils.clip_grad_norm_ / clip_grad_value_):
//   grad_norm(tensors, out, norm_type)   out = || concat(tensors) ||_p, accumulated in float64:
//       p = 2: sqrt(sum x^2);  p = 1: sum |x|;  p = inf: max |x|;  p = -inf: min |x|;
//       p = 0: number of nonzeros;  other p: (sum |x|^p)^(1/p).  NaN anywhere gives NaN.
//       The norm of the concatenation equals PyTorch's norm of the per-tensor norms.
//   grad_scale(tensors, scale)            x *= scale (scale rounded to each tensor's dtype)
//   grad_clamp(tensors, min, max)         x = min(max(x, min), max), NaN stays NaN
// The tensors may have different shapes and dtypes (float32/float64). Work is sliced over
// OpenMP threads across the concatenation of all tensors; each thread's partial result goes
// to its own slot and the slots are combined in thread order, so a fixed thread count gives
// a reproducible norm.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/vecmath.h"

namespace kiln::cpu {
namespace {
using List = std::vector<Arr>;

struct Span {
  void* p;
  int64_t n;
  bool f64;
};

std::vector<Span> gather(const char* op, const List& ts, bool writeable) {
  std::vector<Span> out;
  out.reserve(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    check_float(ts[i], op, name.c_str());
    if (writeable) check_output(ts[i], op, name.c_str());
    else check_input(ts[i], op, name.c_str());
    out.push_back({const_cast<void*>(ts[i].data()), static_cast<int64_t>(ts[i].size()),
                   dtype_of(ts[i]) == DType::f64});
  }
  return out;
}

// f(span, lo, hi) over the concatenation of all spans; `slot` is the OpenMP thread's index.
template <class F>
void for_spans(const std::vector<Span>& sp, F&& f) {
  std::vector<int64_t> start(sp.size() + 1, 0);
  for (size_t i = 0; i < sp.size(); ++i) start[i + 1] = start[i] + sp[i].n;
  if (start.back() == 0) return;
  parallel_chunks(start.back(), [&](int64_t b, int64_t e) {
    const int slot = omp_in_parallel() ? omp_get_thread_num() : 0;
    size_t i = std::upper_bound(start.begin(), start.end(), b) - start.begin() - 1;
    for (; i < sp.size() && start[i] < e; ++i) {
      const int64_t lo = std::max(b, start[i]) - start[i];
      const int64_t hi = std::min(e, start[i + 1]) - start[i];
      if (lo < hi) f(sp[i], lo, hi, slot);
    }
  });
}

enum class Norm { l2, l1, inf, neg_inf, l0, lp };

// Partial accumulation of x[lo, hi) into acc for the given norm (sums in double).
template <class T>
void accumulate(const T* x, int64_t lo, int64_t hi, Norm kind, double p, double& acc,
                bool& nan) {
  double a = 0;
  switch (kind) {
    case Norm::l2:
      for (int64_t i = lo; i < hi; ++i) a += double(x[i]) * double(x[i]);
      acc += a;
      break;
    case Norm::l1:
      for (int64_t i = lo; i < hi; ++i) a += std::abs(double(x[i]));
      acc += a;
      break;
    case Norm::l0:
      for (int64_t i = lo; i < hi; ++i) a += x[i] != T(0);
      acc += a;
      break;
    case Norm::lp:
      for (int64_t i = lo; i < hi; ++i) a += std::pow(std::abs(double(x[i])), p);
      acc += a;
      break;
    case Norm::inf:
      for (int64_t i = lo; i < hi; ++i) {
        const double v = std::abs(double(x[i]));
        nan |= v != v;
        acc = v > acc ? v : acc;
      }
      break;
    case Norm::neg_inf:
      for (int64_t i = lo; i < hi; ++i) {
        const double v = std::abs(double(x[i]));
        nan |= v != v;
        acc = v < acc ? v : acc;
      }
      break;
  }
}

}  // namespace

void grad_norm(const List& tensors, Arr out, double norm_type) {
  const char* op = "grad_norm";
  auto sp = gather(op, tensors, false);
  check_output(out, op, "out");
  if (dtype_of(out) != DType::f64 || out.size() != 1)
    fail_type(std::string(op) + ": " + describe(out, "out") + " must be a 1-element float64 array");
  if (std::isnan(norm_type)) fail_value(std::string(op) + ": norm_type is NaN");
  const double p = norm_type;
  const Norm kind = p == 2 ? Norm::l2
                    : p == 1 ? Norm::l1
                    : p == 0 ? Norm::l0
                    : std::isinf(p) ? (p > 0 ? Norm::inf : Norm::neg_inf)
                                    : Norm::lp;
  const double init = kind == Norm::neg_inf ? std::numeric_limits<double>::infinity() : 0.0;
  const int nt = std::max(1, omp_get_max_threads());
  std::vector<double> acc(nt, init);
  std::vector<char> nan(nt, 0);
  {
    py::gil_scoped_release nogil;
    for_spans(sp, [&](const Span& s, int64_t lo, int64_t hi, int slot) {
      bool n = false;
      if (s.f64) accumulate(static_cast<const double*>(s.p), lo, hi, kind, p, acc[slot], n);
      else accumulate(static_cast<const float*>(s.p), lo, hi, kind, p, acc[slot], n);
      nan[slot] |= n;
    });
  }
  double r = init;
  bool any_nan = false;
  for (int t = 0; t < nt; ++t) {
    any_nan |= nan[t] != 0;
    if (kind == Norm::inf) r = std::max(r, acc[t]);
    else if (kind == Norm::neg_inf) r = std::min(r, acc[t]);
    else r += acc[t];
  }
  bool empty = true;
  for (const Span& s : sp) empty &= s.n == 0;
  if (kind == Norm::neg_inf && empty) r = 0;  // PyTorch: the -inf norm of nothing is 0 here
  if (kind == Norm::l2) r = std::sqrt(r);
  else if (kind == Norm::lp) r = std::pow(r, 1.0 / p);
  if (any_nan) r = std::numeric_limits<double>::quiet_NaN();
  *static_cast<double*>(out.mutable_data()) = r;
}

void grad_scale(const List& tensors, double scale) {
  auto sp = gather("grad_scale", tensors, true);
  py::gil_scoped_release nogil;
  for_spans(sp, [&](const Span& s, int64_t lo, int64_t hi, int) {
    if (s.f64) {
      double* x = static_cast<double*>(s.p);
      for (int64_t i = lo; i < hi; ++i) x[i] *= scale;
    } else {
      float* x = static_cast<float*>(s.p);
      const float c = float(scale);
      for (int64_t i = lo; i < hi; ++i) x[i] *= c;
    }
  });
}

namespace {
template <class T> void clamp_range(T* x, int64_t lo, int64_t hi, T mn, T mx) {
  for (int64_t i = lo; i < hi; ++i) {
    const T v = x[i];
    x[i] = v != v ? v : std::min(std::max(v, mn), mx);
  }
}
}  // namespace

void grad_clamp(const List& tensors, double min, double max) {
  auto sp = gather("grad_clamp", tensors, true);
  py::gil_scoped_release nogil;
  for_spans(sp, [&](const Span& s, int64_t lo, int64_t hi, int) {
    if (s.f64) clamp_range(static_cast<double*>(s.p), lo, hi, min, max);
    else clamp_range(static_cast<float*>(s.p), lo, hi, float(min), float(max));
  });
}

}  // namespace kiln::cpu
