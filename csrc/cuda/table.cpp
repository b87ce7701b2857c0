// The pybind11-facing wrappers of the CUDA kernel table (declared in
// cuda/kernels.h): parse each __cuda_array_interface__, check dtypes, shapes
// and writability against the CPU contract, then launch the .cu kernel on the
// stream LaunchContext picks. Kept out of the .cu files so nvcc never parses
// pybind11 (that would cost seconds per arch on every build).
#include <string>

#include "common/cuda_array.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/launchers.h"

namespace kiln::cuda {
namespace {

LaunchContext::Arg arg(const CudaArray& a, const char* name) {
  return {a.ptr, a.size, a.stream, name};
}

bool overlaps(const CudaArray& a, const CudaArray& b, int64_t itemsize) {
  if (a.size == 0 || b.size == 0) return false;
  const auto a0 = reinterpret_cast<uintptr_t>(a.ptr), b0 = reinterpret_cast<uintptr_t>(b.ptr);
  return a0 < b0 + b.size * itemsize && b0 < a0 + a.size * itemsize;
}

Activation parse_activation(const std::string& s) {
  if (s == "none") return Activation::none;
  if (s == "relu") return Activation::relu;
  if (s == "gelu") return Activation::gelu;
  if (s == "gelu_tanh") return Activation::gelu_tanh;
  fail_value("matmul: unknown activation '" + s + "' (expected none, relu, gelu or gelu_tanh)");
}

void check_ndim(const CudaArray& a, const char* op, const char* name, int64_t lo, int64_t hi) {
  if (a.ndim() < lo || a.ndim() > hi)
    fail_value(std::string(op) + ": " + describe(a, name) + " must be " +
               (lo == hi ? std::to_string(lo) + "-D" : "2-D or 3-D"));
}

// The elementwise pattern shared by relu-like kernels: all arrays one dtype and one shape.
struct Named {
  const CudaArray* array;
  const char* name;
};
void check_elementwise(const char* op, std::initializer_list<Named> args) {
  const Named& first = *args.begin();
  check_float(*first.array, op, first.name);
  for (const Named& a : args) {
    check_same_dtype(*first.array, *a.array, op, first.name, a.name);
    check_same_shape(*first.array, *a.array, op, first.name, a.name);
  }
}

}  // namespace

// ---- activations ------------------------------------------------------------------
void relu(const Obj& x_, const Obj& out_) {
  const char* op = "relu";
  const CudaArray x = cuda_array(x_, op, "x"), out = cuda_array(out_, op, "out");
  check_elementwise(op, {{&x, "x"}, {&out, "out"}});
  check_output(out, op, "out");
  LaunchContext ctx(op, arg(out, "out"), {arg(x, "x")});
  py::gil_scoped_release nogil;
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    launch_relu<T>(x.data<T>(), out.data<T>(), x.size, ctx.stream());
  });
}

void relu_backward(const Obj& grad_, const Obj& x_, const Obj& grad_input_) {
  const char* op = "relu_backward";
  const CudaArray grad = cuda_array(grad_, op, "grad"), x = cuda_array(x_, op, "x"),
                  gi = cuda_array(grad_input_, op, "grad_input");
  check_elementwise(op, {{&grad, "grad"}, {&x, "x"}, {&gi, "grad_input"}});
  check_output(gi, op, "grad_input");
  LaunchContext ctx(op, arg(gi, "grad_input"), {arg(grad, "grad"), arg(x, "x")});
  py::gil_scoped_release nogil;
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    launch_relu_backward<T>(grad.data<T>(), x.data<T>(), gi.data<T>(), x.size, ctx.stream());
  });
}

// ---- gemm -------------------------------------------------------------------------
void matmul(const Obj& a_, const Obj& b_, const Obj& out_, bool trans_a, bool trans_b,
            const Obj& bias_, const std::string& activation) {
  const char* op = "matmul";
  const CudaArray a = cuda_array(a_, op, "a"), b = cuda_array(b_, op, "b"),
                  out = cuda_array(out_, op, "out");
  const bool has_bias = !bias_.is_none();
  const CudaArray bias = has_bias ? cuda_array(bias_, op, "bias") : CudaArray{};
  check_float(a, op, "a");
  check_same_dtype(a, b, op, "a", "b");
  check_same_dtype(a, out, op, "a", "out");
  if (has_bias) check_same_dtype(a, bias, op, "a", "bias");
  check_output(out, op, "out");
  check_ndim(a, op, "a", 2, 3);
  check_ndim(b, op, "b", 2, 3);
  check_ndim(out, op, "out", 2, 3);
  const Activation act = parse_activation(activation);

  // a: (Ba, M, K) or (Ba, K, M) when trans_a; b: (Bb, K, N) or (Bb, N, K) when trans_b.
  const auto dim = [](const CudaArray& x, int i) { return x.shape[x.ndim() - 2 + i]; };
  const int64_t ba = a.ndim() == 3 ? a.shape[0] : 1, bb = b.ndim() == 3 ? b.shape[0] : 1;
  const int64_t m = trans_a ? dim(a, 1) : dim(a, 0), ka = trans_a ? dim(a, 0) : dim(a, 1);
  const int64_t kb = trans_b ? dim(b, 1) : dim(b, 0), n = trans_b ? dim(b, 0) : dim(b, 1);
  const int64_t batch = out.ndim() == 3 ? out.shape[0] : 1;
  const std::string shapes = describe(a, "a") + (trans_a ? " (transposed)" : "") + ", " +
                             describe(b, "b") + (trans_b ? " (transposed)" : "") + ", " +
                             describe(out, "out");
  if (ka != kb) fail_value("matmul: inner dimensions differ (" + std::to_string(ka) + " vs " +
                           std::to_string(kb) + "): " + shapes);
  if (dim(out, 0) != m || dim(out, 1) != n || (ba != 1 && ba != batch) || (bb != 1 && bb != batch))
    fail_value("matmul: out must be (" + (out.ndim() == 3 ? std::to_string(batch) + ", " : "") +
               std::to_string(m) + ", " + std::to_string(n) +
               ") with a and b batched 1 or like out: " + shapes);
  if (has_bias && bias.shape != std::vector<int64_t>{n})
    fail_value("matmul: " + describe(bias, "bias") + " must be (" + std::to_string(n) + ",)");
  const int64_t item = a.dtype == DType::f32 ? 4 : 8;
  if (overlaps(out, a, item) || overlaps(out, b, item) || (has_bias && overlaps(out, bias, item)))
    fail_value("matmul: out overlaps an input; the kernel cannot run in place: " + shapes);

  const GemmArgs g{batch, m, n, ka, ba != 1, bb != 1, trans_a, trans_b, act};
  std::vector<LaunchContext::Arg> inputs{arg(a, "a"), arg(b, "b")};
  if (has_bias) inputs.push_back(arg(bias, "bias"));
  LaunchContext ctx(op, arg(out, "out"), std::move(inputs));
  py::gil_scoped_release nogil;
  dispatch_float(a, op, "a", [&](auto t) {
    using T = decltype(t);
    launch_matmul<T>(a.data<T>(), b.data<T>(), has_bias ? bias.data<T>() : nullptr, out.data<T>(),
                     g, ctx.stream());
  });
}

void matmul_naive(const Obj& a_, const Obj& b_, const Obj& out_) {
  const char* op = "matmul_naive";
  const CudaArray a = cuda_array(a_, op, "a"), b = cuda_array(b_, op, "b"),
                  out = cuda_array(out_, op, "out");
  check_float(a, op, "a");
  check_same_dtype(a, b, op, "a", "b");
  check_same_dtype(a, out, op, "a", "out");
  check_output(out, op, "out");
  check_ndim(a, op, "a", 2, 2);
  check_ndim(b, op, "b", 2, 2);
  check_ndim(out, op, "out", 2, 2);
  const int64_t m = a.shape[0], k = a.shape[1], n = b.shape[1];
  if (b.shape[0] != k || out.shape[0] != m || out.shape[1] != n)
    fail_value("matmul_naive: shapes do not chain, expected a (M, K), b (K, N), out (M, N): " +
               describe(a, "a") + ", " + describe(b, "b") + ", " + describe(out, "out"));
  const int64_t item = a.dtype == DType::f32 ? 4 : 8;
  if (overlaps(out, a, item) || overlaps(out, b, item))
    fail_value("matmul_naive: out overlaps an input; the kernel cannot run in place");
  LaunchContext ctx(op, arg(out, "out"), {arg(a, "a"), arg(b, "b")});
  py::gil_scoped_release nogil;
  dispatch_float(a, op, "a", [&](auto t) {
    using T = decltype(t);
    launch_matmul_naive<T>(a.data<T>(), b.data<T>(), out.data<T>(), m, n, k, ctx.stream());
  });
}

// ---- not written yet ----------------------------------------------------------------
void raise_not_implemented(const char* name) {
  PyErr_SetString(PyExc_NotImplementedError,
                  (std::string(name) + ": not implemented yet on the cuda backend (kiln._cuda)").c_str());
  throw py::error_already_set();
}


// out = relu_backward(op(a) @ op(b), x). The CPU fuses the mask into the GEMM's
// write-back; here it is the GEMM followed by the elementwise kernel on out in place
// (gi[i] depends on grad[i] and x[i] only), both on the same stream.
void matmul_relu_backward(const Obj& a_, const Obj& b_, const Obj& out_, bool trans_a,
                          bool trans_b, const Obj& x_) {
  const char* op = "matmul_relu_backward";
  const CudaArray out = cuda_array(out_, op, "out"), x = cuda_array(x_, op, "x");
  check_elementwise(op, {{&out, "out"}, {&x, "x"}});
  if (overlaps(out, x, out.dtype == DType::f32 ? 4 : 8))
    fail_value("matmul_relu_backward: out overlaps x; it must be a separate array");
  matmul(a_, b_, out_, trans_a, trans_b, py::none(), "none");
  LaunchContext ctx(op, arg(out, "out"), {arg(x, "x")});
  py::gil_scoped_release nogil;
  dispatch_float(x, op, "x", [&](auto t) {
    using T = decltype(t);
    launch_relu_backward<T>(out.data<T>(), x.data<T>(), out.data<T>(), x.size, ctx.stream());
  });
}

}  // namespace kiln::cuda
