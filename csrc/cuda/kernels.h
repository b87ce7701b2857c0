// The CUDA kernel table: the same names, argument names and defaults as the
// CPU table in cpu/kernels.h, bound in bind_cuda.cpp. Arrays are any Python
// objects exposing __cuda_array_interface__ (C-contiguous); outputs are
// allocated by the caller. Checks run first (TypeError / ValueError naming the
// kernel, the argument and its shape), then the GPU check (RuntimeError when
// none), then the launch; launch errors come back as RuntimeError naming the
// kernel. Kernels run asynchronously on the stream chosen by LaunchContext.
// A kernel not written yet raises NotImplementedError naming itself and the
// backend -- never a silent fallback to another device.
#pragma once
#include <pybind11/pybind11.h>

#include <string>

namespace kiln::cuda {
namespace py = pybind11;
using Obj = py::object;  // an object with __cuda_array_interface__

// ---- gemm (table.cpp -> gemm.cu) -------------------------------------------------
// out[b] = act(op(a[b]) @ op(b[b]) + bias), shapes as in cpu/kernels.h; bias None or (N,).
void matmul(const Obj& a, const Obj& b, const Obj& out, bool trans_a, bool trans_b, const Obj& bias,
            const std::string& activation);
void matmul_naive(const Obj& a, const Obj& b, const Obj& out);  // a (M,K), b (K,N), out (M,N)
// out = relu_backward(op(a) @ op(b), x), x out's shape (cpu/kernels.h)
void matmul_relu_backward(const Obj& a, const Obj& b, const Obj& out, bool trans_a, bool trans_b,
                          const Obj& x);

// ---- activations (table.cpp -> activation.cu) --------------------------------------
void relu(const Obj& x, const Obj& out);
void relu_backward(const Obj& grad, const Obj& x, const Obj& grad_input);

// ---- kernels not written yet on this backend -----------------------------------------
[[noreturn]] void raise_not_implemented(const char* name);

// A callable with the kernel's argument types that raises NotImplementedError;
// bind_cuda.cpp gives it the CPU table's argument names and defaults.
template <class... Args> auto not_implemented(const char* name) {
  return [name](Args...) { raise_not_implemented(name); };
}

}  // namespace kiln::cuda
