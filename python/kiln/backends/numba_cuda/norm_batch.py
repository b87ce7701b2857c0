"""batch_norm and batch_norm_backward on the Numba CUDA table (csrc/cpu/norm_chan_impl.h).

batch_norm normalizes each channel over its N * S elements of x viewed as (N, C, S):
training uses the batch statistics and updates running_mean / running_var in place with
the momentum and the unbiased variance var * M / (M - 1); eval uses the running
statistics (then gx = g w rstd). One block of NT threads per channel, with norm.py's
shared-memory float64 reductions (fixed order: deterministic); see norm.py for the math.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from kiln.backends.numba_cuda._common import describe, flat, jit
from kiln.backends.numba_cuda.norm import (
    NT,
    _block_sum,
    _block_sum2,
    _like,
    _ncs,
    _opt,
    _shape,
    _zero_all,
)


# ---- batch_norm -----------------------------------------------------------------------
@jit
def _bn_fwd(x, w, b, has_w, has_b, rm, rv, has_rm, has_rv, y, mean, rstd, N, C, S,
            training, momentum, eps):
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    sa = cuda.shared.array(NT, float64)
    sb = cuda.shared.array(NT, float64)
    M = N * S
    if training:
        s = 0.0
        for j in range(tid, M, NT):
            n = j // S
            s += float64(x[(n * C + c) * S + j - n * S])
        s = _block_sum(sa, tid, s)
        m = s / M
        q = 0.0
        for j in range(tid, M, NT):
            n = j // S
            d = float64(x[(n * C + c) * S + j - n * S]) - m
            q += d * d
        q = _block_sum(sb, tid, q)
        var = q / M
        if tid == 0:
            mean[c] = m
            rstd[c] = 1.0 / math.sqrt(var + eps)
            if has_rm:
                rm[c] = (1.0 - momentum) * float64(rm[c]) + momentum * m
            if has_rv:  # the unbiased variance, as PyTorch
                rv[c] = (1.0 - momentum) * float64(rv[c]) + momentum * var * M / (M - 1)
    elif tid == 0:
        mean[c] = rm[c]
        rstd[c] = 1.0 / math.sqrt(float64(rv[c]) + eps)
    cuda.syncthreads()
    mt = mean[c]
    sc = rstd[c] * w[c] if has_w else rstd[c]
    for j in range(tid, M, NT):
        n = j // S
        k = (n * C + c) * S + j - n * S
        v = (x[k] - mt) * sc
        if has_b:
            v = v + b[c]
        y[k] = v


# gx = k (g - sg / M - (x - m) rstd^2 sgx / M) in training (k = w rstd), k g in eval.
@jit
def _bn_bwd(g, x, w, has_w, mean, rstd, gx, gw, gb, has_gx, has_gw, has_gb, N, C, S,
            training):
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    sa = cuda.shared.array(NT, float64)
    sb = cuda.shared.array(NT, float64)
    M = N * S
    m = mean[c]
    sg = 0.0
    sgx = 0.0
    for j in range(tid, M, NT):
        n = j // S
        k = (n * C + c) * S + j - n * S
        sg += float64(g[k])
        sgx += float64(g[k]) * float64(x[k] - m)
    sg, sgx = _block_sum2(sa, sb, tid, sg, sgx)
    rs = rstd[c]
    if tid == 0:
        if has_gw:
            gw[c] = sgx * float64(rs)
        if has_gb:
            gb[c] = sg
    if not has_gx:
        return
    kk = rs * w[c] if has_w else rs
    a1 = 0.0
    a2 = 0.0
    if training:
        a1 = sg / M
        a2 = float64(rs) * float64(rs) * sgx / M
    for j in range(tid, M, NT):
        n = j // S
        k = (n * C + c) * S + j - n * S
        gx[k] = kk * (g[k] - a1 - (x[k] - m) * a2)



def batch_norm(x, weight, bias, running_mean, running_var, out, save_mean, save_invstd,
               training, momentum, eps) -> None:
    op = "batch_norm"
    x, N, C, S = _ncs(op, x)
    out = _like(out, x, op, "out", optional=False)
    weight = _shape(weight, x, (C,), op, "weight", True)
    bias = _shape(bias, x, (C,), op, "bias", True)
    rm = _shape(running_mean, x, (C,), op, "running_mean", True)
    rv = _shape(running_var, x, (C,), op, "running_var", True)
    save_mean = _shape(save_mean, x, (C,), op, "save_mean")
    save_invstd = _shape(save_invstd, x, (C,), op, "save_invstd")
    if not training and (rm is None or rv is None):
        raise ValueError(f"{op}: running_mean and running_var must be given in evaluation "
                         "mode (training=False)")
    if training and N * S <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                         f"{describe(x, 'x')}")
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be >= 0")
    if x.size == 0:
        return  # an empty batch in eval mode (training raised above)
    xf = flat(x)
    w, hw = _opt(weight, xf)
    b, hb = _opt(bias, xf)
    rm_, hrm = _opt(rm, xf)
    rv_, hrv = _opt(rv, xf)
    _bn_fwd[C, NT](xf, w, b, hw, hb, rm_, rv_, hrm, hrv, flat(out), save_mean, save_invstd,
                   N, C, S, bool(training), float(momentum), float(eps))


def batch_norm_backward(grad, x, weight, save_mean, save_invstd, grad_input, grad_weight,
                        grad_bias, training) -> None:
    op = "batch_norm_backward"
    x, N, C, S = _ncs(op, x)
    grad = _like(grad, x, op, "grad", optional=False)
    gi = _like(grad_input, x, op, "grad_input")
    gw = _shape(grad_weight, x, (C,), op, "grad_weight", True)
    gb = _shape(grad_bias, x, (C,), op, "grad_bias", True)
    weight = _shape(weight, x, (C,), op, "weight", True)
    save_mean = _shape(save_mean, x, (C,), op, "save_mean")
    save_invstd = _shape(save_invstd, x, (C,), op, "save_invstd")
    if x.size == 0:
        _zero_all(gw, gb)
        return
    if gi is None and gw is None and gb is None:
        return
    xf = flat(x)
    w, hw = _opt(weight, xf)
    gi_, hgi = _opt(gi, xf)
    gw_, hgw = _opt(gw, xf)
    gb_, hgb = _opt(gb, xf)
    _bn_bwd[C, NT](flat(grad), xf, w, hw, save_mean, save_invstd, gi_, gw_, gb_, hgi, hgw, hgb,
                   N, C, S, bool(training))


