// Depthwise convolution kernels for AVX-512: the loops of conv_depthwise.h
// compiled with -mavx512f/dq/bw/vl (CMakeLists.txt); used when isa() == avx512.
// Full 512-bit vectors for the loops below (GCC otherwise prefers 256-bit ones
// with -mavx512f): a 16-wide output row is then one register.
#pragma GCC target("prefer-vector-width=512")
#include "cpu/conv_depthwise.h"

namespace kiln::cpu::conv {
void dw_forward_avx512(const DwArgs<float>& a) { dw_forward(a); }
void dw_forward_avx512(const DwArgs<double>& a) { dw_forward(a); }
void dw_dgrad_avx512(const DwArgs<float>& a) { dw_dgrad(a); }
void dw_dgrad_avx512(const DwArgs<double>& a) { dw_dgrad(a); }
void dw_wgrad_avx512(const DwArgs<float>& a) { dw_wgrad(a); }
void dw_wgrad_avx512(const DwArgs<double>& a) { dw_wgrad(a); }
}  // namespace kiln::cpu::conv
