"""2-D convolution on the Numba CUDA table as implicit GEMM (csrc/cpu/conv.h for the notation).

x (N, C, H, W), weight (Co, C/G, kh, kw), out (N, Co, Ho, Wo), G = groups, Cg = C/G, Cog = Co/G:

    conv2d        out[n, co, oh, ow] = bias[co] + sum_{c,i,j} w[co, c, i, j] *
                                       x[n, g Cg + c, oh sh + i dh - ph, ow sw + j dw - pw]
    conv2d_dgrad  grad_input = the adjoint of conv2d in x (a transposed convolution)
    conv2d_wgrad  grad_weight = the adjoint in w, grad_bias[co] = sum_{n,oh,ow} grad[n, co]

with x read as 0 outside the image; ph / pw are the top / left padding and the bottom / right
padding is whatever the output size implies (the CPU table's check accepts the same sizes).

Each is one GEMM per group, run by one tiled kernel (gemm.py's 32x32 tile, 16 deep, 2x2
outputs per thread) whose shared-memory loads gather the operands on the fly -- the im2col
matrix is never stored. Rows x depth x columns of the three GEMMs, per group g:

    conv2d  (forward)  Cog x (Cg kh kw)    x (N Ho Wo):  A = w[g],          B = im2col(x)
    dgrad   (mode 1)   Cg  x (Cog kh kw)   x (N H W):    A = w[g]^T (per tap), B = grad gathered
                       at oh = (ih + ph - i dh) / sh when that divides exactly and is in range
    wgrad   (mode 2)   Cog x (N Ho Wo)     x (Cg kh kw): A = grad[g],       B = im2col(x)^T

dgrad is written as a gather over the output positions each input pixel feeds, so every
grad_input element is written once, by one thread: no atomics, deterministic. grad_bias is a
separate kernel, one block per output channel with a shared-memory tree reduction.
The group index is the grid's z; the row tiles loop over the grid's y.
"""

from __future__ import annotations

from numba import cuda

from kiln.backends.numba_cuda._common import check_float, check_same_dtype, describe, dev, flat, jit
from kiln.backends.numba_cuda.gemm import MAX_GRID_YZ, TK, TM, TMP, TT, contiguous, overlaps

FORWARD, DGRAD, WGRAD = 0, 1, 2
RB = 128  # threads per block of the grad_bias reduction (a power of two)


@jit(device=True)
def _x_at(x, grp, n, p, q, geo, zero):
    """im2col(x)[q, (n, p)] of group grp: q = (c, i, j) a kernel tap, p = (oh, ow)."""
    _, C, H, W, Co, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, G = geo
    c = q // (kh * kw)
    r = q % (kh * kw)
    ih = (p // Wo) * sh + (r // kw) * dh - ph
    iw = (p % Wo) * sw + (r % kw) * dw - pw
    if ih < 0 or ih >= H or iw < 0 or iw >= W:
        return zero
    return x[((n * C + grp * (C // G) + c) * H + ih) * W + iw]


@jit(device=True)
def _a_at(mode, a, grp, row, d, geo):
    """A[row, d] of group grp's GEMM (see the module docstring)."""
    _, C, H, W, Co, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, G = geo
    Cg = C // G
    Cog = Co // G
    if mode == FORWARD:  # w[g Cog + row, d] with w as (Co, Cg kh kw)
        return a[(grp * Cog + row) * (Cg * kh * kw) + d]
    if mode == DGRAD:  # w[g Cog + co, row, tap] with d = (co, tap)
        return a[((grp * Cog + d // (kh * kw)) * Cg + row) * (kh * kw) + d % (kh * kw)]
    # WGRAD: grad[n, g Cog + row, p] with d = (n, p)
    return a[((d // (Ho * Wo)) * Co + grp * Cog + row) * (Ho * Wo) + d % (Ho * Wo)]


@jit(device=True)
def _b_at(mode, b, grp, d, col, geo, zero):
    """B[d, col] of group grp's GEMM."""
    _, C, H, W, Co, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, G = geo
    if mode == FORWARD:  # col = (n, p)
        return _x_at(b, grp, col // (Ho * Wo), col % (Ho * Wo), d, geo, zero)
    if mode == WGRAD:  # d = (n, p), col = (c, i, j)
        return _x_at(b, grp, d // (Ho * Wo), d % (Ho * Wo), col, geo, zero)
    # DGRAD: d = (co, i, j), col = (n, ih, iw); grad[n, g Cog + co, oh, ow] for the output
    # position whose tap (i, j) reads (ih, iw), if there is one
    co = d // (kh * kw)
    r = d % (kh * kw)
    n = col // (H * W)
    q = col % (H * W)
    th = q // W + ph - (r // kw) * dh
    tw = q % W + pw - (r % kw) * dw
    if th < 0 or tw < 0 or th % sh != 0 or tw % sw != 0:
        return zero
    oh = th // sh
    ow = tw // sw
    if oh >= Ho or ow >= Wo:
        return zero
    return b[((n * Co + grp * (Co // G) + co) * Ho + oh) * Wo + ow]


@jit(device=True)
def _store(mode, out, bias, has_bias, grp, row, col, v, geo):
    _, C, H, W, Co, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, G = geo
    if mode == FORWARD:  # out[n, g Cog + row, p], col = (n, p)
        co = grp * (Co // G) + row
        if has_bias:
            v += bias[co]
        out[((col // (Ho * Wo)) * Co + co) * (Ho * Wo) + col % (Ho * Wo)] = v
    elif mode == DGRAD:  # grad_input[n, g Cg + row, q], col = (n, q)
        out[((col // (H * W)) * C + grp * (C // G) + row) * (H * W) + col % (H * W)] = v
    else:  # grad_weight[g Cog + row, col]
        out[(grp * (Co // G) + row) * ((C // G) * kh * kw) + col] = v


@jit
def _conv_gemm(mode, a, b, out, bias, has_bias, m, n, k, geo, zero):
    # one group's (m x k) @ (k x n) per grid z; the structure of gemm._matmul_tiled
    As = cuda.shared.array((TK, TMP), a.dtype)  # As[d][i] = A(m0 + i, k0 + d)
    Bs = cuda.shared.array((TK, TMP), a.dtype)  # Bs[d][j] = B(k0 + d, n0 + j)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    t = ty * TT + tx
    n0 = cuda.blockIdx.x * TM
    tiles_m = (m + TM - 1) // TM
    grp = cuda.blockIdx.z
    while grp < geo[15]:
        tm = cuda.blockIdx.y
        while tm < tiles_m:
            m0 = tm * TM
            acc00 = zero
            acc01 = zero
            acc10 = zero
            acc11 = zero
            for k0 in range(0, k, TK):
                for r in range(2):
                    e = t + r * TT * TT
                    # A: consecutive threads along the depth (contiguous in w and in grad)
                    i = e // TK
                    d = e % TK
                    if m0 + i < m and k0 + d < k:
                        As[d, i] = _a_at(mode, a, grp, m0 + i, k0 + d, geo)
                    else:
                        As[d, i] = zero
                    # B: consecutive threads along the columns (output / input pixels)
                    j = e % TM
                    d = e // TM
                    if n0 + j < n and k0 + d < k:
                        Bs[d, j] = _b_at(mode, b, grp, k0 + d, n0 + j, geo, zero)
                    else:
                        Bs[d, j] = zero
                cuda.syncthreads()
                for d in range(TK):
                    a0 = As[d, ty]
                    a1 = As[d, ty + TT]
                    b0 = Bs[d, tx]
                    b1 = Bs[d, tx + TT]
                    acc00 += a0 * b0
                    acc01 += a0 * b1
                    acc10 += a1 * b0
                    acc11 += a1 * b1
                cuda.syncthreads()
            for r in range(2):
                row = m0 + ty + r * TT
                for s in range(2):
                    col = n0 + tx + s * TT
                    if row < m and col < n:
                        if r == 0:
                            v = acc00 if s == 0 else acc01
                        else:
                            v = acc10 if s == 0 else acc11
                        _store(mode, out, bias, has_bias, grp, row, col, v, geo)
            tm += cuda.gridDim.y
        grp += cuda.gridDim.z


@jit
def _bias_grad(grad, gb, nimg, co_total, hw, zero):
    # grad_bias[co] = sum over (n, p) of grad[n, co, p]: block co, a strided partial sum per
    # thread, then a tree reduction in shared memory (fixed order: deterministic)
    part = cuda.shared.array(RB, grad.dtype)
    co = cuda.blockIdx.x
    t = cuda.threadIdx.x
    s = zero
    for e in range(t, nimg * hw, RB):
        s += grad[((e // hw) * co_total + co) * hw + e % hw]
    part[t] = s
    cuda.syncthreads()
    half = RB // 2
    while half > 0:
        if t < half:
            part[t] += part[t + half]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        gb[co] = part[0]


def _geom(op, xa, xn, w, wn, ya, yn, sh, sw, ph, pw, dh, dw, groups):
    """The CPU table's checks (csrc/cpu/conv.cpp); returns the geometry tuple."""
    check_float(xa, op, xn)
    check_same_dtype(xa, w, op, xn, wn)
    check_same_dtype(xa, ya, op, xn, yn)
    for a, name in ((xa, xn), (w, wn), (ya, yn)):
        if a.ndim != 4:
            what = "out_channels, in_channels / groups, kH, kW" if a is w else "N, C, H, W"
            raise ValueError(f"{op}: {describe(a, name)} must be 4-D ({what})")
    cfg = (f" with stride ({sh}, {sw}), padding ({ph}, {pw}), dilation ({dh}, {dw}), "
           f"groups {groups}")
    if sh < 1 or sw < 1 or dh < 1 or dw < 1 or ph < 0 or pw < 0 or groups < 1:
        raise ValueError(f"{op}: invalid configuration{cfg} (stride, dilation and groups must "
                         "be >= 1, padding >= 0)")
    N, C, H, W = xa.shape
    _, Co, Ho, Wo = ya.shape
    kh, kw = w.shape[2], w.shape[3]
    shapes = f"{describe(xa, xn)}, {describe(w, wn)} and {describe(ya, yn)}{cfg}"
    if C % groups or w.shape[0] % groups:
        raise ValueError(f"{op}: in_channels ({C}) and out_channels ({w.shape[0]}) must both be "
                         f"divisible by groups: {shapes}")
    if w.shape[0] != Co or w.shape[1] != C // groups:
        raise ValueError(f"{op}: expected {wn} of shape ({Co}, {C // groups}, kH, kW) for {C} "
                         f"input and {Co} output channels; got {shapes}")
    if ya.shape[0] != N:
        raise ValueError(f"{op}: batch sizes differ: {shapes}")
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: empty kernel: {shapes}")

    def out_size(i, k, s, p, d):
        span = i + 2 * p - d * (k - 1) - 1
        return 0 if span < 0 else span // s + 1

    def implied_ok(i, o, k, s, p, d):  # the bottom / right padding the output size implies
        after = (o - 1) * s + d * (k - 1) + 1 - i - p
        return o >= 1 and p - max(s, d) + 1 <= after <= p + 1

    eh, ew = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    if not (implied_ok(H, Ho, kh, sh, ph, dh) and implied_ok(W, Wo, kw, sw, pw, dw)):
        if eh < 1 or ew < 1:
            raise ValueError(f"{op}: kernel size (dilated) ({dh * (kh - 1) + 1}, "
                             f"{dw * (kw - 1) + 1}) is larger than the padded input "
                             f"({H + 2 * ph}, {W + 2 * pw}): {shapes}")
        raise ValueError(f"{op}: {yn} of shape {tuple(ya.shape)} does not match the convolution "
                         f"of {xn} of shape {tuple(xa.shape)} by {wn} of shape {tuple(w.shape)}"
                         f"{cfg}: expected ({N}, {Co}, {eh}, {ew})")
    return tuple(int(v) for v in (N, C, H, W, Co, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, groups))


def _launch(mode, a, b, out, bias, m, n, k, geo):
    if m == 0 or n == 0:
        return
    grid = ((n + TM - 1) // TM, min((m + TM - 1) // TM, MAX_GRID_YZ), min(geo[15], MAX_GRID_YZ))
    fo = flat(out)
    _conv_gemm[grid, (TT, TT)](mode, flat(a), flat(b), fo, fo if bias is None else flat(bias),
                               bias is not None, m, n, k, geo, out.dtype.type(0))


def conv2d(x, weight, bias, out, stride_h, stride_w, padding_h, padding_w, dilation_h,
           dilation_w, groups) -> None:
    """out = conv(x, weight) + bias (bias may be None) on device arrays."""
    op = "conv2d"
    x, weight, out = dev(x, op, "x"), dev(weight, op, "weight"), dev(out, op, "out")
    bias = dev(bias, op, "bias", optional=True)
    geo = _geom(op, x, "x", weight, "weight", out, "out", stride_h, stride_w, padding_h,
                padding_w, dilation_h, dilation_w, groups)
    for a, name in ((x, "x"), (weight, "weight"), (out, "out")):
        contiguous(a, op, name)
    N, C, H, W, Co, Ho, Wo, kh, kw = geo[:9]
    if bias is not None:
        check_same_dtype(x, bias, op, "x", "bias")
        contiguous(bias, op, "bias")
        if bias.ndim != 1 or bias.shape[0] != Co:
            raise ValueError(f"{op}: {describe(bias, 'bias')} must be ({Co},) for "
                             f"{describe(weight, 'weight')}")
    if overlaps(out, x) or overlaps(out, weight) or (bias is not None and overlaps(out, bias)):
        raise ValueError(f"{op}: out of shape {tuple(out.shape)} overlaps an input; it must be "
                         "a separate array")
    G = geo[15]
    _launch(FORWARD, weight, x, out, bias, Co // G, N * Ho * Wo, C // G * kh * kw, geo)


def conv2d_dgrad(grad, weight, grad_input, stride_h, stride_w, padding_h, padding_w, dilation_h,
                 dilation_w, groups) -> None:
    """grad_input = the gradient of sum(grad * conv2d(x, weight)) in x, on device arrays."""
    op = "conv2d_dgrad"
    grad, weight = dev(grad, op, "grad"), dev(weight, op, "weight")
    grad_input = dev(grad_input, op, "grad_input")
    geo = _geom(op, grad_input, "grad_input", weight, "weight", grad, "grad", stride_h, stride_w,
                padding_h, padding_w, dilation_h, dilation_w, groups)
    for a, name in ((grad, "grad"), (weight, "weight"), (grad_input, "grad_input")):
        contiguous(a, op, name)
    if overlaps(grad_input, grad) or overlaps(grad_input, weight):
        raise ValueError(f"{op}: grad_input of shape {tuple(grad_input.shape)} overlaps an "
                         "input; it must be a separate array")
    N, C, H, W, Co, Ho, Wo, kh, kw = geo[:9]
    G = geo[15]
    # Co == 0 leaves depth 0: the kernel writes zeros, as nothing reads x
    _launch(DGRAD, weight, grad, grad_input, None, C // G, N * H * W, Co // G * kh * kw, geo)


def conv2d_wgrad(grad, x, grad_weight, grad_bias, stride_h, stride_w, padding_h, padding_w,
                 dilation_h, dilation_w, groups) -> None:
    """grad_weight (and grad_bias unless None) of sum(grad * conv2d(x, weight)), on device."""
    op = "conv2d_wgrad"
    grad, x = dev(grad, op, "grad"), dev(x, op, "x")
    grad_weight = dev(grad_weight, op, "grad_weight")
    grad_bias = dev(grad_bias, op, "grad_bias", optional=True)
    geo = _geom(op, x, "x", grad_weight, "grad_weight", grad, "grad", stride_h, stride_w,
                padding_h, padding_w, dilation_h, dilation_w, groups)
    for a, name in ((grad, "grad"), (x, "x"), (grad_weight, "grad_weight")):
        contiguous(a, op, name)
    N, C, H, W, Co, Ho, Wo, kh, kw = geo[:9]
    if grad_bias is not None:
        check_same_dtype(x, grad_bias, op, "x", "grad_bias")
        contiguous(grad_bias, op, "grad_bias")
        if grad_bias.ndim != 1 or grad_bias.shape[0] != Co:
            raise ValueError(f"{op}: {describe(grad_bias, 'grad_bias')} must be ({Co},) for "
                             f"{describe(grad_weight, 'grad_weight')}")
        if any(overlaps(grad_bias, a) for a in (grad, x, grad_weight)):
            raise ValueError(f"{op}: grad_bias overlaps another argument")
    if overlaps(grad_weight, grad) or overlaps(grad_weight, x):
        raise ValueError(f"{op}: grad_weight of shape {tuple(grad_weight.shape)} overlaps an "
                         "input; it must be a separate array")
    if Co == 0:
        return
    G = geo[15]
    # N == 0 leaves depth 0: the kernels write zeros (an empty sum)
    _launch(WGRAD, grad, x, grad_weight, None, Co // G, C // G * kh * kw, N * Ho * Wo, geo)
    if grad_bias is not None:
        _bias_grad[Co, RB](flat(grad), grad_bias, N, Co, Ho * Wo, grad.dtype.type(0))
