// Activation kernels y = f(x) and their backward grad_input = grad * f'(.), elementwise over
// any contiguous shape, float32 and float64:
//   relu, leaky_relu, sigmoid, tanh, gelu (exact: x Phi(x); tanh: 0.5 x (1 + tanh(u))), silu,
//   softplus (beta, threshold), elu (alpha).
// The branch conditions are PyTorch's (relu' = x <= 0 ? 0 : 1, leaky_relu' = x > 0 ? 1 : slope,
// elu' = x > 0 ? 1 : alpha e^x (NaN -> NaN, as PyTorch float64), softplus linear when
// beta x > threshold), so kinks and NaN behave the same. Where PyTorch's formula cancels we
// use an equivalent stable one:
//   gelu exact  x * erfc(-x/sqrt 2)/2          (not 1 + erf(.), which cancels for x << 0)
//   gelu tanh   x / (1 + exp(-2u))             (= 0.5 x (1 + tanh u))
//   softplus    max(t, 0) + log1p(exp(-|t|))   (= log1p(exp t), never overflows)
// float32 on AVX-512 machines runs the vectorised math of activation_avx512.cpp; float64 and
// the scalar/avx2 ISA levels use std:: functions in the element type (gelu's erfc in double,
// see phi_s). Kernels that are only compares and multiplies (relu, sigmoid/tanh backward)
// are plain loops that the compiler vectorises; large arrays are split over OpenMP threads.
#include <cmath>

#include "cpu/kernels.h"
#include "cpu/vecmath.h"

namespace kiln::cpu {
namespace {

void check_unary(const char* op, const Arr& x, const Arr& out) {
  check_float(x, op, "x");
  check_input(x, op, "x");
  check_same_dtype(x, out, op, "x", "out");
  check_same_shape(x, out, op, "x", "out");
  check_output(out, op, "out");
}

void check_backward(const char* op, const Arr& grad, const Arr& x, const char* xname,
                    const Arr& gi) {
  check_float(grad, op, "grad");
  check_input(grad, op, "grad");
  check_input(x, op, xname);
  check_same_dtype(grad, x, op, "grad", xname);
  check_same_dtype(grad, gi, op, "grad", "grad_input");
  check_same_shape(grad, x, op, "grad", xname);
  check_same_shape(grad, gi, op, "grad", "grad_input");
  check_output(gi, op, "grad_input");
}

bool parse_approximate(const char* op, const std::string& a) {
  if (a == "none") return false;
  if (a == "tanh") return true;
  fail_value(std::string(op) + ": approximate must be 'none' or 'tanh', got '" + a + "'");
}

// out = f(x) elementwise. vec(x, y, n) is the AVX-512 float32 routine, used when T is float
// and the ISA allows it; otherwise the scalar functor f runs (vectorised by the compiler
// where it can be).
template <class T, class V, class F>
void unary(const Arr& x, Arr& out, V vec, F f) {
  const T* xp = cdata<T>(x);
  T* yp = data<T>(out);
  const int64_t n = x.size();
  const bool simd = std::is_same_v<T, float> && !std::is_same_v<V, std::nullptr_t> && use_avx512();
  py::gil_scoped_release nogil;
  parallel_chunks(n, [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float> && !std::is_same_v<V, std::nullptr_t>) {
      if (simd) return vec(xp + b, yp + b, e - b);
    }
    for (int64_t i = b; i < e; ++i) yp[i] = f(xp[i]);
  });
}

// gi = f(g, x) elementwise; same dispatch as unary.
template <class T, class V, class F>
void binary(const Arr& g, const Arr& x, Arr& gi, V vec, F f) {
  const T* gp = cdata<T>(g);
  const T* xp = cdata<T>(x);
  T* op = data<T>(gi);
  const int64_t n = x.size();
  const bool simd = std::is_same_v<T, float> && !std::is_same_v<V, std::nullptr_t> && use_avx512();
  py::gil_scoped_release nogil;
  parallel_chunks(n, [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float> && !std::is_same_v<V, std::nullptr_t>) {
      if (simd) return vec(gp + b, xp + b, op + b, e - b);
    }
    for (int64_t i = b; i < e; ++i) op[i] = f(gp[i], xp[i]);
  });
}

template <class T> T sigmoid_s(T v) { return T(1) / (T(1) + std::exp(-v)); }

// Normal CDF through erfc: no cancellation in either tail. Evaluated in double even for
// float: rounding -x/sqrt(2) to float would cost 2 z^2 * 6e-8 relative (1e-5 at z = 10).
template <class T> T phi_s(T v) { return T(0.5 * std::erfc(-double(v) * 0.70710678118654752440)); }

constexpr double kBeta = 0.79788456080286535588;  // sqrt(2/pi), gelu tanh approximation
constexpr double kKappa = 0.044715;
}  // namespace

void relu(const Arr& x, Arr out) {
  check_unary("relu", x, out);
  dispatch_float(x, "relu", "x", [&](auto t) {
    using T = decltype(t);
    unary<T>(x, out, nullptr, [](T v) { return v < T(0) ? T(0) : v; });  // NaN passes through
  });
}

void relu_backward(const Arr& grad, const Arr& x, Arr grad_input) {
  check_backward("relu_backward", grad, x, "x", grad_input);
  dispatch_float(x, "relu_backward", "x", [&](auto t) {
    using T = decltype(t);
    binary<T>(grad, x, grad_input, nullptr, [](T g, T v) { return v <= T(0) ? T(0) : g; });
  });
}

void leaky_relu(const Arr& x, Arr out, double negative_slope) {
  check_unary("leaky_relu", x, out);
  dispatch_float(x, "leaky_relu", "x", [&](auto t) {
    using T = decltype(t);
    const T s = T(negative_slope);
    auto vec = [=](const float* a, float* y, int64_t n) { avx512::leaky_relu(a, y, n, float(s)); };
    // Portable form: the two selects carry no arithmetic and the arithmetic is unconditional;
    // written as x > 0 ? x : x * slope the compiler keeps a branch (the multiply could trap),
    // which mispredicts on random signs (~30x slower). Same values as PyTorch (NaN, -0).
    unary<T>(x, out, vec, [s](T v) {
      const T pos = v < T(0) ? T(0) : v, neg = v > T(0) ? T(0) : v;
      return pos + neg * s;
    });
  });
}

void leaky_relu_backward(const Arr& grad, const Arr& x, Arr grad_input, double negative_slope) {
  check_backward("leaky_relu_backward", grad, x, "x", grad_input);
  dispatch_float(x, "leaky_relu_backward", "x", [&](auto t) {
    using T = decltype(t);
    const T s = T(negative_slope);
    auto vec = [=](const float* g, const float* a, float* y, int64_t n) {
      avx512::leaky_relu_backward(g, a, y, n, float(s));
    };
    binary<T>(grad, x, grad_input, vec, [s](T g, T v) {
      const T pos = v > T(0) ? g : T(0), neg = v > T(0) ? T(0) : g;  // as in leaky_relu
      return pos + neg * s;
    });
  });
}

void sigmoid(const Arr& x, Arr out) {
  check_unary("sigmoid", x, out);
  dispatch_float(x, "sigmoid", "x", [&](auto t) {
    using T = decltype(t);
    unary<T>(x, out, avx512::sigmoid, [](T v) { return sigmoid_s(v); });
  });
}

void sigmoid_backward(const Arr& grad, const Arr& y, Arr grad_input) {
  check_backward("sigmoid_backward", grad, y, "y", grad_input);
  dispatch_float(y, "sigmoid_backward", "y", [&](auto t) {
    using T = decltype(t);
    binary<T>(grad, y, grad_input, nullptr, [](T g, T s) { return g * (T(1) - s) * s; });
  });
}

void tanh(const Arr& x, Arr out) {
  check_unary("tanh", x, out);
  dispatch_float(x, "tanh", "x", [&](auto t) {
    using T = decltype(t);
    unary<T>(x, out, avx512::tanh, [](T v) { return std::tanh(v); });
  });
}

void tanh_backward(const Arr& grad, const Arr& y, Arr grad_input) {
  check_backward("tanh_backward", grad, y, "y", grad_input);
  dispatch_float(y, "tanh_backward", "y", [&](auto t) {
    using T = decltype(t);
    binary<T>(grad, y, grad_input, nullptr, [](T g, T v) { return g * (T(1) - v * v); });
  });
}

void gelu(const Arr& x, Arr out, const std::string& approximate) {
  const bool ta = parse_approximate("gelu", approximate);
  check_unary("gelu", x, out);
  dispatch_float(x, "gelu", "x", [&](auto t) {
    using T = decltype(t);
    if (ta) {
      auto vec = [](const float* a, float* b, int64_t n) { avx512::gelu(a, b, n, true); };
      unary<T>(x, out, vec, [](T v) {
        const T u = T(kBeta) * (v + T(kKappa) * v * v * v);
        return v / (T(1) + std::exp(T(-2) * u));
      });
    } else {
      auto vec = [](const float* a, float* b, int64_t n) { avx512::gelu(a, b, n, false); };
      unary<T>(x, out, vec, [](T v) { return T(double(v) * (0.5 * std::erfc(-double(v) * 0.70710678118654752440))); });
    }
  });
}

void gelu_backward(const Arr& grad, const Arr& x, Arr grad_input, const std::string& approximate) {
  const bool ta = parse_approximate("gelu_backward", approximate);
  check_backward("gelu_backward", grad, x, "x", grad_input);
  dispatch_float(x, "gelu_backward", "x", [&](auto t) {
    using T = decltype(t);
    if (ta) {
      auto vec = [](const float* g, const float* a, float* b, int64_t n) {
        avx512::gelu_backward(g, a, b, n, true);
      };
      binary<T>(grad, x, grad_input, vec, [](T g, T v) {
        // d/dx 0.5 x (1 + tanh u) = s + 2 x s (1 - s) u',  s = sigmoid(2u)
        const T x2 = v * v;
        const T u = T(kBeta) * v * (T(1) + T(kKappa) * x2);
        const T du = T(kBeta) * (T(1) + T(3 * kKappa) * x2);
        const T s = sigmoid_s(T(2) * u);
        return g * (s + T(2) * v * s * (T(1) - s) * du);
      });
    } else {
      auto vec = [](const float* g, const float* a, float* b, int64_t n) {
        avx512::gelu_backward(g, a, b, n, false);
      };
      binary<T>(grad, x, grad_input, vec, [](T g, T v) {
        // Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
        const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * v * v);
        return g * (phi_s(v) + v * pdf);
      });
    }
  });
}

void silu(const Arr& x, Arr out) {
  check_unary("silu", x, out);
  dispatch_float(x, "silu", "x", [&](auto t) {
    using T = decltype(t);
    unary<T>(x, out, avx512::silu, [](T v) { return v / (T(1) + std::exp(-v)); });
  });
}

void silu_backward(const Arr& grad, const Arr& x, Arr grad_input) {
  check_backward("silu_backward", grad, x, "x", grad_input);
  dispatch_float(x, "silu_backward", "x", [&](auto t) {
    using T = decltype(t);
    binary<T>(grad, x, grad_input, avx512::silu_backward, [](T g, T v) {
      const T s = sigmoid_s(v);
      return g * s * (T(1) + v * (T(1) - s));
    });
  });
}

void softplus(const Arr& x, Arr out, double beta, double threshold) {
  check_unary("softplus", x, out);
  dispatch_float(x, "softplus", "x", [&](auto t) {
    using T = decltype(t);
    const T b = T(beta), th = T(threshold);
    auto vec = [=](const float* a, float* y, int64_t n) { avx512::softplus(a, y, n, float(b), float(th)); };
    unary<T>(x, out, vec, [b, th](T v) {
      const T z = v * b;
      if (z > th) return v;
      return (std::max(z, T(0)) + std::log1p(std::exp(-std::fabs(z)))) / b;
    });
  });
}

void softplus_backward(const Arr& grad, const Arr& x, Arr grad_input, double beta,
                       double threshold) {
  check_backward("softplus_backward", grad, x, "x", grad_input);
  dispatch_float(x, "softplus_backward", "x", [&](auto t) {
    using T = decltype(t);
    const T b = T(beta), th = T(threshold);
    auto vec = [=](const float* g, const float* a, float* y, int64_t n) {
      avx512::softplus_backward(g, a, y, n, float(b), float(th));
    };
    binary<T>(grad, x, grad_input, vec, [b, th](T g, T v) {
      const T z = v * b;
      return z > th ? g : g * sigmoid_s(z);
    });
  });
}

void elu(const Arr& x, Arr out, double alpha) {
  check_unary("elu", x, out);
  dispatch_float(x, "elu", "x", [&](auto t) {
    using T = decltype(t);
    const T a = T(alpha);
    auto vec = [=](const float* p, float* y, int64_t n) { avx512::elu(p, y, n, float(a)); };
    unary<T>(x, out, vec, [a](T v) { return v <= T(0) ? a * std::expm1(v) : v; });
  });
}

void elu_backward(const Arr& grad, const Arr& x, Arr grad_input, double alpha) {
  check_backward("elu_backward", grad, x, "x", grad_input);
  dispatch_float(x, "elu_backward", "x", [&](auto t) {
    using T = decltype(t);
    const T a = T(alpha);
    auto vec = [=](const float* g, const float* p, float* y, int64_t n) {
      avx512::elu_backward(g, p, y, n, float(a));
    };
    // Written as x > 0 so that NaN x takes the exp branch and gives NaN (PyTorch float64 does).
    binary<T>(grad, x, grad_input, vec, [a](T g, T v) { return v > T(0) ? g : g * a * std::exp(v); });
  });
}

}  // namespace kiln::cpu
