// The CPU kernel table: every function here is bound under the same name in
// kiln._cpu (bind_cpu.cpp), and kiln._cuda / kiln.backends.numba_cuda export
// the same names with the same arguments.
//
// Contract: outputs are allocated by the caller and passed in; inputs and
// outputs are C-contiguous; float kernels take float32 or float64 (all arrays
// of one call share the dtype); shapes/dtypes are checked and reported as
// ValueError/TypeError/IndexError naming the kernel; the GIL is released while
// the kernel runs; threads come from OpenMP (set_num_threads).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "common/array.h"

namespace kiln::cpu {
using Arr = py::array;
using OptArr = std::optional<py::array>;

// ---- threads --------------------------------------------------------------
void set_num_threads(int n);
int get_num_threads();

// ---- gemm (gemm.cpp, gemm_avx512.cpp, gemm_avx2.cpp) -----------------------
// out[b] = act(op(a[b]) @ op(b[b]) + bias), op(x) = x or x^T.
//   a: (Ba, M, K), or (Ba, K, M) when trans_a;  2-D means Ba = 1
//   b: (Bb, K, N), or (Bb, N, K) when trans_b;  2-D means Bb = 1
//   out: (B, M, N) (2-D when B = 1), with Ba, Bb in {1, B} (1 = broadcast)
//   bias: (N,) or None; activation: "none" | "relu" | "gelu" | "gelu_tanh"
void matmul(const Arr& a, const Arr& b, Arr out, bool trans_a, bool trans_b, const OptArr& bias,
            const std::string& activation);
// Reference triple loop (i, j, k order; no blocking, no SIMD, one thread) for
// tests and for the bench's "x times faster than naive" figure. a (M,K), b (K,N).
void matmul_naive(const Arr& a, const Arr& b, Arr out);

// ---- activations (activation.cpp): y = f(x); grad_input = grad * f'(.) -----
void relu(const Arr& x, Arr out);
void relu_backward(const Arr& grad, const Arr& x, Arr grad_input);
void leaky_relu(const Arr& x, Arr out, double negative_slope);
void leaky_relu_backward(const Arr& grad, const Arr& x, Arr grad_input, double negative_slope);
void sigmoid(const Arr& x, Arr out);
void sigmoid_backward(const Arr& grad, const Arr& y, Arr grad_input);  // y = sigmoid(x)
void tanh(const Arr& x, Arr out);
void tanh_backward(const Arr& grad, const Arr& y, Arr grad_input);  // y = tanh(x)
void gelu(const Arr& x, Arr out, const std::string& approximate);  // "none" | "tanh"
void gelu_backward(const Arr& grad, const Arr& x, Arr grad_input, const std::string& approximate);
void silu(const Arr& x, Arr out);
void silu_backward(const Arr& grad, const Arr& x, Arr grad_input);
void softplus(const Arr& x, Arr out, double beta, double threshold);
void softplus_backward(const Arr& grad, const Arr& x, Arr grad_input, double beta,
                       double threshold);
void elu(const Arr& x, Arr out, double alpha);
void elu_backward(const Arr& grad, const Arr& x, Arr grad_input, double alpha);

// ---- softmax (softmax.cpp): over axis `dim` (0 <= dim < x.ndim) -------------
void softmax(const Arr& x, Arr out, int dim);
void softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim);  // y = softmax
void log_softmax(const Arr& x, Arr out, int dim);
void log_softmax_backward(const Arr& grad, const Arr& y, Arr grad_input, int dim);  // y = log_softmax

// ---- loss (loss.cpp): cross-entropy from logits, PyTorch semantics ---------
//   logits (N, C); target int64 (N,) class indices, or (N, C) probabilities of logits' dtype;
//   weight (C,) or None; reduction "none" (loss (N,)) | "mean" | "sum" (loss 0-d);
//   lse (N,) receives each row's log-sum-exp for the backward pass.
void cross_entropy(const Arr& logits, const Arr& target, const OptArr& weight, Arr loss, Arr lse,
                   int64_t ignore_index, double label_smoothing, const std::string& reduction);
void cross_entropy_backward(const Arr& grad_loss, const Arr& logits, const Arr& target,
                            const OptArr& weight, const Arr& lse, Arr grad_logits,
                            int64_t ignore_index, double label_smoothing,
                            const std::string& reduction);

// ---- optim (optim.cpp, optim_loops.h, optim_avx512.cpp, optim_avx2.cpp) -----
// One call updates every parameter of one parameter group in place with PyTorch's
// single-tensor update. Lists are index-aligned (params[i], grads[i] and the state arrays [i]
// share shape and dtype); state lists that an option turns off are passed empty;
// state_steps[i] are 1-element float32 arrays (PyTorch's `step`) that the kernel increments.
//   sgd_step:     first_step: momentum_buffers are initialised to the gradient (buf = g)
//   adam_step:    decoupled = AdamW's weight decay; max_exp_avg_sqs only with amsgrad
//   rmsprop_step: grad_avgs only when centered, momentum_buffers only when momentum > 0
void sgd_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
              const std::vector<Arr>& momentum_buffers, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize,
              bool first_step);
void adam_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
               const std::vector<Arr>& exp_avgs, const std::vector<Arr>& exp_avg_sqs,
               const std::vector<Arr>& max_exp_avg_sqs, const std::vector<Arr>& state_steps,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool amsgrad, bool maximize);
void rmsprop_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
                  const std::vector<Arr>& square_avgs, const std::vector<Arr>& grad_avgs,
                  const std::vector<Arr>& momentum_buffers, const std::vector<Arr>& state_steps,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize);
void adagrad_step(const std::vector<Arr>& params, const std::vector<Arr>& grads,
                  const std::vector<Arr>& state_sums, const std::vector<Arr>& state_steps,
                  double lr, double lr_decay, double weight_decay, double eps, bool maximize);
// Gradient clipping (optim_clip.cpp): out (1-element float64) = the norm_type-norm of all
// tensors concatenated (float64 accumulation; inf, -inf, 0 supported); x *= scale; clamp.
void grad_norm(const std::vector<Arr>& tensors, Arr out, double norm_type);
void grad_scale(const std::vector<Arr>& tensors, double scale);
void grad_clamp(const std::vector<Arr>& tensors, double min, double max);
}  // namespace kiln::cpu
