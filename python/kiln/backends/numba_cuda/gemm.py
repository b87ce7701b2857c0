"""General matrix multiply on the Numba CUDA table (csrc/cpu/gemm.cpp, csrc/cuda/gemm.cu).

    matmul        out[z] = act(op(a[z]) @ op(b[z]) + bias),  op(x) = x or x^T
    matmul_naive  out = a @ b, one thread per output element (the reference)
    matmul_relu_backward  out = (x <= 0 ? 0 : op(a) @ op(b)), matmul then relu_backward

a is (M, K) or (Ba, M, K) ((K, M) when trans_a), b is (K, N) or (Bb, K, N) ((N, K) when
trans_b), out is (M, N) or (B, M, N); an operand with batch 1 (2-D, or 3-D with a leading 1)
is broadcast over out's batch. act is none, relu, gelu (erf) or gelu_tanh, applied in the
write-back after the bias, as on the CPU.

matmul is the shared-memory tiling with 2x2 register blocking: a 16x16-thread block computes
a 32x32 tile of out, each thread the four outputs (ty + 16 r, tx + 16 c), r, c in {0, 1}.
Per step of 16 along K it stages a 32x16 tile of op(a) and a 16x32 tile of op(b) in shared
memory (2 loads per thread each), so every global element is read once per tile and used 32
times, and every shared value a thread reads feeds two multiply-adds. Loads are mapped so that
consecutive threads read consecutive addresses whether an operand is transposed or not; both
tiles are stored k-major with a column of padding so those stores do not conflict in banks,
and the inner loop reads a[k][ty (+16)] (a broadcast within a warp) and b[k][tx (+16)]
(consecutive). Accumulation is in the array dtype (float32 stays float32): the constants the
kernel needs arrive as arguments of that dtype. The grid is (N tiles, M tiles, batch), with
the M and batch dimensions looped so any size fits the bounded grid.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kiln.backends.numba_cuda._common import (
    check_float,
    check_same_dtype,
    describe,
    dev,
    flat,
    grid1d,
    jit,
)
from kiln.backends.numba_cuda.activation import relu_backward

TM = 32  # output tile rows / columns per block (TM x TM)
TK = 16  # depth of one shared-memory step
TT = 16  # threads per block side (TT x TT); each computes (TM / TT)^2 = 4 outputs
TMP = TM + 1  # padded shared row (a literal: shared-array shapes must be compile-time constants)
MAX_GRID_YZ = 65535

ACTIVATIONS = {"none": 0, "relu": 1, "gelu": 2, "gelu_tanh": 3}


# ---- checks shared with conv and embedding ---------------------------------------------------
def contiguous(a, op: str, name: str) -> None:
    """The CPU table's check_input: kernels index their arrays as flat C-order buffers."""
    if not a.is_c_contiguous():
        raise ValueError(f"{op}: {describe(a, name)} must be C-contiguous")


def _span(a) -> tuple[int, int]:
    iface = getattr(a, "__cuda_array_interface__", None)
    if iface is None:  # the simulator's arrays are NumPy arrays underneath
        iface = a.__array_interface__
    return iface["data"][0], a.size * np.dtype(a.dtype).itemsize


def overlaps(x, y) -> bool:
    """Whether two device arrays share memory (the CPU table refuses in-place outputs)."""
    (x0, nx), (y0, ny) = _span(x), _span(y)
    return nx > 0 and ny > 0 and x0 < y0 + ny and y0 < x0 + nx


def consts(dtype) -> tuple:
    """(0, 1, 0.5, 1/sqrt(2), sqrt(2/pi), 0.044715) in ``dtype``: no float64 literal reaches
    a float32 kernel, so float32 math stays float32 on a GPU."""
    t = np.dtype(dtype).type
    return tuple(t(v) for v in (0.0, 1.0, 0.5, 1 / math.sqrt(2), math.sqrt(2 / math.pi), 0.044715))


@jit(device=True)
def activate(v, act, c):
    """The write-back activation; c = consts(dtype)."""
    if act == 1:
        return c[0] if v < c[0] else v  # NaN passes through, as on the CPU
    if act == 2:
        return c[2] * v * (c[1] + math.erf(v * c[3]))
    if act == 3:
        return c[2] * v * (c[1] + math.tanh(c[4] * (v + c[5] * v * v * v)))
    return v


# ---- kernels -----------------------------------------------------------------------------
@jit
def _matmul_tiled(a, b, bias, out, batch, m, n, k, a_bs, b_bs, trans_a, trans_b, has_bias,
                  act, c):
    # a, b, bias, out are flat; a_bs / b_bs: batch strides (0 = broadcast)
    As = cuda.shared.array((TK, TMP), a.dtype)  # As[kk][i] = op(a)(m0 + i, k0 + kk)
    Bs = cuda.shared.array((TK, TMP), a.dtype)  # Bs[kk][j] = op(b)(k0 + kk, n0 + j)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    t = ty * TT + tx
    n0 = cuda.blockIdx.x * TM
    tiles_m = (m + TM - 1) // TM
    # The loop bounds depend on blockIdx only: every thread reaches the same syncthreads.
    z = cuda.blockIdx.z
    while z < batch:
        az = z * a_bs
        bz = z * b_bs
        tm = cuda.blockIdx.y
        while tm < tiles_m:
            m0 = tm * TM
            acc00 = c[0]
            acc01 = c[0]
            acc10 = c[0]
            acc11 = c[0]
            for k0 in range(0, k, TK):
                for r in range(2):
                    e = t + r * TT * TT  # this thread's r-th element of the 512-element tiles
                    if trans_a:  # a is (k, m): consecutive threads along m
                        i = e % TM
                        kk = e // TM
                        gi = m0 + i
                        gk = k0 + kk
                        As[kk, i] = a[az + gk * m + gi] if gi < m and gk < k else c[0]
                    else:  # a is (m, k): consecutive threads along k
                        i = e // TK
                        kk = e % TK
                        gi = m0 + i
                        gk = k0 + kk
                        As[kk, i] = a[az + gi * k + gk] if gi < m and gk < k else c[0]
                    if trans_b:  # b is (n, k): consecutive threads along k
                        j = e // TK
                        kk = e % TK
                        gj = n0 + j
                        gk = k0 + kk
                        Bs[kk, j] = b[bz + gj * k + gk] if gj < n and gk < k else c[0]
                    else:  # b is (k, n): consecutive threads along n
                        j = e % TM
                        kk = e // TM
                        gj = n0 + j
                        gk = k0 + kk
                        Bs[kk, j] = b[bz + gk * n + gj] if gj < n and gk < k else c[0]
                cuda.syncthreads()
                for kk in range(TK):
                    a0 = As[kk, ty]
                    a1 = As[kk, ty + TT]
                    b0 = Bs[kk, tx]
                    b1 = Bs[kk, tx + TT]
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
                        if has_bias:
                            v += bias[col]
                        out[(z * m + row) * n + col] = activate(v, act, c)
            tm += cuda.gridDim.y
        z += cuda.gridDim.z


@jit
def _matmul_naive(a, b, out, m, n, k, zero):
    idx = cuda.grid(1)
    stride = cuda.gridsize(1)
    while idx < m * n:
        i = idx // n
        j = idx % n
        acc = zero
        for p in range(k):
            acc += a[i * k + p] * b[p * n + j]
        out[idx] = acc
        idx += stride


# ---- host wrappers -------------------------------------------------------------------------
def _intake(op: str, a, b, out):
    a, b, out = dev(a, op, "a"), dev(b, op, "b"), dev(out, op, "out")
    check_float(a, op, "a")
    check_same_dtype(a, b, op, "a", "b")
    check_same_dtype(a, out, op, "a", "out")
    return a, b, out


def _ndim(x, op: str, name: str, dims: tuple) -> None:
    if x.ndim not in dims:
        want = "2-D" if dims == (2,) else "2-D or 3-D"
        raise ValueError(f"{op}: {name} of shape {tuple(x.shape)} must be {want}")


def matmul(a, b, out, trans_a=False, trans_b=False, bias=None, activation="none") -> None:
    """out = act(op(a) @ op(b) + bias) on device arrays (see the module docstring)."""
    op = "matmul"
    a, b, out = _intake(op, a, b, out)
    bias = dev(bias, op, "bias", optional=True)
    if bias is not None:
        check_same_dtype(a, bias, op, "a", "bias")
    if activation not in ACTIVATIONS:
        raise ValueError(f"matmul: unknown activation '{activation}' "
                         "(expected none, relu, gelu, gelu_tanh)")
    for x, name in ((a, "a"), (b, "b"), (out, "out")):
        contiguous(x, op, name)
    if bias is not None:
        contiguous(bias, op, "bias")
    for x, name in ((a, "a"), (b, "b"), (out, "out")):
        _ndim(x, op, name, (2, 3))
    da, db, dc = a.ndim - 2, b.ndim - 2, out.ndim - 2
    ba = a.shape[0] if da else 1
    bb = b.shape[0] if db else 1
    batch = out.shape[0] if dc else 1
    m, ka = (a.shape[da + 1], a.shape[da]) if trans_a else (a.shape[da], a.shape[da + 1])
    kb, n = (b.shape[db + 1], b.shape[db]) if trans_b else (b.shape[db], b.shape[db + 1])
    sa, sb, so = (f"a of shape {tuple(a.shape)}", f"b of shape {tuple(b.shape)}",
                  f"out of shape {tuple(out.shape)}")
    if ka != kb:
        tr = f" with trans_a={bool(trans_a)}, trans_b={bool(trans_b)}" if trans_a or trans_b else ""
        raise ValueError(f"{op}: inner dimensions differ: {sa} (K={ka}) vs {sb} (K={kb}){tr}")
    if ba not in (1, batch) or bb not in (1, batch):
        raise ValueError(f"{op}: batch dimensions of {sa} and {sb} must each be 1 or the batch "
                         f"of {so} ({batch})")
    if out.shape[dc] != m or out.shape[dc + 1] != n:
        lead = f"{batch}, " if dc else ""
        raise ValueError(f"{op}: {so} does not match the product of {sa} and {sb}: expected "
                         f"({lead}{m}, {n})")
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != n):
        raise ValueError(f"{op}: bias of shape {tuple(bias.shape)} must be ({n},) for {so}")
    if overlaps(out, a) or overlaps(out, b) or (bias is not None and overlaps(out, bias)):
        raise ValueError(f"{op}: {so} overlaps an input; it must be a separate array")
    if batch == 0 or m == 0 or n == 0:
        return
    fa, fb, fo = flat(a), flat(b), flat(out)
    grid = ((n + TM - 1) // TM, min((m + TM - 1) // TM, MAX_GRID_YZ), min(batch, MAX_GRID_YZ))
    _matmul_tiled[grid, (TT, TT)](
        fa, fb, flat(bias) if bias is not None else fo, fo, batch, m, n, ka,
        0 if ba == 1 else m * ka, 0 if bb == 1 else ka * n, bool(trans_a), bool(trans_b),
        bias is not None, ACTIVATIONS[activation], consts(a.dtype))


def matmul_naive(a, b, out) -> None:
    """out = a @ b for 2-D device arrays, one thread per output element."""
    op = "matmul_naive"
    a, b, out = _intake(op, a, b, out)
    for x, name in ((a, "a"), (b, "b"), (out, "out")):
        contiguous(x, op, name)
    for x, name in ((a, "a"), (b, "b"), (out, "out")):
        _ndim(x, op, name, (2,))
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k:
        raise ValueError(f"{op}: inner dimensions differ: a of shape {tuple(a.shape)} (K={k}) vs "
                         f"b of shape {tuple(b.shape)} (K={b.shape[0]})")
    if tuple(out.shape) != (m, n):
        raise ValueError(f"{op}: out of shape {tuple(out.shape)} must be ({m}, {n})")
    if overlaps(out, a) or overlaps(out, b):
        raise ValueError(f"{op}: out of shape {tuple(out.shape)} overlaps an input")
    if m == 0 or n == 0:
        return
    _matmul_naive[grid1d(m * n)](flat(a), flat(b), flat(out), m, n, k, consts(a.dtype)[0])


def matmul_relu_backward(a, b, out, trans_a, trans_b, x) -> None:
    """out = relu_backward(op(a) @ op(b), x): the GEMM, then the mask on out in place (the
    CPU applies it in the GEMM's write-back; the values are the same)."""
    op = "matmul_relu_backward"
    o, xd = dev(out, op, "out"), dev(x, op, "x")
    check_same_dtype(o, xd, op, "out", "x")
    if tuple(xd.shape) != tuple(o.shape):
        raise ValueError(f"{op}: x of shape {tuple(xd.shape)} must have the shape of out "
                         f"{tuple(o.shape)}")
    if overlaps(o, xd):
        raise ValueError(f"{op}: out of shape {tuple(o.shape)} overlaps x; it must be a "
                         "separate array")
    matmul(a, b, out, trans_a, trans_b)
    relu_backward(out, x, out)
