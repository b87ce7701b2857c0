// Fused cross-entropy from logits (N, C), forward and backward, with PyTorch's
// F.cross_entropy semantics. Per row i, lse_i = log sum_c exp(x_ic) (max-subtracted), and
// with eps = label_smoothing and w_c the class weight (1 without weight):
//   class-index target y_i (int64), rows with y_i == ignore_index contribute nothing:
//     l_i = (1 - eps) w_{y_i} (lse_i - x_{i,y_i}) + (eps / C) sum_c w_c (lse_i - x_ic)
//     mean = sum_i l_i / sum_{i not ignored} w_{y_i}      (0/0 = NaN when every row is ignored)
//   probability target t_ic (float, same shape as logits), t' = (1 - eps) t + eps / C:
//     l_i = sum_c w_c t'_ic (lse_i - x_ic)                 mean = sum_i l_i / N
//   sum = sum_i l_i;  none = (l_i).
// Gradient (p_ic = exp(x_ic - lse_i), a_i = d loss / d l_i: grad[i], grad, or grad / denom):
//   class:  d l_i / d x_ic = p_ic ((1 - eps) w_y + (eps / C) sum_k w_k) - (1 - eps) w_y [c = y]
//                            - (eps / C) w_c
//   prob:   d l_i / d x_ic = p_ic sum_k w_k t'_ik - w_c t'_ic
// lse is written by the forward and reused by the backward. Row sums and the reductions are
// accumulated in double; rows are spread over OpenMP threads for large inputs.
#include <cmath>
#include <limits>

#include "cpu/kernels.h"
#include "cpu/vecmath.h"

namespace kiln::cpu {
namespace {
enum class Reduction { none, mean, sum };

struct CeShape {
  int64_t N = 0, C = 0;
  bool prob = false;
  Reduction red = Reduction::mean;
};

Reduction parse_reduction(const char* op, const std::string& r) {
  if (r == "none") return Reduction::none;
  if (r == "mean") return Reduction::mean;
  if (r == "sum") return Reduction::sum;
  fail_value(std::string(op) + ": reduction must be 'none', 'mean' or 'sum', got '" + r + "'");
}

std::string shape_of(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  size_t k = 0;
  for (int64_t d : dims) s += (k++ ? ", " : "") + std::to_string(d);
  return s + (dims.size() == 1 ? ",)" : ")");
}

bool has_shape(const Arr& a, std::initializer_list<int64_t> dims) {
  if (a.ndim() != static_cast<py::ssize_t>(dims.size())) return false;
  py::ssize_t i = 0;
  for (int64_t d : dims)
    if (a.shape(i++) != d) return false;
  return true;
}

// Checks shared by forward and backward; `loss_like` is loss (forward) or grad_loss (backward).
CeShape check_ce(const char* op, const Arr& logits, const Arr& target, const OptArr& weight,
                 const Arr& lse, const Arr& loss_like, const char* loss_name,
                 double label_smoothing, const std::string& reduction) {
  CeShape s;
  s.red = parse_reduction(op, reduction);
  check_float(logits, op, "logits");
  check_input(logits, op, "logits");
  if (logits.ndim() != 2)
    fail_value(std::string(op) + ": " + describe(logits, "logits") + " must be 2-D (N, C)");
  s.N = logits.shape(0);
  s.C = logits.shape(1);
  check_input(target, op, "target");
  const DType td = dtype_of(target);
  if (td == DType::i64) {
    if (!has_shape(target, {s.N}))
      fail_value(std::string(op) + ": class-index " + describe(target, "target") +
                 " must have shape " + shape_of({s.N}) + " for " + describe(logits, "logits"));
  } else if (td == DType::f32 || td == DType::f64) {
    s.prob = true;
    check_same_dtype(logits, target, op, "logits", "target");
    if (!has_shape(target, {s.N, s.C}))
      fail_value(std::string(op) + ": probability " + describe(target, "target") +
                 " must have the shape of " + describe(logits, "logits") +
                 " (class-index targets must be int64 of shape " + shape_of({s.N}) + ")");
  } else {
    fail_type(std::string(op) + ": " + describe(target, "target") +
              " must be int64 class indices or float probabilities");
  }
  if (weight) {
    check_input(*weight, op, "weight");
    check_same_dtype(logits, *weight, op, "logits", "weight");
    if (!has_shape(*weight, {s.C}))
      fail_value(std::string(op) + ": " + describe(*weight, "weight") + " must have shape " +
                 shape_of({s.C}) + " for " + describe(logits, "logits"));
  }
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    fail_value(std::string(op) + ": label_smoothing must be between 0.0 and 1.0, got " +
               std::to_string(label_smoothing));
  check_same_dtype(logits, lse, op, "logits", "lse");
  if (!has_shape(lse, {s.N}))
    fail_value(std::string(op) + ": " + describe(lse, "lse") + " must have shape " + shape_of({s.N}));
  check_same_dtype(logits, loss_like, op, "logits", loss_name);
  const bool ok = s.red == Reduction::none ? has_shape(loss_like, {s.N}) : loss_like.ndim() == 0;
  if (!ok)
    fail_value(std::string(op) + ": " + describe(loss_like, loss_name) + " must have shape " +
               (s.red == Reduction::none ? shape_of({s.N}) : std::string("()")) +
               " for reduction '" + reduction + "'");
  return s;
}

// Out-of-range class indices raise before any work (a parallel loop cannot throw).
void check_targets(const char* op, const int64_t* t, int64_t N, int64_t C, int64_t ignore_index) {
  for (int64_t i = 0; i < N; ++i) {
    if (t[i] != ignore_index && (t[i] < 0 || t[i] >= C))
      fail_index(std::string(op) + ": target " + std::to_string(t[i]) + " at row " +
                 std::to_string(i) + " is out of bounds for C = " + std::to_string(C) +
                 " classes (ignore_index = " + std::to_string(ignore_index) + ")");
  }
}

// Calls row(i, acc) for every row, threaded when large; returns the summed accumulators.
template <class F>
std::pair<double, double> sum_rows(int64_t N, int64_t C, F&& row) {
  double a = 0, b = 0;
  if (N * C < kParallelGrain || N < 2 || omp_get_max_threads() == 1) {
    for (int64_t i = 0; i < N; ++i) row(i, a, b);
  } else {
#pragma omp parallel for schedule(static) reduction(+ : a, b)
    for (int64_t i = 0; i < N; ++i) row(i, a, b);
  }
  return {a, b};
}

template <class T, class Ops>
void ce_forward(const CeShape& s, const T* x, const void* target, const T* w, T* loss, T* lse,
                int64_t ignore_index, double eps) {
  const int64_t N = s.N, C = s.C;
  const double wall = [&] {  // sum_c w_c
    if (!w) return double(C);
    double a = 0;
    for (int64_t c = 0; c < C; ++c) a += w[c];
    return a;
  }();
  const double epsC = C > 0 ? eps / double(C) : 0.0;
  auto [total, denom] = sum_rows(N, C, [&](int64_t i, double& tot, double& den) {
    const T* xr = x + i * C;
    const T m = Ops::max(xr, C);
    const double l = double(m) + std::log(Ops::exp_sum(xr, nullptr, C, m));
    lse[i] = T(l);
    double li = 0;
    if (s.prob) {
      const T* tr = static_cast<const T*>(target) + i * C;
      for (int64_t c = 0; c < C; ++c) {
        const double tp = (1.0 - eps) * double(tr[c]) + epsC;
        li += (w ? double(w[c]) : 1.0) * tp * (l - double(xr[c]));
      }
      den += 1.0;
    } else {
      const int64_t y = static_cast<const int64_t*>(target)[i];
      if (y != ignore_index) {
        const double wy = w ? double(w[y]) : 1.0;
        li = (1.0 - eps) * wy * (l - double(xr[y]));
        if (eps > 0) li += epsC * (l * wall - (w ? Ops::dot(w, xr, C) : Ops::sum(xr, C)));
        den += wy;
      }
    }
    if (s.red == Reduction::none) loss[i] = T(li);
    tot += li;
  });
  if (s.red == Reduction::sum) loss[0] = T(total);
  if (s.red == Reduction::mean) loss[0] = T(total / denom);  // 0/0 -> NaN, as PyTorch
}

template <class T, class Ops>
void ce_backward(const CeShape& s, const T* gl, const T* x, const void* target, const T* w,
                 const T* lse, T* gx, int64_t ignore_index, double eps) {
  const int64_t N = s.N, C = s.C;
  const double wall = [&] {
    if (!w) return double(C);
    double a = 0;
    for (int64_t c = 0; c < C; ++c) a += w[c];
    return a;
  }();
  const double epsC = C > 0 ? eps / double(C) : 0.0;
  double scale = 1.0;  // d loss / d l_i for sum / mean
  if (s.red == Reduction::mean) {
    double den = 0;
    if (s.prob) {
      den = double(N);
    } else {
      const int64_t* t = static_cast<const int64_t*>(target);
      for (int64_t i = 0; i < N; ++i)
        if (t[i] != ignore_index) den += w ? double(w[t[i]]) : 1.0;
    }
    scale = 1.0 / den;
  }
  sum_rows(N, C, [&](int64_t i, double&, double&) {
    const T* xr = x + i * C;
    T* gr = gx + i * C;
    const double a = (s.red == Reduction::none ? double(gl[i]) : double(gl[0])) * scale;
    // p = exp(x - lse). A float lse of magnitude > 16 has lost more than ~1e-6 of absolute
    // precision in rounding, so for float rows with large logits the log-sum-exp is recomputed
    // around the row max instead: p = exp(x - m) / sum exp(x - m).
    T shift = lse[i];
    double inv = 1.0;
    if (std::is_same_v<T, float> && !(std::fabs(double(lse[i])) <= 16.0)) {
      shift = Ops::max(xr, C);
      inv = 1.0 / Ops::exp_sum(xr, nullptr, C, shift);
    }
    if (s.prob) {
      const T* tr = static_cast<const T*>(target) + i * C;
      double A = 0;
      for (int64_t c = 0; c < C; ++c)
        A += (w ? double(w[c]) : 1.0) * ((1.0 - eps) * double(tr[c]) + epsC);
      Ops::exp_scale(xr, gr, C, shift, T(a * A * inv));
      for (int64_t c = 0; c < C; ++c)
        gr[c] -= T(a * (w ? double(w[c]) : 1.0) * ((1.0 - eps) * double(tr[c]) + epsC));
      return;
    }
    const int64_t y = static_cast<const int64_t*>(target)[i];
    if (y == ignore_index) {
      for (int64_t c = 0; c < C; ++c) gr[c] = T(0);
      return;
    }
    const double wy = w ? double(w[y]) : 1.0;
    Ops::exp_scale(xr, gr, C, shift, T(a * ((1.0 - eps) * wy + epsC * wall) * inv));
    if (eps > 0) {
      if (w) {
        for (int64_t c = 0; c < C; ++c) gr[c] -= T(a * epsC * double(w[c]));
      } else {
        const T d = T(a * epsC);
        for (int64_t c = 0; c < C; ++c) gr[c] -= d;
      }
    }
    gr[y] -= T(a * (1.0 - eps) * wy);
  });
}
}  // namespace

void cross_entropy(const Arr& logits, const Arr& target, const OptArr& weight, Arr loss, Arr lse,
                   int64_t ignore_index, double label_smoothing, const std::string& reduction) {
  const char* op = "cross_entropy";
  const CeShape s = check_ce(op, logits, target, weight, lse, loss, "loss", label_smoothing, reduction);
  check_output(loss, op, "loss");
  check_output(lse, op, "lse");
  if (!s.prob) check_targets(op, static_cast<const int64_t*>(target.data()), s.N, s.C, ignore_index);
  dispatch_float(logits, op, "logits", [&](auto t) {
    using T = decltype(t);
    const T* x = cdata<T>(logits);
    const T* w = weight ? cdata<T>(*weight) : nullptr;
    const void* tg = target.data();
    T* lp = data<T>(loss);
    T* sp = data<T>(lse);
    py::gil_scoped_release nogil;
    with_row_ops<T>([&](auto ops) {
      ce_forward<T, decltype(ops)>(s, x, tg, w, lp, sp, ignore_index, label_smoothing);
    });
  });
}

void cross_entropy_backward(const Arr& grad_loss, const Arr& logits, const Arr& target,
                            const OptArr& weight, const Arr& lse, Arr grad_logits,
                            int64_t ignore_index, double label_smoothing,
                            const std::string& reduction) {
  const char* op = "cross_entropy_backward";
  const CeShape s = check_ce(op, logits, target, weight, lse, grad_loss, "grad_loss",
                             label_smoothing, reduction);
  check_input(grad_loss, op, "grad_loss");
  check_input(lse, op, "lse");
  check_same_dtype(logits, grad_logits, op, "logits", "grad_logits");
  check_same_shape(logits, grad_logits, op, "logits", "grad_logits");
  check_output(grad_logits, op, "grad_logits");
  if (!s.prob) check_targets(op, static_cast<const int64_t*>(target.data()), s.N, s.C, ignore_index);
  dispatch_float(logits, op, "logits", [&](auto t) {
    using T = decltype(t);
    const T* gl = cdata<T>(grad_loss);
    const T* x = cdata<T>(logits);
    const T* w = weight ? cdata<T>(*weight) : nullptr;
    const void* tg = target.data();
    const T* sp = cdata<T>(lse);
    T* gx = data<T>(grad_logits);
    py::gil_scoped_release nogil;
    with_row_ops<T>([&](auto ops) {
      ce_backward<T, decltype(ops)>(s, gl, x, tg, w, sp, gx, ignore_index, label_smoothing);
    });
  });
}

}  // namespace kiln::cpu
