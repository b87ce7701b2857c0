// Depthwise convolution kernels for the baseline x86-64 target (SSE2): the loops of
// conv_depthwise.h compiled without ISA flags; used when isa() == scalar.
#include "cpu/conv_depthwise.h"

namespace kiln::cpu::conv {
void dw_forward_scalar(const DwArgs<float>& a) { dw_forward(a); }
void dw_forward_scalar(const DwArgs<double>& a) { dw_forward(a); }
void dw_dgrad_scalar(const DwArgs<float>& a) { dw_dgrad(a); }
void dw_dgrad_scalar(const DwArgs<double>& a) { dw_dgrad(a); }
void dw_wgrad_scalar(const DwArgs<float>& a) { dw_wgrad(a); }
void dw_wgrad_scalar(const DwArgs<double>& a) { dw_wgrad(a); }
}  // namespace kiln::cpu::conv
