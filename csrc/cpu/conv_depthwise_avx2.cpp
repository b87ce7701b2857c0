// Depthwise convolution kernels for AVX2 + FMA: the loops of conv_depthwise.h
// compiled with -mavx2 -mfma (CMakeLists.txt); used when isa() == avx2.
#include "cpu/conv_depthwise.h"

namespace kiln::cpu::conv {
void dw_forward_avx2(const DwArgs<float>& a) { dw_forward(a); }
void dw_forward_avx2(const DwArgs<double>& a) { dw_forward(a); }
void dw_dgrad_avx2(const DwArgs<float>& a) { dw_dgrad(a); }
void dw_dgrad_avx2(const DwArgs<double>& a) { dw_dgrad(a); }
void dw_wgrad_avx2(const DwArgs<float>& a) { dw_wgrad(a); }
void dw_wgrad_avx2(const DwArgs<double>& a) { dw_wgrad(a); }
}  // namespace kiln::cpu::conv
