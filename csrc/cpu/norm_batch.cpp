// batch_norm / group_norm drivers (forward and backward): argument checks, workspace, ISA
// choice. x is (N, C, *) viewed as (N, C, S), S the product of the trailing dims. The loops
// and the math are in norm_chan_impl.h.
#include <cstring>
#include <string>

#include "cpu/kernels.h"
#include "cpu/norm_kernels.h"

namespace kiln::cpu {
namespace {
struct Ncs {
  int64_t N = 0, C = 0, S = 1;
};

Ncs check_x(const char* op, const Arr& x) {
  check_float(x, op, "x");
  check_input(x, op, "x");
  if (x.ndim() < 2)
    fail_value(std::string(op) + ": " + describe(x, "x") + " must be (N, C) or (N, C, *)");
  Ncs d;
  d.N = x.shape(0);
  d.C = x.shape(1);
  for (py::ssize_t i = 2; i < x.ndim(); ++i) d.S *= x.shape(i);
  return d;
}

void check_shape(const Arr& a, const Arr& x, std::initializer_list<int64_t> dims, const char* op,
                 const char* name, bool output) {
  if (output) check_output(a, op, name);
  else check_input(a, op, name);
  check_same_dtype(x, a, op, "x", name);
  bool ok = a.ndim() == py::ssize_t(dims.size());
  py::ssize_t i = 0;
  std::string want = "(";
  for (int64_t d : dims) {
    ok = ok && a.shape(i) == d;
    want += (i++ ? ", " : "") + std::to_string(d);
  }
  want += dims.size() == 1 ? ",)" : ")";
  if (!ok)
    fail_value(std::string(op) + ": " + describe(a, name) + " must have shape " + want + " for " +
               describe(x, "x"));
}

template <class T>
T* ptr(const OptArr& a) {
  if (!a) return nullptr;
  py::array arr = *a;
  return data<T>(arr);
}

void check_grads(const char* op, const Arr& grad, const Arr& x, const OptArr& gi,
                 const OptArr& gw, const OptArr& gb, int64_t C) {
  check_input(grad, op, "grad");
  check_same_dtype(x, grad, op, "x", "grad");
  check_same_shape(x, grad, op, "x", "grad");
  if (gi) {
    check_output(*gi, op, "grad_input");
    check_same_dtype(x, *gi, op, "x", "grad_input");
    check_same_shape(x, *gi, op, "x", "grad_input");
  }
  if (gw) check_shape(*gw, x, {C}, op, "grad_weight", true);
  if (gb) check_shape(*gb, x, {C}, op, "grad_bias", true);
}

void zero(const OptArr& a) {
  if (a) {
    py::array arr = *a;
    if (arr.nbytes()) std::memset(arr.mutable_data(), 0, size_t(arr.nbytes()));
  }
}
}  // namespace

void batch_norm(const Arr& x, const OptArr& weight, const OptArr& bias,
                const OptArr& running_mean, const OptArr& running_var, Arr out, Arr save_mean,
                Arr save_invstd, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  const Ncs d = check_x(op, x);
  check_output(out, op, "out");
  check_same_dtype(x, out, op, "x", "out");
  check_same_shape(x, out, op, "x", "out");
  if (weight) check_shape(*weight, x, {d.C}, op, "weight", false);
  if (bias) check_shape(*bias, x, {d.C}, op, "bias", false);
  if (running_mean) check_shape(*running_mean, x, {d.C}, op, "running_mean", true);
  if (running_var) check_shape(*running_var, x, {d.C}, op, "running_var", true);
  check_shape(save_mean, x, {d.C}, op, "save_mean", true);
  check_shape(save_invstd, x, {d.C}, op, "save_invstd", true);
  if (!training && (!running_mean || !running_var))
    fail_value(std::string(op) + ": running_mean and running_var must be given in evaluation "
               "mode (training=False)");
  if (training && d.N * d.S <= 1)
    fail_value(std::string(op) + ": expected more than 1 value per channel when training, got " +
               describe(x, "x"));
  if (!(eps >= 0)) fail_value(std::string(op) + ": eps must be >= 0");
  if (x.size() == 0) return;  // an empty batch in eval mode (training raised above)
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    ChanArgs<T> a;
    a.x = cdata<T>(x);
    a.w = weight ? cdata<T>(*weight) : nullptr;
    a.b = bias ? cdata<T>(*bias) : nullptr;
    a.y = data<T>(out);
    a.mean = data<T>(save_mean);
    a.rstd = data<T>(save_invstd);
    a.running_mean = ptr<T>(running_mean);
    a.running_var = ptr<T>(running_var);
    a.N = d.N;
    a.C = d.C;
    a.S = d.S;
    a.eps = eps;
    a.momentum = momentum;
    a.training = training;
    py::gil_scoped_release nogil;
    norm_table<T>().batch_norm(a);
  });
}

void batch_norm_backward(const Arr& grad, const Arr& x, const OptArr& weight,
                         const Arr& save_mean, const Arr& save_invstd, const OptArr& grad_input,
                         const OptArr& grad_weight, const OptArr& grad_bias, bool training) {
  const char* op = "batch_norm_backward";
  const Ncs d = check_x(op, x);
  check_grads(op, grad, x, grad_input, grad_weight, grad_bias, d.C);
  if (weight) check_shape(*weight, x, {d.C}, op, "weight", false);
  check_shape(save_mean, x, {d.C}, op, "save_mean", false);
  check_shape(save_invstd, x, {d.C}, op, "save_invstd", false);
  if (x.size() == 0) {
    zero(grad_weight);
    zero(grad_bias);
    return;
  }
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    ChanBwdArgs<T> a;
    a.g = cdata<T>(grad);
    a.x = cdata<T>(x);
    a.w = weight ? cdata<T>(*weight) : nullptr;
    a.mean = cdata<T>(save_mean);
    a.rstd = cdata<T>(save_invstd);
    a.gx = ptr<T>(grad_input);
    a.gw = ptr<T>(grad_weight);
    a.gb = ptr<T>(grad_bias);
    a.N = d.N;
    a.C = d.C;
    a.S = d.S;
    a.training = training;
    py::gil_scoped_release nogil;
    norm_table<T>().batch_norm_backward(a);
  });
}

void group_norm(const Arr& x, const OptArr& weight, const OptArr& bias, Arr out, Arr mean,
                Arr rstd, int64_t num_groups, double eps) {
  const char* op = "group_norm";
  const Ncs d = check_x(op, x);
  if (num_groups < 1 || d.C % num_groups != 0)
    fail_value(std::string(op) + ": expected the number of channels " + std::to_string(d.C) +
               " of " + describe(x, "x") + " to be divisible by num_groups = " +
               std::to_string(num_groups));
  check_output(out, op, "out");
  check_same_dtype(x, out, op, "x", "out");
  check_same_shape(x, out, op, "x", "out");
  if (weight) check_shape(*weight, x, {d.C}, op, "weight", false);
  if (bias) check_shape(*bias, x, {d.C}, op, "bias", false);
  check_shape(mean, x, {d.N, num_groups}, op, "mean", true);
  check_shape(rstd, x, {d.N, num_groups}, op, "rstd", true);
  if (!(eps >= 0)) fail_value(std::string(op) + ": eps must be >= 0");
  if (x.size() == 0) {
    if (d.N && d.C) fail_value(std::string(op) + ": groups of 0 elements in " + describe(x, "x"));
    return;
  }
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    ChanArgs<T> a;
    a.x = cdata<T>(x);
    a.w = weight ? cdata<T>(*weight) : nullptr;
    a.b = bias ? cdata<T>(*bias) : nullptr;
    a.y = data<T>(out);
    a.mean = data<T>(mean);
    a.rstd = data<T>(rstd);
    a.N = d.N;
    a.C = d.C;
    a.S = d.S;
    a.G = num_groups;
    a.eps = eps;
    py::gil_scoped_release nogil;
    norm_table<T>().group_norm(a);
  });
}

void group_norm_backward(const Arr& grad, const Arr& x, const Arr& mean, const Arr& rstd,
                         const OptArr& weight, const OptArr& grad_input,
                         const OptArr& grad_weight, const OptArr& grad_bias, int64_t num_groups) {
  const char* op = "group_norm_backward";
  const Ncs d = check_x(op, x);
  if (num_groups < 1 || d.C % num_groups != 0)
    fail_value(std::string(op) + ": num_groups = " + std::to_string(num_groups) +
               " does not divide the channels of " + describe(x, "x"));
  check_grads(op, grad, x, grad_input, grad_weight, grad_bias, d.C);
  if (weight) check_shape(*weight, x, {d.C}, op, "weight", false);
  check_shape(mean, x, {d.N, num_groups}, op, "mean", false);
  check_shape(rstd, x, {d.N, num_groups}, op, "rstd", false);
  if (x.size() == 0) {
    zero(grad_weight);
    zero(grad_bias);
    return;
  }
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    ChanBwdArgs<T> a;
    a.g = cdata<T>(grad);
    a.x = cdata<T>(x);
    a.w = weight ? cdata<T>(*weight) : nullptr;
    a.mean = cdata<T>(mean);
    a.rstd = cdata<T>(rstd);
    a.gx = ptr<T>(grad_input);
    a.gw = ptr<T>(grad_weight);
    a.gb = ptr<T>(grad_bias);
    a.N = d.N;
    a.C = d.C;
    a.S = d.S;
    a.G = num_groups;
    a.work = norm_workspace(2 * d.N * d.C);
    py::gil_scoped_release nogil;
    norm_table<T>().group_norm_backward(a);
  });
}
}  // namespace kiln::cpu
