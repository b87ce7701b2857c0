// Internal interface of the multi-tensor optimizer kernels (optim.cpp): the per-call
// hyperparameters, one record per tensor, and the table of range functions that apply one
// optimizer's update to elements [begin, end) of one tensor. The range functions are the
// templates of optim_loops.h, compiled once per instruction set (optim_avx512.cpp,
// optim_avx2.cpp, and generic code in optim.cpp); optim.cpp picks the table from isa().
#pragma once
#include <cstdint>

namespace kiln::cpu::optim {

// Hyperparameters shared by every tensor of one call (one parameter group).
struct Scalars {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  double beta1 = 0, beta2 = 0, eps = 0, alpha = 0;
  bool nesterov = false, maximize = false, first_step = false;
  bool decoupled = false, amsgrad = false, centered = false;
};

// One tensor of the call: its buffers (s0..s2 are the optimizer's state, see each kernel) and
// the per-tensor scalars that depend on that tensor's own step count.
struct Tensor {
  void* p = nullptr;        // parameter (updated in place)
  const void* g = nullptr;  // gradient (read only)
  void* s0 = nullptr;
  void* s1 = nullptr;
  void* s2 = nullptr;
  double step_size = 0;  // adam: lr / bias_correction1; adagrad: lr / (1 + (step-1) lr_decay)
  double bc2_sqrt = 0;   // adam: sqrt(1 - beta2^step)
  int64_t n = 0;
  bool f64 = false;
};

using RangeFn = void (*)(const Scalars&, const Tensor&, int64_t begin, int64_t end);

struct Table {
  RangeFn sgd[2], adam[2], rmsprop[2], adagrad[2];  // [0] float32, [1] float64
};

const Table& table_generic();  // optim.cpp (no ISA flags)
const Table& table_avx2();     // optim_avx2.cpp
const Table& table_avx512();   // optim_avx512.cpp

}  // namespace kiln::cpu::optim
