// dropout / dropout_backward drivers with kiln's Philox convention (common/philox.h): the
// element with row-major index i (or, for feature dropout, the run of `inner` elements with
// index f = i / inner) is kept when its uniform is >= p and then scaled by 1 / (1 - p).
// The backward regenerates the same mask from (seed, index) instead of storing it, so it is
// the forward applied to the gradient. The mask is a pure function of (seed, index): the
// same for any thread count and any ISA (integer arithmetic only). p = 1 zeroes (x * 0, as
// PyTorch); p = 0 copies. The loops are in norm_impl.h.
#include <string>

#include "cpu/kernels.h"
#include "cpu/norm_kernels.h"

namespace kiln::cpu {
namespace {
void run_dropout(const char* op, const char* xname, const char* yname, const Arr& x, Arr& y,
                 uint64_t seed, double p, int64_t inner) {
  check_float(x, op, xname);
  check_input(x, op, xname);
  check_output(y, op, yname);
  check_same_dtype(x, y, op, xname, yname);
  check_same_shape(x, y, op, xname, yname);
  if (!(p >= 0.0 && p <= 1.0))
    fail_value(std::string(op) + ": dropout probability has to be between 0 and 1, but got " +
               std::to_string(p));
  if (inner < 1 || (x.size() % inner) != 0)
    fail_value(std::string(op) + ": inner = " + std::to_string(inner) +
               " must be >= 1 and divide the size of " + describe(x, xname));
  const int64_t n = x.size();
  if (n == 0) return;
  dispatch_float(x, op, xname, [&](auto t) {
    using T = decltype(t);
    const T* xp = cdata<T>(x);
    T* yp = data<T>(y);
    py::gil_scoped_release nogil;
    if (p == 0.0 || p == 1.0) {
      const T s = p == 0.0 ? T(1) : T(0);
      for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] * s;
      return;
    }
    DropoutArgs<T> a;
    a.x = xp;
    a.y = yp;
    a.n = n;
    a.inner = inner;
    a.seed = seed;
    a.p = p;
    norm_table<T>().dropout(a);
  });
}
}  // namespace

void dropout(const Arr& x, Arr out, uint64_t seed, double p, int64_t inner) {
  run_dropout("dropout", "x", "out", x, out, seed, p, inner);
}
void dropout_backward(const Arr& grad, Arr grad_input, uint64_t seed, double p, int64_t inner) {
  run_dropout("dropout_backward", "grad", "grad_input", grad, grad_input, seed, p, inner);
}
}  // namespace kiln::cpu
