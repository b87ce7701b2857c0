"""Normalization on the Numba CUDA table: layer_norm, batch_norm, group_norm and their
backward kernels, with the CPU table's arguments and math (csrc/cpu/norm*.cpp,
norm_impl.h, norm_chan_impl.h).

With xhat = (x - mean) * rstd over each normalized group of n elements:
  forward   y = xhat * w + b,  mean = sum x / n,  rstd = 1 / sqrt(sum (x - mean)^2 / n + eps)
  backward  gx = rstd * (gy - sum(gy) / n - xhat * sum(gy * xhat) / n),  gy = g * w
            gw = sum over groups of g * xhat,  gb = sum over groups of g
layer_norm groups are rows of x viewed as (R, D); group_norm groups are (n, g) rows of
C / G * S contiguous elements of x viewed as (N, C, S), with a per-channel affine (both use
one row kernel: the affine index of element i of a row is (row % G) * Cg + i // S, which is
i for layer_norm with G = 1, Cg = D, S = 1). batch_norm groups are channels over N * S
elements; training also updates running_mean / running_var in place with the momentum and
the unbiased variance var * M / (M - 1), eval uses the running statistics (gx = g w rstd).

GPU layout: one block of NT threads per normalized group (row, channel); each thread
strides over the group, a shared-memory tree reduction (fixed order: deterministic)
combines the partials, in float64 as the CPU's batch/group-norm sums are (two-pass
variance, exact for data far from zero). Weight/bias gradients of layer_norm are column
sums: blocks of 32 columns x 8 row-slices, the 8 partials added in a fixed order.
group_norm_backward first sums g and g (x - mean) per (n, c) into a float64 scratch
(the CPU's workspace), then one block per group computes gx and one thread per channel
the weight/bias gradients. Optional arrays (None) are replaced by a dummy array and a
flag, so each kernel compiles once per dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from kiln.backends.numba_cuda._common import (
    SIMULATOR,
    check_float,
    check_same_dtype,
    check_same_shape,
    describe,
    dev,
    flat,
    jit,
)

# Threads per block of the reductions (a power of two). The simulator runs every CUDA thread
# as a Python thread and every barrier costs a round of thread switches, so it uses 8 (the
# same code: strided loops and a 3-level tree).
NT = 8 if SIMULATOR else 128
CT, CR = (8, 4) if SIMULATOR else (32, 8)  # column-sum blocks: CT columns x CR row-slices


@jit(device=True)
def _block_sum2(sa, sb, tid, a, b):
    """(sum of a, sum of b) over the block (NT threads), in a fixed order; every thread gets
    both. A shared-memory tree halves the partials down to 32 (no levels when NT <= 32),
    then each thread adds those 32 itself (broadcast reads: all threads read one address at
    a time), which spares the last five barriers of a full tree. sa / sb must not be used by
    the previous reduction (callers alternate buffers), so no barrier is needed after it."""
    sa[tid] = a
    sb[tid] = b
    cuda.syncthreads()
    s = NT // 2
    while s >= 32:
        if tid < s:
            sa[tid] += sa[tid + s]
            sb[tid] += sb[tid + s]
        cuda.syncthreads()
        s //= 2
    ra = 0.0
    rb = 0.0
    for k in range(min(NT, 32)):
        ra += sa[k]
        rb += sb[k]
    return ra, rb


@jit(device=True)
def _block_sum(sh, tid, v):
    """_block_sum2 for one value (the same rules: sh not used by the previous reduction)."""
    sh[tid] = v
    cuda.syncthreads()
    s = NT // 2
    while s >= 32:
        if tid < s:
            sh[tid] += sh[tid + s]
        cuda.syncthreads()
        s //= 2
    r = 0.0
    for k in range(min(NT, 32)):
        r += sh[k]
    return r


# ---- layer_norm / group_norm forward ----------------------------------------------------
@jit
def _row_norm(x, w, b, has_w, has_b, y, mean, rstd, L, G, Cg, S, eps):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    sa = cuda.shared.array(NT, float64)
    sb = cuda.shared.array(NT, float64)
    base = r * L
    s = 0.0
    for i in range(tid, L, NT):
        s += float64(x[base + i])
    s = _block_sum(sa, tid, s)
    m = s / L
    q = 0.0
    for i in range(tid, L, NT):
        d = float64(x[base + i]) - m
        q += d * d
    q = _block_sum(sb, tid, q)  # the other buffer: no barrier needed in between
    var = q / L
    if tid == 0:
        mean[r] = m
        rstd[r] = 1.0 / math.sqrt(var + eps)
    cuda.syncthreads()
    mt = mean[r]  # the stored (rounded) statistics, as the CPU applies them
    rs = rstd[r]
    c0 = (r % G) * Cg
    for i in range(tid, L, NT):
        v = (x[base + i] - mt) * rs
        c = c0 + i // S
        if has_w:
            v = v * w[c]
        if has_b:
            v = v + b[c]
        y[base + i] = v


# ---- layer_norm backward --------------------------------------------------------------
@jit
def _ln_bwd_gx(g, x, mean, rstd, w, has_w, gx, D):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    sa = cuda.shared.array(NT, float64)
    sb = cuda.shared.array(NT, float64)
    base = r * D
    m = mean[r]
    rs = rstd[r]
    s1 = 0.0
    s2 = 0.0
    for i in range(tid, D, NT):
        gy = g[base + i] * w[i] if has_w else g[base + i]
        s1 += float64(gy)
        s2 += float64(gy) * float64((x[base + i] - m) * rs)
    s1, s2 = _block_sum2(sa, sb, tid, s1, s2)
    c1 = s1 / D
    c2 = s2 / D
    for i in range(tid, D, NT):
        gy = g[base + i] * w[i] if has_w else g[base + i]
        xh = (x[base + i] - m) * rs
        gx[base + i] = rs * (gy - c1 - xh * c2)


@jit
def _ln_bwd_wb(g, x, mean, rstd, gw, gb, has_gw, has_gb, R, D):
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    col = cuda.blockIdx.x * CT + tx
    pw = cuda.shared.array((CR, CT), float64)
    pb = cuda.shared.array((CR, CT), float64)
    sw = 0.0
    sb = 0.0
    if col < D:
        for r in range(ty, R, CR):
            gv = g[r * D + col]
            sw += float64(gv * ((x[r * D + col] - mean[r]) * rstd[r]))
            sb += float64(gv)
    pw[ty, tx] = sw
    pb[ty, tx] = sb
    cuda.syncthreads()
    if ty == 0 and col < D:
        tw = 0.0
        tb = 0.0
        for k in range(CR):
            tw += pw[k, tx]
            tb += pb[k, tx]
        if has_gw:
            gw[col] = tw
        if has_gb:
            gb[col] = tb


# ---- group_norm backward --------------------------------------------------------------
@jit
def _gn_bwd_sums(g, x, mean, C, S, G, Cg, db, dxs):
    q = cuda.blockIdx.x  # (n, c)
    tid = cuda.threadIdx.x
    sa = cuda.shared.array(NT, float64)
    sb = cuda.shared.array(NT, float64)
    n = q // C
    m = mean[n * G + (q - n * C) // Cg]
    s1 = 0.0
    s2 = 0.0
    for i in range(tid, S, NT):
        gv = g[q * S + i]
        s1 += float64(gv)
        s2 += float64(gv) * float64(x[q * S + i] - m)
    s1, s2 = _block_sum2(sa, sb, tid, s1, s2)
    if tid == 0:
        db[q] = s1
        dxs[q] = s2


@jit
def _gn_bwd_gx(g, x, mean, rstd, w, has_w, db, dxs, gx, C, S, G, Cg):
    r = cuda.blockIdx.x  # (n, group)
    tid = cuda.threadIdx.x
    coef = cuda.shared.array(2, float64)
    n = r // G
    c0 = (r - n * G) * Cg
    L = Cg * S
    m = mean[r]
    rs = rstd[r]
    if tid == 0:  # sum over the group's channels in channel order, as the CPU
        sgy = 0.0
        sgyx = 0.0
        for j in range(Cg):
            wc = float64(w[c0 + j]) if has_w else 1.0
            sgy += wc * db[n * C + c0 + j]
            sgyx += wc * dxs[n * C + c0 + j]
        coef[0] = sgy / L
        coef[1] = float64(rs) * float64(rs) * sgyx / L
    cuda.syncthreads()
    c1 = coef[0]
    c2 = coef[1]
    for i in range(tid, L, NT):
        k = r * L + i
        gy = g[k] * w[c0 + i // S] if has_w else g[k]
        gx[k] = rs * (gy - c1 - (x[k] - m) * c2)


@jit
def _gn_bwd_wb(rstd, db, dxs, gw, gb, has_gw, has_gb, N, C, G, Cg):
    c = cuda.grid(1)
    if c >= C:
        return
    sw = 0.0
    sb = 0.0
    for n in range(N):
        sw += float64(rstd[n * G + c // Cg]) * dxs[n * C + c]
        sb += db[n * C + c]
    if has_gw:
        gw[c] = sw
    if has_gb:
        gb[c] = sb


@jit
def _zero(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 0


# ---- host side: checks (the CPU table's messages) and launches ---------------------------
def _vec(a, x, n, op, name, optional=True):
    a = dev(a, op, name, optional=optional)
    if a is None:
        return None
    check_same_dtype(x, a, op, "x", name)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{op}: {describe(a, name)} must have shape ({n},) for "
                         f"{describe(x, 'x')}")
    return a


def _shape(a, x, dims, op, name, optional=False):
    a = dev(a, op, name, optional=optional)
    if a is None:
        return None
    check_same_dtype(x, a, op, "x", name)
    if tuple(a.shape) != tuple(dims):
        want = "(" + ", ".join(map(str, dims)) + (",)" if len(dims) == 1 else ")")
        raise ValueError(f"{op}: {describe(a, name)} must have shape {want} for "
                         f"{describe(x, 'x')}")
    return a


def _like(a, x, op, name, optional=True):
    a = dev(a, op, name, optional=optional)
    if a is not None:
        check_same_dtype(x, a, op, "x", name)
        check_same_shape(x, a, op, "x", name)
    return a


def _opt(a, dummy):
    """(array or dummy, flag): a missing optional array becomes a never-read dummy."""
    return (dummy, False) if a is None else (flat(a), True)


def _zero_all(*arrays):
    for a in arrays:
        if a is not None and a.size:
            _zero[max(1, -(-a.size // 256)), 256](flat(a))


def _check_ln(op, x, mean, rstd, weight, bias):
    x = dev(x, op, "x")
    check_float(x, op, "x")
    mean = dev(mean, op, "mean")
    check_same_dtype(x, mean, op, "x", "mean")
    if mean.ndim != 1:
        raise ValueError(f"{op}: {describe(mean, 'mean')} must be 1-D (rows,)")
    R, n = mean.shape[0], x.size
    if (R == 0 and n != 0) or (R > 0 and n % R != 0):
        raise ValueError(f"{op}: {describe(x, 'x')} does not split into {R} rows "
                         f"({describe(mean, 'mean')})")
    D = n // R if R else 0
    rstd = _vec(rstd, x, R, op, "rstd", optional=False)
    weight = _vec(weight, x, D, op, "weight")
    bias = _vec(bias, x, D, op, "bias")
    return x, mean, rstd, weight, bias, R, D


def layer_norm(x, weight, bias, out, mean, rstd, eps) -> None:
    op = "layer_norm"
    x, mean, rstd, weight, bias, R, D = _check_ln(op, x, mean, rstd, weight, bias)
    out = _like(out, x, op, "out", optional=False)
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    if R == 0 or D == 0:
        if R and D == 0:
            raise ValueError(f"{op}: rows of 0 elements in {describe(x, 'x')}")
        return
    xf = flat(x)
    w, hw = _opt(weight, xf)
    b, hb = _opt(bias, xf)
    _row_norm[R, NT](xf, w, b, hw, hb, flat(out), mean, rstd, D, 1, D, 1, float(eps))


def layer_norm_backward(grad, x, mean, rstd, weight, grad_input, grad_weight,
                        grad_bias) -> None:
    op = "layer_norm_backward"
    x, mean, rstd, weight, _, R, D = _check_ln(op, x, mean, rstd, weight, None)
    grad = _like(grad, x, op, "grad", optional=False)
    gi = _like(grad_input, x, op, "grad_input")
    gw = _vec(grad_weight, x, D, op, "grad_weight")
    gb = _vec(grad_bias, x, D, op, "grad_bias")
    if R == 0 or D == 0:
        _zero_all(gw, gb)  # empty batch: zero gradients
        return
    xf, gf = flat(x), flat(grad)
    if gi is not None:
        w, hw = _opt(weight, xf)
        _ln_bwd_gx[R, NT](gf, xf, mean, rstd, w, hw, flat(gi), D)
    if gw is not None or gb is not None:
        w_, hgw = _opt(gw, xf)
        b_, hgb = _opt(gb, xf)
        _ln_bwd_wb[(-(-D // CT), 1), (CT, CR)](gf, xf, mean, rstd, w_, b_, hgw, hgb, R, D)


def _ncs(op, x):
    x = dev(x, op, "x")
    check_float(x, op, "x")
    if x.ndim < 2:
        raise ValueError(f"{op}: {describe(x, 'x')} must be (N, C) or (N, C, *)")
    return x, x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))


def _check_groups(op, x, C, num_groups, forward):
    if num_groups < 1 or C % num_groups != 0:
        if forward:
            raise ValueError(f"{op}: expected the number of channels {C} of {describe(x, 'x')}"
                             f" to be divisible by num_groups = {num_groups}")
        raise ValueError(f"{op}: num_groups = {num_groups} does not divide the channels of "
                         f"{describe(x, 'x')}")


def group_norm(x, weight, bias, out, mean, rstd, num_groups, eps) -> None:
    op = "group_norm"
    x, N, C, S = _ncs(op, x)
    G = int(num_groups)
    _check_groups(op, x, C, G, True)
    out = _like(out, x, op, "out", optional=False)
    weight = _shape(weight, x, (C,), op, "weight", True)
    bias = _shape(bias, x, (C,), op, "bias", True)
    mean = _shape(mean, x, (N, G), op, "mean")
    rstd = _shape(rstd, x, (N, G), op, "rstd")
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be >= 0")
    if x.size == 0:
        if N and C:
            raise ValueError(f"{op}: groups of 0 elements in {describe(x, 'x')}")
        return
    xf = flat(x)
    w, hw = _opt(weight, xf)
    b, hb = _opt(bias, xf)
    Cg = C // G
    _row_norm[N * G, NT](xf, w, b, hw, hb, flat(out), flat(mean), flat(rstd), Cg * S, G, Cg, S,
                         float(eps))


def group_norm_backward(grad, x, mean, rstd, weight, grad_input, grad_weight, grad_bias,
                        num_groups) -> None:
    op = "group_norm_backward"
    x, N, C, S = _ncs(op, x)
    G = int(num_groups)
    _check_groups(op, x, C, G, False)
    grad = _like(grad, x, op, "grad", optional=False)
    gi = _like(grad_input, x, op, "grad_input")
    gw = _shape(grad_weight, x, (C,), op, "grad_weight", True)
    gb = _shape(grad_bias, x, (C,), op, "grad_bias", True)
    weight = _shape(weight, x, (C,), op, "weight", True)
    mean = _shape(mean, x, (N, G), op, "mean")
    rstd = _shape(rstd, x, (N, G), op, "rstd")
    if x.size == 0:
        _zero_all(gw, gb)
        return
    if gi is None and gw is None and gb is None:
        return
    xf, gf, mf, rf = flat(x), flat(grad), flat(mean), flat(rstd)
    Cg = C // G
    db = cuda.device_array(N * C, np.float64)  # workspace: sum_s g and sum_s g (x - mean)
    dxs = cuda.device_array(N * C, np.float64)
    _gn_bwd_sums[N * C, NT](gf, xf, mf, C, S, G, Cg, db, dxs)
    if gi is not None:
        w, hw = _opt(weight, xf)
        _gn_bwd_gx[N * G, NT](gf, xf, mf, rf, w, hw, db, dxs, flat(gi), C, S, G, Cg)
    if gw is not None or gb is not None:
        gw_, hgw = _opt(gw, xf)
        gb_, hgb = _opt(gb, xf)
        _gn_bwd_wb[max(1, -(-C // 64)), 64](rf, db, dxs, gw_, gb_, hgw, hgb, N, C, G, Cg)
