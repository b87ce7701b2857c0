// Depthwise convolution kernels for AVX-512: the loops of conv_depthwise.h
// compiled with -mavx512f/dq/bw/vl (CMakeLists.txt); used when isa() == avx512.
#include "cpu/conv_depthwise.h"

namespace kiln::cpu::conv {
void dw_forward_avx512(const DwArgs<float>& a) { dw_forward(a); }
void dw_forward_avx512(const DwArgs<double>& a) { dw_forward(a); }
void dw_dgrad_avx512(const DwArgs<float>& a) { dw_dgrad(a); }
void dw_dgrad_avx512(const DwArgs<double>& a) { dw_dgrad(a); }
void dw_wgrad_avx512(const DwArgs<float>& a) { dw_wgrad(a); }
void dw_wgrad_avx512(const DwArgs<double>& a) { dw_wgrad(a); }
}  // namespace kiln::cpu::conv
