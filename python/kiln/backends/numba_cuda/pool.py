"""Pooling on the Numba CUDA table: max_pool2d, avg_pool2d, adaptive_avg_pool2d and their
backward kernels, with the CPU table's arguments and window rules (csrc/cpu/pool.cpp,
pool_impl.h). Arrays are (..., H, W) in and (..., OH, OW) out: the leading dims are P
planes; the output size (hence ceil_mode) is the caller's choice, checked to be one PyTorch
could produce (every window starts inside the input or its left padding).

Windows (PyTorch's CPU kernels):
  max_pool2d: ih0 = oh sH - pH, ih1 = min(ih0 + (kH - 1) dH + 1, H), ih0 raised by dH until
    >= 0 (same in w); the max over the window in (h, w) order, the first max winning and a
    NaN always winning (`v > m or v != v`); the index is h * W + w (-1: empty window).
  avg_pool2d: ih1 = min(ih0 + kH, H + pH), pool = (ih1 - ih0)(iw1 - iw0) before clipping;
    divisor = divisor_override, or pool (count_include_pad), or the clipped window's size;
    an empty clipped window gives 0.
  adaptive_avg_pool2d: rows floor(oh H / OH) .. ceil((oh + 1) H / OH), same in w.

GPU layout: one thread per output element for the forward kernels (grid over P*OH*OW).
avg/adaptive backward are gathers, one thread per input element: it visits the outputs whose
windows hold it in the CPU's (oh, ow) order, so the sums match without atomics.
max_pool2d_backward only has the indices, so it zeroes grad_input and scatters with atomic
adds, one thread per output: an input element gets more than one term only where windows
overlap (stride < kernel) and share their argmax, and then the terms' order (hence the
last bits) may differ from the CPU's; with non-overlapping windows the result is exact.
Integer divisors are applied as one division, whose result is the correctly rounded
quotient as on the CPU.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from kiln.backends.numba_cuda._common import (
    check_float,
    check_same_dtype,
    check_same_shape,
    describe,
    dev,
    flat,
    grid1d,
    jit,
)


# ---- max_pool2d -----------------------------------------------------------------------
@jit
def _max_fwd(x, y, ind, has_ind, H, W, OH, OW, kH, kW, sH, sW, pH, pW, dH, dW, ninf):
    t = cuda.grid(1)
    if t >= y.size:
        return
    ow = t % OW
    r = t // OW
    oh = r % OH
    base = (r // OH) * H * W
    ih0 = oh * sH - pH
    ih1 = min(ih0 + (kH - 1) * dH + 1, H)
    while ih0 < 0:
        ih0 += dH
    iw0 = ow * sW - pW
    iw1 = min(iw0 + (kW - 1) * dW + 1, W)
    while iw0 < 0:
        iw0 += dW
    mi = ih0 * W + iw0 if (ih0 < ih1 and iw0 < iw1) else -1
    m = ninf
    for ih in range(ih0, ih1, dH):
        for iw in range(iw0, iw1, dW):
            v = x[base + ih * W + iw]
            if v > m or v != v:  # the first max wins; a NaN always wins
                m = v
                mi = ih * W + iw
    y[t] = m
    if has_ind:
        ind[t] = mi


@jit
def _zero(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 0


@jit
def _max_bwd(g, ind, gi, HW, OHW):
    t = cuda.grid(1)
    if t >= g.size:
        return
    k = ind[t]
    if k >= 0 and k < HW:  # -1 (empty window) and out-of-plane indices are skipped
        cuda.atomic.add(gi, (t // OHW) * HW + k, g[t])


# ---- avg_pool2d -----------------------------------------------------------------------
@jit(device=True)
def _avg_div(oh, ow, H, W, kH, kW, sH, sW, pH, pW, cip, divisor):
    """Divisor of output (oh, ow), 0 for an empty clipped window (the CPU's avg_col)."""
    ih0 = oh * sH - pH
    ih1 = min(ih0 + kH, H + pH)
    iw0 = ow * sW - pW
    iw1 = min(iw0 + kW, W + pW)
    h0 = max(ih0, 0)
    h1 = min(ih1, H)
    w0 = max(iw0, 0)
    w1 = min(iw1, W)
    if h0 >= h1 or w0 >= w1:
        return 0
    if divisor:
        return divisor
    if cip:
        return (ih1 - ih0) * (iw1 - iw0)
    return (h1 - h0) * (w1 - w0)


@jit
def _avg_fwd(x, y, H, W, OH, OW, kH, kW, sH, sW, pH, pW, cip, divisor, zero):
    t = cuda.grid(1)
    if t >= y.size:
        return
    ow = t % OW
    r = t // OW
    oh = r % OH
    base = (r // OH) * H * W
    div = _avg_div(oh, ow, H, W, kH, kW, sH, sW, pH, pW, cip, divisor)
    h0 = max(oh * sH - pH, 0)
    h1 = min(oh * sH - pH + kH, H)
    w0 = max(ow * sW - pW, 0)
    w1 = min(ow * sW - pW + kW, W)
    s = zero
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            s += x[base + ih * W + iw]
    # the integer divisor becomes the array's dtype through the store (a float32 / int64
    # division would be done in float64); the CPU divides by T(div) too
    y[t] = div
    y[t] = s / y[t] if div else zero


@jit
def _avg_bwd(g, gi, H, W, OH, OW, kH, kW, sH, sW, pH, pW, cip, divisor, zero):
    t = cuda.grid(1)
    if t >= gi.size:
        return
    iw = t % W
    r = t // W
    ih = r % H
    base = (r // H) * OH * OW
    # outputs whose window [o s - p, o s - p + k) holds the element: ceil((i + p - k + 1) / s)
    # .. floor((i + p) / s), clipped to the output
    oh0 = max(0, (ih + pH - kH + sH) // sH)
    oh1 = min(OH, (ih + pH) // sH + 1)
    ow0 = max(0, (iw + pW - kW + sW) // sW)
    ow1 = min(OW, (iw + pW) // sW + 1)
    s = zero  # the CPU's arithmetic: g / T(div), summed in T
    for oh in range(oh0, oh1):
        for ow in range(ow0, ow1):
            div = _avg_div(oh, ow, H, W, kH, kW, sH, sW, pH, pW, cip, divisor)
            if div:
                gi[t] = div  # int -> T through the store (see _avg_fwd)
                s += g[base + oh * OW + ow] / gi[t]
    gi[t] = s


# ---- adaptive_avg_pool2d --------------------------------------------------------------
@jit
def _adaptive_fwd(x, y, H, W, OH, OW, zero):
    t = cuda.grid(1)
    if t >= y.size:
        return
    ow = t % OW
    r = t // OW
    oh = r % OH
    base = (r // OH) * H * W
    h0 = (oh * H) // OH
    h1 = ((oh + 1) * H + OH - 1) // OH
    w0 = (ow * W) // OW
    w1 = ((ow + 1) * W + OW - 1) // OW
    s = zero
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            s += x[base + ih * W + iw]
    y[t] = (h1 - h0) * (w1 - w0)  # int -> T through the store (see _avg_fwd)
    y[t] = s / y[t]


@jit
def _adaptive_bwd(g, gi, H, W, OH, OW, zero):
    t = cuda.grid(1)
    if t >= gi.size:
        return
    iw = t % W
    r = t // W
    ih = r % H
    base = (r // H) * OH * OW
    # the outputs whose [start, end) holds ih lie in [ih OH / H - 1, (ih + 1) OH / H + 1)
    oh0 = max(0, (ih * OH) // H - 1)
    oh1 = min(OH, ((ih + 1) * OH + H - 1) // H + 1)
    ow0 = max(0, (iw * OW) // W - 1)
    ow1 = min(OW, ((iw + 1) * OW + W - 1) // W + 1)
    s = zero
    for oh in range(oh0, oh1):
        h0 = (oh * H) // OH
        h1 = ((oh + 1) * H + OH - 1) // OH
        if ih < h0 or ih >= h1:
            continue
        for ow in range(ow0, ow1):
            w0 = (ow * W) // OW
            w1 = ((ow + 1) * W + OW - 1) // OW
            if w0 <= iw < w1:
                gi[t] = (h1 - h0) * (w1 - w0)  # int -> T through the store
                s += g[base + oh * OW + ow] / gi[t]
    gi[t] = s


# ---- host side: checks (the CPU table's messages) and launches ---------------------------
def _dims(a) -> tuple:
    return tuple(a.shape)  # the simulator's shape object takes no negative indices


def _planes(op, inp, in_name, out, out_name):
    """Checks inp (..., H, W) against out (..., OH, OW); returns both as device arrays."""
    inp = dev(inp, op, in_name)
    check_float(inp, op, in_name)
    out = dev(out, op, out_name)
    check_same_dtype(inp, out, op, in_name, out_name)
    if inp.ndim < 2 or inp.ndim != out.ndim:
        raise ValueError(f"{op}: {describe(inp, in_name)} and {describe(out, out_name)} must "
                         "both be (..., H, W) with the same number of dims")
    if _dims(inp)[:-2] != _dims(out)[:-2]:
        raise ValueError(f"{op}: leading dims of {describe(inp, in_name)} and "
                         f"{describe(out, out_name)} differ")
    return inp, out


def _window(op, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw):
    if min(kh, kw, sh, sw, dh, dw) < 1 or ph < 0 or pw < 0:
        raise ValueError(f"{op}: kernel size, stride and dilation must be >= 1 and padding >= 0, "
                         f"got kernel ({kh}, {kw}), stride ({sh}, {sw}), padding ({ph}, {pw}), "
                         f"dilation ({dh}, {dw})")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{op}: pad should be at most half of effective kernel size, but got "
                         f"padding ({ph}, {pw}) for kernel ({kh}, {kw})")
    ok_h = OH == 0 or (OH - 1) * sh - ph < H
    ok_w = OW == 0 or (OW - 1) * sw - pw < W
    if not (ok_h and ok_w):
        raise ValueError(f"{op}: output size ({OH}, {OW}) is too large for input size ({H}, {W}) "
                         f"with stride ({sh}, {sw}) and padding ({ph}, {pw}): the last window "
                         "would start past the input")


def _int64(a, op, name):
    if np.dtype(a.dtype) != np.int64:
        raise TypeError(f"{op}: {describe(a, name)} must be int64")


def max_pool2d(x, out, indices, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
               dilation_h, dilation_w) -> None:
    op = "max_pool2d"
    if indices is not None:
        indices = dev(indices, op, "indices")
        _int64(indices, op, "indices")
        check_same_shape(dev(out, op, "out"), indices, op, "out", "indices")
    x, out = _planes(op, x, "x", out, "out")
    H, W, OH, OW = _dims(x)[-2], _dims(x)[-1], _dims(out)[-2], _dims(out)[-1]
    _window(op, H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
            dilation_w)
    if out.size == 0:
        return
    ind = flat(indices) if indices is not None else cuda.device_array(1, np.int64)  # dummy
    ninf = np.dtype(x.dtype).type(-np.inf)
    _max_fwd[grid1d(out.size)](flat(x), flat(out), ind, indices is not None, H, W, OH, OW,
                               kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                               dilation_w, ninf)


def max_pool2d_backward(grad, indices, grad_input) -> None:
    op = "max_pool2d_backward"
    indices = dev(indices, op, "indices")
    _int64(indices, op, "indices")
    grad_d = dev(grad, op, "grad")
    check_same_shape(grad_d, indices, op, "grad", "indices")
    grad, grad_input = _planes(op, grad_d, "grad", grad_input, "grad_input")
    if grad_input.size == 0:
        return
    gi = flat(grad_input)
    _zero[grid1d(gi.size)](gi)
    if grad.size:
        HW = _dims(grad_input)[-2] * _dims(grad_input)[-1]
        OHW = _dims(grad)[-2] * _dims(grad)[-1]
        _max_bwd[grid1d(grad.size)](flat(grad), flat(indices), gi, HW, OHW)


def _avg_params(op, H, W, OH, OW, kh, kw, sh, sw, ph, pw, divisor_override):
    _window(op, H, W, OH, OW, kh, kw, sh, sw, ph, pw, 1, 1)
    if divisor_override < 0:
        raise ValueError(f"{op}: divisor_override must be positive (0 = none), got "
                         f"{divisor_override}")


def avg_pool2d(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad,
               divisor_override) -> None:
    op = "avg_pool2d"
    x, out = _planes(op, x, "x", out, "out")
    H, W, OH, OW = _dims(x)[-2], _dims(x)[-1], _dims(out)[-2], _dims(out)[-1]
    _avg_params(op, H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                divisor_override)
    if out.size == 0:
        return
    _avg_fwd[grid1d(out.size)](flat(x), flat(out), H, W, OH, OW, kernel_h, kernel_w, stride_h,
                               stride_w, pad_h, pad_w, bool(count_include_pad),
                               int(divisor_override), np.dtype(x.dtype).type(0))


def avg_pool2d_backward(grad, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                        count_include_pad, divisor_override) -> None:
    op = "avg_pool2d_backward"
    grad, grad_input = _planes(op, grad, "grad", grad_input, "grad_input")
    H, W = _dims(grad_input)[-2], _dims(grad_input)[-1]
    OH, OW = _dims(grad)[-2], _dims(grad)[-1]
    _avg_params(op, H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                divisor_override)
    if grad_input.size == 0:
        return
    _avg_bwd[grid1d(grad_input.size)](flat(grad), flat(grad_input), H, W, OH, OW, kernel_h,
                                      kernel_w, stride_h, stride_w, pad_h, pad_w,
                                      bool(count_include_pad), int(divisor_override),
                                      np.dtype(grad.dtype).type(0))


def adaptive_avg_pool2d(x, out) -> None:
    op = "adaptive_avg_pool2d"
    x, out = _planes(op, x, "x", out, "out")
    if out.size == 0:
        return
    H, W, OH, OW = _dims(x)[-2], _dims(x)[-1], _dims(out)[-2], _dims(out)[-1]
    if H == 0 or W == 0:
        raise ValueError(f"{op}: {describe(x, 'x')} has an empty plane")
    _adaptive_fwd[grid1d(out.size)](flat(x), flat(out), H, W, OH, OW, np.dtype(x.dtype).type(0))


def adaptive_avg_pool2d_backward(grad, grad_input) -> None:
    op = "adaptive_avg_pool2d_backward"
    grad, grad_input = _planes(op, grad, "grad", grad_input, "grad_input")
    if grad_input.size == 0:
        return
    if grad.size == 0:
        raise ValueError(f"{op}: {describe(grad, 'grad')} has an empty plane")
    H, W = _dims(grad_input)[-2], _dims(grad_input)[-1]
    OH, OW = _dims(grad)[-2], _dims(grad)[-1]
    _adaptive_bwd[grid1d(grad_input.size)](flat(grad), flat(grad_input), H, W, OH, OW,
                                           np.dtype(grad.dtype).type(0))

