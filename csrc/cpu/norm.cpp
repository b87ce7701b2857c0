// layer_norm / layer_norm_backward drivers: argument checks, workspace, ISA choice. The
// loops and the math are in norm_impl.h (this file also compiles them at baseline x86-64).
// x is viewed as (R, D): R = mean.size rows of D = x.size / R elements each, normalized
// over the row; weight / bias are (D,) (the ops layer flattens normalized_shape).
#include <cstring>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "cpu/norm_chan_impl.h"

namespace kiln::cpu {
NormTable<float> norm_table_base(float) { return make_norm_table<float>(); }
NormTable<double> norm_table_base(double) { return make_norm_table<double>(); }

template <class T>
NormTable<T> norm_table() {
  switch (isa()) {
    case Isa::avx512: return norm_table_avx512(T{});
    case Isa::avx2: return norm_table_avx2(T{});
    default: return norm_table_base(T{});
  }
}
template NormTable<float> norm_table<float>();
template NormTable<double> norm_table<double>();

double* norm_workspace(int64_t n) {
  thread_local std::vector<double> buf;  // grow-only, reused across calls
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

namespace {
void check_vec(const Arr& a, const Arr& x, int64_t n, const char* op, const char* name) {
  check_input(a, op, name);
  check_same_dtype(x, a, op, "x", name);
  if (a.ndim() != 1 || a.shape(0) != n)
    fail_value(std::string(op) + ": " + describe(a, name) + " must have shape (" +
               std::to_string(n) + ",) for " + describe(x, "x"));
}

// Returns (R, D) and checks x, mean, rstd, weight, bias.
std::pair<int64_t, int64_t> check_ln(const char* op, const Arr& x, const Arr& mean,
                                     const Arr& rstd, const OptArr& w, const OptArr& b) {
  check_float(x, op, "x");
  check_input(x, op, "x");
  check_input(mean, op, "mean");
  check_same_dtype(x, mean, op, "x", "mean");
  if (mean.ndim() != 1)
    fail_value(std::string(op) + ": " + describe(mean, "mean") + " must be 1-D (rows,)");
  const int64_t R = mean.shape(0);
  const int64_t n = x.size();
  if ((R == 0 && n != 0) || (R > 0 && n % R != 0))
    fail_value(std::string(op) + ": " + describe(x, "x") + " does not split into " +
               std::to_string(R) + " rows (" + describe(mean, "mean") + ")");
  const int64_t D = R ? n / R : 0;
  check_vec(rstd, x, R, op, "rstd");
  if (w) check_vec(*w, x, D, op, "weight");
  if (b) check_vec(*b, x, D, op, "bias");
  return {R, D};
}
}  // namespace

void layer_norm(const Arr& x, const OptArr& weight, const OptArr& bias, Arr out, Arr mean,
                Arr rstd, double eps) {
  const char* op = "layer_norm";
  auto [R, D] = check_ln(op, x, mean, rstd, weight, bias);
  check_output(out, op, "out");
  check_output(mean, op, "mean");
  check_output(rstd, op, "rstd");
  check_same_dtype(x, out, op, "x", "out");
  check_same_shape(x, out, op, "x", "out");
  if (!(eps >= 0)) fail_value(std::string(op) + ": eps must be >= 0, got " + std::to_string(eps));
  if (R == 0 || D == 0) {
    if (R && D == 0) fail_value(std::string(op) + ": rows of 0 elements in " + describe(x, "x"));
    return;
  }
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    NormArgs<T> a;
    a.x = cdata<T>(x);
    a.w = weight ? cdata<T>(*weight) : nullptr;
    a.b = bias ? cdata<T>(*bias) : nullptr;
    a.y = data<T>(out);
    a.mean = data<T>(mean);
    a.rstd = data<T>(rstd);
    a.rows = R;
    a.cols = D;
    a.eps = eps;
    py::gil_scoped_release nogil;
    norm_table<T>().layer_norm(a);
  });
}

void layer_norm_backward(const Arr& grad, const Arr& x, const Arr& mean, const Arr& rstd,
                         const OptArr& weight, const OptArr& grad_input,
                         const OptArr& grad_weight, const OptArr& grad_bias) {
  const char* op = "layer_norm_backward";
  auto [R, D] = check_ln(op, x, mean, rstd, weight, std::nullopt);
  check_input(grad, op, "grad");
  check_same_dtype(x, grad, op, "x", "grad");
  check_same_shape(x, grad, op, "x", "grad");
  if (grad_input) {
    check_output(*grad_input, op, "grad_input");
    check_same_dtype(x, *grad_input, op, "x", "grad_input");
    check_same_shape(x, *grad_input, op, "x", "grad_input");
  }
  for (auto [g, name] : {std::pair{&grad_weight, "grad_weight"}, {&grad_bias, "grad_bias"}}) {
    if (*g) {
      check_output(**g, op, name);
      check_vec(**g, x, D, op, name);
    }
  }
  if (R == 0 || D == 0) {
    for (const OptArr* g : {&grad_weight, &grad_bias}) {  // empty batch: zero gradients
      if (*g) {
        py::array a = **g;
        std::memset(a.mutable_data(), 0, size_t(a.nbytes()));
      }
    }
    return;
  }
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    NormBwdArgs<T> a;
    a.g = cdata<T>(grad);
    a.x = cdata<T>(x);
    a.mean = cdata<T>(mean);
    a.rstd = cdata<T>(rstd);
    a.w = weight ? cdata<T>(*weight) : nullptr;
    auto out = [](const OptArr& o) -> T* {
      if (!o) return nullptr;
      py::array arr = *o;
      return data<T>(arr);
    };
    a.gx = out(grad_input);
    a.gw = out(grad_weight);
    a.gb = out(grad_bias);
    a.rows = R;
    a.cols = D;
    if (a.gw || a.gb) a.work = norm_workspace(std::min<int64_t>(R, kLnBlocks) * 2 * D);
    py::gil_scoped_release nogil;
    norm_table<T>().layer_norm_backward(a);
  });
}
}  // namespace kiln::cpu
