// im2col / col2im panels for the GEMM convolution paths, and the conv
// kernels' per-thread workspace.
//
// im2col lays one group of one image out as the (K, rows*Wo) B operand of
//   out_group (Cog, rows*Wo) = W_group (Cog, K) @ col (K, rows*Wo),
// K = Cg*kh*kw in the weight's (c, i, j) order, so the weight is used as is:
//   col[(c*kh + i)*kw + j][r*Wo + ow] = x[c, (oh0 + r)*sh + i*dh - ph, ow*sw + j*dw - pw]
// (0 outside the image). col2im_add is its adjoint (scatter-add), used by the
// input gradient: gx += col2im(W^T @ gy).
//
// For each (c, i, j, oh) the valid output columns form one interval
// [ow_lo, ow_hi) (computed once per (j) since it does not depend on the row),
// so the inner loops have no bounds tests; at stride 1 they are contiguous
// copies / adds that the compiler vectorizes.
#include <cstdlib>
#include <cstring>

#include "cpu/allocator.h"
#include "cpu/conv.h"

namespace kiln::cpu::conv {
namespace {

// Output columns ow whose input column ow*sw + off lies in [0, W).
inline void valid_cols(int64_t off, int64_t sw, int64_t W, int64_t Wo, int64_t* lo,
                       int64_t* hi) {
  // ow*sw + off >= 0  <=>  ow >= ceil(-off / sw)
  int64_t l = off >= 0 ? 0 : (-off + sw - 1) / sw;
  // ow*sw + off <= W - 1  <=>  ow <= floor((W - 1 - off) / sw)
  int64_t h = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
  if (h > Wo) h = Wo;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

thread_local GrowBuffer t_ws[4];

}  // namespace

void* workspace(int slot, std::size_t bytes) { return t_ws[slot].get(bytes); }

template <class T>
void im2col(const T* x, const Geom& g, int64_t oh0, int64_t oh1, T* col) {
  const int64_t H = g.H, W = g.W, Wo = g.Wo, sw = g.sw;
  const int64_t nc = (oh1 - oh0) * Wo;
  for (int64_t c = 0; c < g.Cg(); ++c) {
    const T* xc = x + c * H * W;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* dst = col + ((c * g.kh + i) * g.kw + j) * nc;
        const int64_t off = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_cols(off, sw, W, Wo, &lo, &hi);
        for (int64_t oh = oh0; oh < oh1; ++oh, dst += Wo) {
          const int64_t ih = oh * g.sh + i * g.dh - g.ph;
          if (ih < 0 || ih >= H) {
            std::memset(dst, 0, sizeof(T) * Wo);
            continue;
          }
          // first valid input element of the row (never before the row's start)
          const T* src = xc + ih * W + (lo * sw + off);
          for (int64_t ow = 0; ow < lo; ++ow) dst[ow] = T(0);
          if (sw == 1) {
            std::memcpy(dst + lo, src, sizeof(T) * (hi - lo));
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[(ow - lo) * sw];
          }
          for (int64_t ow = hi; ow < Wo; ++ow) dst[ow] = T(0);
        }
      }
  }
}

template <class T>
void col2im_add(const T* col, const Geom& g, int64_t oh0, int64_t oh1, T* x) {
  const int64_t H = g.H, W = g.W, Wo = g.Wo, sw = g.sw;
  const int64_t nc = (oh1 - oh0) * Wo;
  for (int64_t c = 0; c < g.Cg(); ++c) {
    T* xc = x + c * H * W;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* src = col + ((c * g.kh + i) * g.kw + j) * nc;
        const int64_t off = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_cols(off, sw, W, Wo, &lo, &hi);
        for (int64_t oh = oh0; oh < oh1; ++oh, src += Wo) {
          const int64_t ih = oh * g.sh + i * g.dh - g.ph;
          if (ih < 0 || ih >= H) continue;
          T* __restrict dst = xc + ih * W + (lo * sw + off);
          const T* __restrict s = src + lo;
          const int64_t n = hi - lo;
          if (sw == 1) {
            for (int64_t k = 0; k < n; ++k) dst[k] += s[k];
          } else {
            for (int64_t k = 0; k < n; ++k) dst[k * sw] += s[k];
          }
        }
      }
  }
}

template void im2col<float>(const float*, const Geom&, int64_t, int64_t, float*);
template void im2col<double>(const double*, const Geom&, int64_t, int64_t, double*);
template void col2im_add<float>(const float*, const Geom&, int64_t, int64_t, float*);
template void col2im_add<double>(const double*, const Geom&, int64_t, int64_t, double*);

}  // namespace kiln::cpu::conv
