// conv2d / conv2d_dgrad / conv2d_wgrad: argument checks and the choice of
// algorithm (see conv.h for the notation).
//   conv2d        out = conv(x, weight) + bias
//   conv2d_dgrad  grad_input  = d(sum grad * conv(x, weight)) / dx  (the transposed conv)
//   conv2d_wgrad  grad_weight = d(...) / dweight, grad_bias = sum of grad over n, oh, ow
// Depthwise layers (groups == C) run the direct kernels of conv_depthwise.h;
// everything else runs im2col + GEMM (conv_gemm.cpp), with no im2col for a
// 1x1 stride-1 unpadded conv.
//
// Padding: padding_h / padding_w are the top / left padding. The bottom /
// right padding is implied by the output size, and may be anything from
// padding - max(stride, dilation) + 1 to padding + 1: PyTorch's symmetric
// padding (the floor in the output-size formula), 'same' padding with an odd
// total (the extra row / column at the bottom / right, as PyTorch pads), and
// conv_transpose2d's output_padding all fall in that range.
#include <algorithm>

#include "cpu/conv.h"
#include "cpu/isa.h"
#include "cpu/kernels.h"

namespace kiln::cpu {
namespace {
using conv::Geom;

std::string pair_str(int64_t a, int64_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

bool overlaps(const py::array& x, const py::array& y) {
  const char* x0 = static_cast<const char*>(x.data());
  const char* y0 = static_cast<const char*>(y.data());
  const py::ssize_t nx = x.nbytes(), ny = y.nbytes();
  return nx > 0 && ny > 0 && x0 < y0 + ny && y0 < x0 + nx;
}

struct Params {
  int64_t sh, sw, ph, pw, dh, dw, G;
};

// Validates one call. xa: the (N, C, H, W) side (x or grad_input), ya: the
// (N, Co, Ho, Wo) side (out or grad). Names are the kernel's argument names.
Geom check(const char* op, const Arr& xa, const char* xn, const Arr& w, const char* wn,
           const Arr& ya, const char* yn, const Params& p) {
  check_float(xa, op, xn);
  check_same_dtype(xa, w, op, xn, wn);
  check_same_dtype(xa, ya, op, xn, yn);
  for (const auto& [a, name] : {std::pair<const Arr&, const char*>{xa, xn}, {w, wn}, {ya, yn}})
    if (a.ndim() != 4)
      fail_value(std::string(op) + ": " + describe(a, name) + " must be 4-D (" +
                 (a.is(w) ? "out_channels, in_channels / groups, kH, kW" : "N, C, H, W") + ")");
  const std::string cfg = " with stride " + pair_str(p.sh, p.sw) + ", padding " +
                          pair_str(p.ph, p.pw) + ", dilation " + pair_str(p.dh, p.dw) +
                          ", groups " + std::to_string(p.G);
  if (p.sh < 1 || p.sw < 1 || p.dh < 1 || p.dw < 1 || p.ph < 0 || p.pw < 0 || p.G < 1)
    fail_value(std::string(op) + ": invalid configuration" + cfg +
               " (stride, dilation and groups must be >= 1, padding >= 0)");
  Geom g{xa.shape(0), xa.shape(1), xa.shape(2), xa.shape(3), ya.shape(1), ya.shape(2),
         ya.shape(3), w.shape(2),  w.shape(3),  p.sh,        p.sw,        p.ph,
         p.pw,        p.dh,        p.dw,        p.G};
  const auto shapes = [&] {
    return describe(xa, xn) + ", " + describe(w, wn) + " and " + describe(ya, yn) + cfg;
  };
  if (g.C % g.G || w.shape(0) % g.G)
    fail_value(std::string(op) + ": in_channels (" + std::to_string(g.C) +
               ") and out_channels (" + std::to_string(w.shape(0)) +
               ") must both be divisible by groups: " + shapes());
  if (w.shape(0) != g.Co || w.shape(1) != g.C / g.G)
    fail_value(std::string(op) + ": expected " + wn + " of shape (" + std::to_string(g.Co) +
               ", " + std::to_string(g.C / g.G) + ", kH, kW) for " + std::to_string(g.C) +
               " input and " + std::to_string(g.Co) + " output channels; got " + shapes());
  if (ya.shape(0) != g.N)
    fail_value(std::string(op) + ": batch sizes differ: " + shapes());
  if (g.kh < 1 || g.kw < 1)
    fail_value(std::string(op) + ": empty kernel: " + shapes());
  // Output size: PyTorch's formula with symmetric padding; anything the
  // implied bottom/right padding allows (see the header) is accepted too.
  const auto out_size = [](int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d) {
    const int64_t span = in + 2 * pad - d * (k - 1) - 1;
    return span < 0 ? int64_t(0) : span / s + 1;
  };
  const int64_t eh = out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  const int64_t ew = out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  const auto implied_ok = [](int64_t in, int64_t o, int64_t k, int64_t s, int64_t pad, int64_t d) {
    const int64_t after = (o - 1) * s + d * (k - 1) + 1 - in - pad;  // bottom / right padding
    return o >= 1 && after <= pad + 1 && after >= pad - std::max(s, d) + 1;
  };
  const bool ok = implied_ok(g.H, g.Ho, g.kh, g.sh, g.ph, g.dh) &&
                  implied_ok(g.W, g.Wo, g.kw, g.sw, g.pw, g.dw);
  if (!ok && (eh < 1 || ew < 1))
    fail_value(std::string(op) + ": kernel size (dilated) " +
               pair_str(g.dh * (g.kh - 1) + 1, g.dw * (g.kw - 1) + 1) +
               " is larger than the padded input " + pair_str(g.H + 2 * g.ph, g.W + 2 * g.pw) +
               ": " + shapes());
  if (!ok)
    fail_value(std::string(op) + ": " + yn + " of shape " + shape_str(ya) +
               " does not match the convolution of " + xn + " of shape " + shape_str(xa) +
               " by " + wn + " of shape " + shape_str(w) + cfg + ": expected (" +
               std::to_string(g.N) + ", " + std::to_string(g.Co) + ", " + std::to_string(eh) +
               ", " + std::to_string(ew) + ")");
  return g;
}

// The direct depthwise kernel for the ISA in use.
template <class T, class F512, class F2, class F1>
void dw_dispatch(const conv::DwArgs<T>& a, F512 f512, F2 f2, F1 f1) {
  switch (isa()) {
    case Isa::avx512: return f512(a);
    case Isa::avx2: return f2(a);
    default: return f1(a);
  }
}
}  // namespace

void conv2d(const Arr& x, const Arr& weight, const OptArr& bias, Arr out, int64_t stride_h,
            int64_t stride_w, int64_t padding_h, int64_t padding_w, int64_t dilation_h,
            int64_t dilation_w, int64_t groups) {
  const char* op = "conv2d";
  const Geom g = check(op, x, "x", weight, "weight", out, "out",
                       {stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups});
  check_input(x, op, "x");
  check_input(weight, op, "weight");
  check_output(out, op, "out");
  if (bias) {
    check_same_dtype(x, *bias, op, "x", "bias");
    check_input(*bias, op, "bias");
    if (bias->ndim() != 1 || bias->shape(0) != g.Co)
      fail_value(std::string(op) + ": " + describe(*bias, "bias") + " must be (" +
                 std::to_string(g.Co) + ",) for " + describe(weight, "weight"));
  }
  if (overlaps(out, x) || overlaps(out, weight) || (bias && overlaps(out, *bias)))
    fail_value(std::string(op) + ": out of shape " + shape_str(out) +
               " overlaps an input; it must be a separate array");
  dispatch_float(x, op, "x", [&](auto tag) {
    using T = decltype(tag);
    const T* px = cdata<T>(x);
    const T* pw = cdata<T>(weight);
    const T* pb = bias ? cdata<T>(*bias) : nullptr;
    T* po = data<T>(out);
    py::gil_scoped_release nogil;
    if (g.N == 0 || g.Co == 0) return;
    if (g.depthwise()) {
      const conv::DwArgs<T> a{px, pw, pb, po, nullptr, g};
      dw_dispatch(a, [](const auto& v) { conv::dw_forward_avx512(v); },
                  [](const auto& v) { conv::dw_forward_avx2(v); },
                  [](const auto& v) { conv::dw_forward_scalar(v); });
    } else {
      conv::gemm_forward(px, pw, pb, po, g);
    }
  });
}

void conv2d_dgrad(const Arr& grad, const Arr& weight, Arr grad_input, int64_t stride_h,
                  int64_t stride_w, int64_t padding_h, int64_t padding_w, int64_t dilation_h,
                  int64_t dilation_w, int64_t groups) {
  const char* op = "conv2d_dgrad";
  const Geom g = check(op, grad_input, "grad_input", weight, "weight", grad, "grad",
                       {stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups});
  check_input(grad, op, "grad");
  check_input(weight, op, "weight");
  check_output(grad_input, op, "grad_input");
  if (overlaps(grad_input, grad) || overlaps(grad_input, weight))
    fail_value(std::string(op) + ": grad_input of shape " + shape_str(grad_input) +
               " overlaps an input; it must be a separate array");
  dispatch_float(grad, op, "grad", [&](auto tag) {
    using T = decltype(tag);
    const T* pg = cdata<T>(grad);
    const T* pw = cdata<T>(weight);
    T* gx = data<T>(grad_input);
    py::gil_scoped_release nogil;
    if (g.N == 0 || g.C == 0) return;
    if (g.Co == 0) {  // no output channel reads x
      std::fill(gx, gx + g.N * g.C * g.HW(), T(0));
      return;
    }
    if (g.depthwise()) {
      const conv::DwArgs<T> a{nullptr, pw, pg, gx, nullptr, g};
      dw_dispatch(a, [](const auto& v) { conv::dw_dgrad_avx512(v); },
                  [](const auto& v) { conv::dw_dgrad_avx2(v); },
                  [](const auto& v) { conv::dw_dgrad_scalar(v); });
    } else {
      conv::gemm_dgrad(pg, pw, gx, g);
    }
  });
}

void conv2d_wgrad(const Arr& grad, const Arr& x, Arr grad_weight, const OptArr& grad_bias,
                  int64_t stride_h, int64_t stride_w, int64_t padding_h, int64_t padding_w,
                  int64_t dilation_h, int64_t dilation_w, int64_t groups) {
  const char* op = "conv2d_wgrad";
  const Geom g = check(op, x, "x", grad_weight, "grad_weight", grad, "grad",
                       {stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups});
  check_input(grad, op, "grad");
  check_input(x, op, "x");
  check_output(grad_weight, op, "grad_weight");
  if (grad_bias) {
    check_same_dtype(x, *grad_bias, op, "x", "grad_bias");
    check_output(*grad_bias, op, "grad_bias");
    if (grad_bias->ndim() != 1 || grad_bias->shape(0) != g.Co)
      fail_value(std::string(op) + ": " + describe(*grad_bias, "grad_bias") + " must be (" +
                 std::to_string(g.Co) + ",) for " + describe(grad_weight, "grad_weight"));
    if (overlaps(*grad_bias, grad) || overlaps(*grad_bias, x) ||
        overlaps(*grad_bias, grad_weight))
      fail_value(std::string(op) + ": grad_bias overlaps another argument");
  }
  if (overlaps(grad_weight, grad) || overlaps(grad_weight, x))
    fail_value(std::string(op) + ": grad_weight of shape " + shape_str(grad_weight) +
               " overlaps an input; it must be a separate array");
  dispatch_float(x, op, "x", [&](auto tag) {
    using T = decltype(tag);
    const T* pg = cdata<T>(grad);
    const T* px = cdata<T>(x);
    T* gw = data<T>(grad_weight);
    T* gb = grad_bias ? static_cast<T*>(Arr(*grad_bias).mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    if (g.Co == 0) return;
    if (g.N == 0 || g.C == 0) {  // grad_weight is an empty sum; grad_bias is not when C == 0
      std::fill(gw, gw + g.Co * g.K(), T(0));
      if (gb)
        for (int64_t co = 0; co < g.Co; ++co) {
          T s = 0;
          for (int64_t n = 0; n < g.N; ++n)
            for (int64_t p = 0; p < g.HWo(); ++p) s += pg[(n * g.Co + co) * g.HWo() + p];
          gb[co] = s;
        }
      return;
    }
    if (g.depthwise()) {
      const conv::DwArgs<T> a{px, nullptr, pg, gw, gb, g};
      dw_dispatch(a, [](const auto& v) { conv::dw_wgrad_avx512(v); },
                  [](const auto& v) { conv::dw_wgrad_avx2(v); },
                  [](const auto& v) { conv::dw_wgrad_scalar(v); });
    } else {
      conv::gemm_wgrad(pg, px, gw, gb, g);
    }
  });
}

}  // namespace kiln::cpu
