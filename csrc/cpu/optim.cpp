// Multi-tensor optimizer steps: sgd_step, adam_step (Adam and AdamW), rmsprop_step,
// adagrad_step. One call updates every parameter of one parameter group in place, with the
// update of PyTorch's single-tensor implementation (the math is in optim_loops.h):
//   lists are index-aligned: params[i], grads[i] and the state arrays [i] share shape and
//   dtype (float32 or float64; different indices may differ); state_steps[i] is a 1-element
//   float32/float64 array (PyTorch's 0-d float32 `step`) that the kernel increments, and the
//   per-tensor bias corrections use that tensor's own step, as PyTorch does.
// Work is spread over OpenMP threads as equal slices of the concatenation of all tensors, so
// one big tensor and many small ones balance the same way; below kParallelGrain elements in
// total the call runs on the calling thread. The GIL is released while the loops run.
#include "cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/optim_loops.h"
#include "cpu/vecmath.h"

namespace kiln::cpu {
namespace {
using optim::Scalars;
using optim::Tensor;
using List = std::vector<Arr>;

std::string at(const char* name, size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

// A state list that must match params index by index (shape, dtype), C-contiguous and writeable.
struct StateList {
  const List& arrays;
  const char* name;
  bool used = true;  // false: this configuration has no such state (the list must be empty)
};

void check_length(const char* op, const List& params, const List& l, const char* name) {
  if (l.size() != params.size())
    fail_value(std::string(op) + ": " + name + " has " + std::to_string(l.size()) +
               " arrays but params has " + std::to_string(params.size()));
}

// The checks below first test, and build the "params[i]" names for a message only on
// failure: building them eagerly was a fifth of an MLP's sgd_step call.
bool like_ok(const Arr& p, const Arr& a, bool writeable) {
  if (!(a.flags() & py::array::c_style) || (writeable && !a.writeable())) return false;
  if (!a.dtype().is(p.dtype()) && dtype_of(a) != dtype_of(p)) return false;
  if (a.ndim() != p.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != p.shape(d)) return false;
  return true;
}

void check_like(const char* op, const Arr& p, size_t i, const Arr& a, const char* name,
                bool writeable) {
  if (like_ok(p, a, writeable)) return;
  const std::string pn = at("params", i), an = at(name, i);
  check_same_dtype(p, a, op, pn.c_str(), an.c_str());
  check_same_shape(p, a, op, pn.c_str(), an.c_str());
  if (writeable) check_output(a, op, an.c_str());
  else check_input(a, op, an.c_str());
}

// Checks every list and returns one Tensor record per index (state pointers s0..s2 from
// `states` in order; lists that are absent for this configuration are passed empty).
std::vector<Tensor> gather(const char* op, const List& params, const List& grads,
                           std::initializer_list<StateList> states) {
  check_length(op, params, grads, "grads");
  std::vector<Tensor> ts(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const DType d = dtype_of(params[i]);
    if ((d != DType::f32 && d != DType::f64) || !(params[i].flags() & py::array::c_style) ||
        !params[i].writeable()) {
      const std::string pn = at("params", i);
      check_float(params[i], op, pn.c_str());
      check_output(params[i], op, pn.c_str());
    }
    check_like(op, params[i], i, grads[i], "grads", false);
    Tensor& t = ts[i];
    t.p = const_cast<Arr&>(params[i]).mutable_data();
    t.g = grads[i].data();
    t.n = params[i].size();
    t.f64 = dtype_of(params[i]) == DType::f64;
  }
  int k = 0;
  for (const StateList& s : states) {
    if (!s.used) {
      if (!s.arrays.empty())
        fail_value(std::string(op) + ": " + s.name + " must be empty for these options");
      ++k;
      continue;
    }
    check_length(op, params, s.arrays, s.name);
    for (size_t i = 0; i < params.size(); ++i) {
      check_like(op, params[i], i, s.arrays[i], s.name, true);
      void* d = const_cast<Arr&>(s.arrays[i]).mutable_data();
      (k == 0 ? ts[i].s0 : k == 1 ? ts[i].s1 : ts[i].s2) = d;
    }
    ++k;
  }
  return ts;
}

// state_steps[i] += 1 (in the array's own precision, as PyTorch's float32 `step_t += 1`);
// returns the new step values.
// All steps are checked before any is changed, so a failed call leaves the state as it was.
std::vector<double> bump_steps(const char* op, const List& params, const List& steps) {
  check_length(op, params, steps, "state_steps");
  for (size_t i = 0; i < steps.size(); ++i) {
    const Arr& s = steps[i];
    const DType d = dtype_of(s);
    if ((s.flags() & py::array::c_style) && s.writeable() && s.size() == 1 &&
        (d == DType::f32 || d == DType::f64))
      continue;
    const std::string sn = at("state_steps", i);
    check_output(s, op, sn.c_str());
    if (s.size() != 1)
      fail_value(std::string(op) + ": " + describe(s, sn.c_str()) + " must hold one value");
    if (dtype_of(s) != DType::f32 && dtype_of(s) != DType::f64)
      fail_type(std::string(op) + ": " + describe(s, sn.c_str()) + " must be float32 or float64");
  }
  std::vector<double> out(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const Arr& s = steps[i];
    switch (dtype_of(s)) {
      case DType::f32: {
        float* v = static_cast<float*>(const_cast<Arr&>(s).mutable_data());
        *v = *v + 1.0f;
        out[i] = *v;
        break;
      }
      case DType::f64: {
        double* v = static_cast<double*>(const_cast<Arr&>(s).mutable_data());
        *v = *v + 1.0;
        out[i] = *v;
        break;
      }
      default: break;  // checked above
    }
  }
  return out;
}

const optim::Table& table() {
  switch (isa()) {
    case Isa::avx512: return optim::table_avx512();
    case Isa::avx2: return optim::table_avx2();
    default: return optim::table_generic();
  }
}

// Runs fn[dtype](s, t, b, e) over all elements of all tensors, sliced across threads.
void run(const Scalars& s, const std::vector<Tensor>& ts, const optim::RangeFn (&fn)[2]) {
  std::vector<int64_t> start(ts.size() + 1, 0);
  for (size_t i = 0; i < ts.size(); ++i) start[i + 1] = start[i] + ts[i].n;
  const int64_t total = start.back();
  if (total == 0) return;
  py::gil_scoped_release nogil;
  parallel_chunks(total, [&](int64_t b, int64_t e) {
    // first tensor overlapping [b, e): the last i with start[i] <= b
    size_t i = std::upper_bound(start.begin(), start.end(), b) - start.begin() - 1;
    for (; i < ts.size() && start[i] < e; ++i) {
      const int64_t lo = std::max(b, start[i]) - start[i];
      const int64_t hi = std::min(e, start[i + 1]) - start[i];
      if (lo < hi) fn[ts[i].f64](s, ts[i], lo, hi);
    }
  });
}

}  // namespace

namespace optim {
const Table& table_generic() {
  static const Table t = make_table();
  return t;
}
}  // namespace optim

void sgd_step(const List& params, const List& grads, const List& momentum_buffers, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov,
              bool maximize, bool first_step) {
  const char* op = "sgd_step";
  auto ts = gather(op, params, grads, {{momentum_buffers, "momentum_buffers", momentum != 0}});
  Scalars s;
  s.lr = lr, s.momentum = momentum, s.dampening = dampening, s.weight_decay = weight_decay;
  s.nesterov = nesterov, s.maximize = maximize, s.first_step = first_step;
  run(s, ts, table().sgd);
}

void adam_step(const List& params, const List& grads, const List& exp_avgs,
               const List& exp_avg_sqs, const List& max_exp_avg_sqs, const List& state_steps,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  auto ts = gather(op, params, grads,
                   {{exp_avgs, "exp_avgs"},
                    {exp_avg_sqs, "exp_avg_sqs"},
                    {max_exp_avg_sqs, "max_exp_avg_sqs", amsgrad}});
  const auto steps = bump_steps(op, params, state_steps);
  for (size_t i = 0; i < ts.size(); ++i) {
    // Python float arithmetic of PyTorch's _single_tensor_adam (capturable=False)
    const double bc1 = 1 - std::pow(beta1, steps[i]), bc2 = 1 - std::pow(beta2, steps[i]);
    ts[i].step_size = lr / bc1;
    ts[i].bc2_sqrt = std::pow(bc2, 0.5);
  }
  Scalars s;
  s.lr = lr, s.beta1 = beta1, s.beta2 = beta2, s.eps = eps, s.weight_decay = weight_decay;
  s.decoupled = decoupled, s.amsgrad = amsgrad, s.maximize = maximize;
  run(s, ts, table().adam);
}

void rmsprop_step(const List& params, const List& grads, const List& square_avgs,
                  const List& grad_avgs, const List& momentum_buffers, const List& state_steps,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize) {
  const char* op = "rmsprop_step";
  auto ts = gather(op, params, grads,
                   {{square_avgs, "square_avgs"},
                    {grad_avgs, "grad_avgs", centered},
                    {momentum_buffers, "momentum_buffers", momentum > 0}});
  bump_steps(op, params, state_steps);
  Scalars s;
  s.lr = lr, s.alpha = alpha, s.eps = eps, s.weight_decay = weight_decay, s.momentum = momentum;
  s.centered = centered, s.maximize = maximize;
  run(s, ts, table().rmsprop);
}

void adagrad_step(const List& params, const List& grads, const List& state_sums,
                  const List& state_steps, double lr, double lr_decay, double weight_decay,
                  double eps, bool maximize) {
  const char* op = "adagrad_step";
  auto ts = gather(op, params, grads, {{state_sums, "state_sums"}});
  const auto steps = bump_steps(op, params, state_steps);
  for (size_t i = 0; i < ts.size(); ++i) ts[i].step_size = lr / (1 + (steps[i] - 1) * lr_decay);
  Scalars s;
  s.lr = lr, s.eps = eps, s.weight_decay = weight_decay, s.maximize = maximize;
  run(s, ts, table().adagrad);
}

}  // namespace kiln::cpu
