// Internals shared by the convolution kernels (conv.cpp: argument checks and
// entry points; conv_gemm.cpp: im2col + GEMM paths; conv_im2col.cpp: the
// im2col / col2im panels; conv_depthwise*.cpp: the direct depthwise kernels).
//
// Notation (NCHW, PyTorch's conventions):
//   x (N, C, H, W), weight (Co, C/G, kh, kw), out (N, Co, Ho, Wo), G = groups
//   out[n, co, oh, ow] = bias[co] + sum_{c, i, j} w[co, c, i, j] *
//                        x[n, g*Cg + c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]
// with g = co / (Co/G), Cg = C/G, and x read as 0 outside [0, H) x [0, W).
// ph / pw are the top / left padding; the bottom / right padding is whatever
// the output size implies (PyTorch's symmetric padding, 'same' with the odd
// extra row at the bottom, or conv_transpose's output_padding).
//
// Like gemm.h this header holds only plain data and declarations, so it is
// safe to include from translation units compiled with different -m flags.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kiln::cpu::conv {

struct Geom {
  int64_t N, C, H, W;     // input
  int64_t Co, Ho, Wo;     // output
  int64_t kh, kw;         // kernel
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t G;              // groups
  int64_t Cg() const { return C / G; }
  int64_t Cog() const { return Co / G; }
  int64_t K() const { return Cg() * kh * kw; }  // GEMM depth of one group
  int64_t HW() const { return H * W; }
  int64_t HWo() const { return Ho * Wo; }
  // 1x1, stride 1, no padding: the input image is already the im2col panel.
  bool pointwise() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && Ho == H && Wo == W;
  }
  // groups == C: one input channel per group (depthwise, any channel multiplier).
  bool depthwise() const { return Cg() == 1 && G > 1; }
  double flops() const { return 2.0 * double(N) * double(Co) * double(HWo()) * double(K()); }
};

// im2col of one group of one image for output rows [oh0, oh1):
//   col[(c*kh + i)*kw + j][(oh - oh0)*Wo + ow] = x[c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]
// x points at the group's first channel; col is (K, (oh1 - oh0) * Wo).
template <class T>
void im2col(const T* x, const Geom& g, int64_t oh0, int64_t oh1, T* col);
// The adjoint: x[c, ih, iw] += col[...] for every in-range position of the
// same rows (x must be initialised by the caller).
template <class T>
void col2im_add(const T* col, const Geom& g, int64_t oh0, int64_t oh1, T* x);

// Direct depthwise kernels, one per ISA (conv_depthwise_<isa>.cpp); each runs
// the whole batch with OpenMP. Co = m * C (channel multiplier m).
template <class T>
struct DwArgs {
  const T* x;    // forward: input;  dgrad: unused;     wgrad: input
  const T* w;    // weight (Co, 1, kh, kw); wgrad: unused
  const T* gy;   // dgrad / wgrad: gradient of the output; forward: bias (Co,) or nullptr
  T* out;        // forward: out; dgrad: grad_input; wgrad: grad_weight
  T* gb;         // wgrad: grad_bias (Co,) or nullptr
  Geom g;
};
void dw_forward_avx512(const DwArgs<float>& a);
void dw_forward_avx512(const DwArgs<double>& a);
void dw_dgrad_avx512(const DwArgs<float>& a);
void dw_dgrad_avx512(const DwArgs<double>& a);
void dw_wgrad_avx512(const DwArgs<float>& a);
void dw_wgrad_avx512(const DwArgs<double>& a);
void dw_forward_avx2(const DwArgs<float>& a);
void dw_forward_avx2(const DwArgs<double>& a);
void dw_dgrad_avx2(const DwArgs<float>& a);
void dw_dgrad_avx2(const DwArgs<double>& a);
void dw_wgrad_avx2(const DwArgs<float>& a);
void dw_wgrad_avx2(const DwArgs<double>& a);
void dw_forward_scalar(const DwArgs<float>& a);
void dw_forward_scalar(const DwArgs<double>& a);
void dw_dgrad_scalar(const DwArgs<float>& a);
void dw_dgrad_scalar(const DwArgs<double>& a);
void dw_wgrad_scalar(const DwArgs<float>& a);
void dw_wgrad_scalar(const DwArgs<double>& a);

// im2col + GEMM paths (conv_gemm.cpp).
template <class T>
void gemm_forward(const T* x, const T* w, const T* bias, T* out, const Geom& g);
template <class T>
void gemm_dgrad(const T* gy, const T* w, T* gx, const Geom& g);
template <class T>
void gemm_wgrad(const T* gy, const T* x, T* gw, T* gb, const Geom& g);

// AVX-512 GEMM steps with a pre-packed A and leading dimensions for B and C
// (conv_gemm_avx512.cpp; only called when isa() == avx512):
//   pack_info: elements of the packed A (rows x depth) and of the edge buffer
//   pack_a:    A(i, k) = src[i*rs + k*cs] into MR-row micro-panels
//   gemm_packed: C (M x N, ldc) = (accumulate ? C : 0) + A_packed (M x K) @ op(B),
//                op(B) = B (K x N, row stride ldb) or, trans_b, B^T with B (N x K, ldb)
struct PackInfo {
  int64_t a_elems, edge_elems;
};
template <class T>
PackInfo pack_info_avx512(int64_t rows, int64_t depth);
template <class T>
void pack_a_avx512(const T* src, int64_t rows, int64_t depth, int64_t rs, int64_t cs, T* dst);
template <class T>
void gemm_packed_avx512(const T* ap, int64_t M, int64_t K, const T* b, int64_t ldb, bool trans_b,
                        int64_t N, T* c, int64_t ldc, bool accumulate, T* ebuf);

// Per-thread, grow-only, 64-byte aligned scratch for the conv kernels (slots
// 0..3; separate from the GEMM's own packing buffers). nullptr when out of memory.
void* workspace(int slot, std::size_t bytes);

}  // namespace kiln::cpu::conv
