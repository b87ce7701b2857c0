// max_pool2d / avg_pool2d / adaptive_avg_pool2d drivers, forward and backward: argument
// checks, ISA choice. Arrays are (..., H, W) in and (..., OH, OW) out: the leading dims are
// planes. The output size (hence ceil_mode) is the caller's choice, checked to be one
// PyTorch could produce: every window starts inside the input or its left padding. The
// loops and the window rules are in pool_impl.h (compiled here for baseline x86-64).
#include <string>

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "cpu/pool_impl.h"

namespace kiln::cpu {
PoolTable<float> pool_table_base(float) { return make_pool_table<float>(); }
PoolTable<double> pool_table_base(double) { return make_pool_table<double>(); }

template <class T>
PoolTable<T> pool_table() {
  switch (isa()) {
    case Isa::avx512: return pool_table_avx512(T{});
    case Isa::avx2: return pool_table_avx2(T{});
    default: return pool_table_base(T{});
  }
}
template PoolTable<float> pool_table<float>();
template PoolTable<double> pool_table<double>();

namespace {
std::string num(int64_t v) { return std::to_string(v); }

// Checks `in` (..., H, W) against `out` (..., OH, OW): same leading dims and dtype.
template <class T>
PoolArgs<T> planes(const char* op, const Arr& in, const char* in_name, const Arr& out,
                   const char* out_name, const Arr& big, const Arr& small) {
  check_float(in, op, in_name);
  check_input(in, op, in_name);
  check_output(out, op, out_name);
  check_same_dtype(in, out, op, in_name, out_name);
  if (in.ndim() < 2 || in.ndim() != out.ndim())
    fail_value(std::string(op) + ": " + describe(in, in_name) + " and " + describe(out, out_name) +
               " must both be (..., H, W) with the same number of dims");
  PoolArgs<T> a;
  a.P = 1;
  for (py::ssize_t i = 0; i + 2 < in.ndim(); ++i) {
    if (in.shape(i) != out.shape(i))
      fail_value(std::string(op) + ": leading dims of " + describe(in, in_name) + " and " +
                 describe(out, out_name) + " differ");
    a.P *= in.shape(i);
  }
  const py::ssize_t n = big.ndim();
  a.H = big.shape(n - 2);
  a.W = big.shape(n - 1);
  a.OH = small.shape(n - 2);
  a.OW = small.shape(n - 1);
  return a;
}

template <class T>
void window_params(const char* op, PoolArgs<T>& a, int64_t kh, int64_t kw, int64_t sh,
                   int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0)
    fail_value(std::string(op) + ": kernel size, stride and dilation must be >= 1 and padding "
               ">= 0, got kernel (" + num(kh) + ", " + num(kw) + "), stride (" + num(sh) + ", " +
               num(sw) + "), padding (" + num(ph) + ", " + num(pw) + "), dilation (" + num(dh) +
               ", " + num(dw) + ")");
  if (ph > kh / 2 || pw > kw / 2)
    fail_value(std::string(op) + ": pad should be at most half of effective kernel size, but "
               "got padding (" + num(ph) + ", " + num(pw) + ") for kernel (" + num(kh) + ", " +
               num(kw) + ")");
  a.kH = kh, a.kW = kw, a.sH = sh, a.sW = sw, a.pH = ph, a.pW = pw, a.dH = dh, a.dW = dw;
  const bool ok_h = a.OH == 0 || (a.OH - 1) * sh - ph < a.H;
  const bool ok_w = a.OW == 0 || (a.OW - 1) * sw - pw < a.W;
  if (!ok_h || !ok_w)
    fail_value(std::string(op) + ": output size (" + num(a.OH) + ", " + num(a.OW) +
               ") is too large for input size (" + num(a.H) + ", " + num(a.W) + ") with stride (" +
               num(sh) + ", " + num(sw) + ") and padding (" + num(ph) + ", " + num(pw) +
               "): the last window would start past the input");
}

template <class F>
void run(const char* op, const Arr& x, F&& f) {
  dispatch_float(x, op, "x", [&](auto t) { f(t); });
}
}  // namespace

void max_pool2d(const Arr& x, Arr out, const OptArr& indices, int64_t kernel_h, int64_t kernel_w,
                int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                int64_t dilation_h, int64_t dilation_w) {
  const char* op = "max_pool2d";
  if (indices) {
    check_output(*indices, op, "indices");
    if (dtype_of(*indices) != DType::i64)
      fail_type(std::string(op) + ": " + describe(*indices, "indices") + " must be int64");
    check_same_shape(out, *indices, op, "out", "indices");
  }
  run(op, x, [&](auto t) {
    using T = decltype(t);
    PoolArgs<T> a = planes<T>(op, x, "x", out, "out", x, out);
    window_params(op, a, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                  dilation_w);
    if (out.size() == 0) return;
    a.x = cdata<T>(x);
    a.y = data<T>(out);
    if (indices) {
      py::array ind = *indices;
      a.idx = data<int64_t>(ind);
    }
    py::gil_scoped_release nogil;
    pool_table<T>().max_pool2d(a);
  });
}

void max_pool2d_backward(const Arr& grad, const Arr& indices, Arr grad_input) {
  const char* op = "max_pool2d_backward";
  check_input(indices, op, "indices");
  if (dtype_of(indices) != DType::i64)
    fail_type(std::string(op) + ": " + describe(indices, "indices") + " must be int64");
  check_same_shape(grad, indices, op, "grad", "indices");
  run(op, grad, [&](auto t) {
    using T = decltype(t);
    PoolArgs<T> a = planes<T>(op, grad, "grad", grad_input, "grad_input", grad_input, grad);
    if (grad_input.size() == 0) return;
    a.x = cdata<T>(grad);
    a.y = data<T>(grad_input);
    a.cidx = cdata<int64_t>(indices);
    py::gil_scoped_release nogil;
    pool_table<T>().max_pool2d_backward(a);
  });
}

namespace {
template <class T>
void avg_params(const char* op, PoolArgs<T>& a, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                int64_t ph, int64_t pw, bool count_include_pad, int64_t divisor_override) {
  window_params(op, a, kh, kw, sh, sw, ph, pw, 1, 1);
  if (divisor_override < 0)
    fail_value(std::string(op) + ": divisor_override must be positive (0 = none), got " +
               num(divisor_override));
  a.count_include_pad = count_include_pad;
  a.divisor = divisor_override;
}
}  // namespace

void avg_pool2d(const Arr& x, Arr out, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                int64_t stride_w, int64_t pad_h, int64_t pad_w, bool count_include_pad,
                int64_t divisor_override) {
  const char* op = "avg_pool2d";
  run(op, x, [&](auto t) {
    using T = decltype(t);
    PoolArgs<T> a = planes<T>(op, x, "x", out, "out", x, out);
    avg_params(op, a, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad,
               divisor_override);
    if (out.size() == 0) return;
    a.x = cdata<T>(x);
    a.y = data<T>(out);
    py::gil_scoped_release nogil;
    pool_table<T>().avg_pool2d(a);
  });
}

void avg_pool2d_backward(const Arr& grad, Arr grad_input, int64_t kernel_h, int64_t kernel_w,
                         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                         bool count_include_pad, int64_t divisor_override) {
  const char* op = "avg_pool2d_backward";
  run(op, grad, [&](auto t) {
    using T = decltype(t);
    PoolArgs<T> a = planes<T>(op, grad, "grad", grad_input, "grad_input", grad_input, grad);
    avg_params(op, a, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad,
               divisor_override);
    if (grad_input.size() == 0) return;
    a.x = cdata<T>(grad);
    a.y = data<T>(grad_input);
    py::gil_scoped_release nogil;
    pool_table<T>().avg_pool2d_backward(a);
  });
}

void adaptive_avg_pool2d(const Arr& x, Arr out) {
  const char* op = "adaptive_avg_pool2d";
  run(op, x, [&](auto t) {
    using T = decltype(t);
    PoolArgs<T> a = planes<T>(op, x, "x", out, "out", x, out);
    if (out.size() == 0) return;
    if (a.H == 0 || a.W == 0)
      fail_value(std::string(op) + ": " + describe(x, "x") + " has an empty plane");
    a.x = cdata<T>(x);
    a.y = data<T>(out);
    py::gil_scoped_release nogil;
    pool_table<T>().adaptive_avg_pool2d(a);
  });
}

void adaptive_avg_pool2d_backward(const Arr& grad, Arr grad_input) {
  const char* op = "adaptive_avg_pool2d_backward";
  run(op, grad, [&](auto t) {
    using T = decltype(t);
    PoolArgs<T> a = planes<T>(op, grad, "grad", grad_input, "grad_input", grad_input, grad);
    if (grad_input.size() == 0) return;
    if (grad.size() == 0)
      fail_value(std::string(op) + ": " + describe(grad, "grad") + " has an empty plane");
    a.x = cdata<T>(grad);
    a.y = data<T>(grad_input);
    py::gil_scoped_release nogil;
    pool_table<T>().adaptive_avg_pool2d_backward(a);
  });
}
}  // namespace kiln::cpu
