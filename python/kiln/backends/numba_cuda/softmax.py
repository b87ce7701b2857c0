"""softmax / log_softmax over one axis of a contiguous N-d array, and their backward, on the
Numba CUDA table. The math is the CPU table's (csrc/cpu/softmax.cpp); the array is viewed as
(outer, D, inner) with D the softmax axis:
  softmax      y = exp(x - m) / sum exp(x - m),        m = max over the axis
  log_softmax  y = (x - m) - log sum exp(x - m)
  backward     softmax:     gx = y * (g - sum(g * y))
               log_softmax: gx = g - exp(y) * sum(g)
Subtracting the max keeps every exp <= 1; a row of all -inf (or with NaN / +inf) gives NaN,
as in PyTorch. Exponentials are in the array's dtype, sums are accumulated in float64 (as on
the CPU) and the per-row constants (1 / sum, log sum, the dot) are rounded back to the dtype
before the elementwise pass, so float32 rows stay float32 math on the GPU.

Launches:
- inner == 1 (the last axis, contiguous rows): one CUDA block per row (grid-stride over
  rows), its threads stride over the row; max and sum are shared-memory tree reductions.
- inner > 1: one thread per (outer, inner) column, looping over the D entries of its column
  at stride `inner`: neighbouring threads read neighbouring addresses (coalesced), no
  reduction across threads is needed.
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
from kiln.backends.numba_cuda._reduce import _block_max, _block_sum

# Row block size: a power of two covering the row, between _ROW_MIN and _ROW_MAX threads.
# The simulator (one Python thread per CUDA thread) gets small blocks and a 2-block grid
# cap so the tests exercise the stride loops.
_ROW_MIN, _ROW_MAX = (4, 16) if SIMULATOR else (32, 256)
_MAX_BLOCKS, _COL_TPB = (2, 32) if SIMULATOR else (65535, 128)


@jit
def _rows_forward(x, y, D, log, ninf):
    smx = cuda.shared.array(256, dtype=x.dtype)
    sms = cuda.shared.array(256, dtype=float64)
    tmp = cuda.local.array(1, dtype=x.dtype)  # rounds a float64 to the array's dtype
    t, nt = cuda.threadIdx.x, cuda.blockDim.x
    nrows = x.size // D
    for r in range(cuda.blockIdx.x, nrows, cuda.gridDim.x):
        base = r * D
        m = ninf
        for j in range(t, D, nt):
            v = x[base + j]
            if v > m:
                m = v
        m = _block_max(smx, m)
        s = 0.0  # float64 accumulator
        for j in range(t, D, nt):
            e = math.exp(x[base + j] - m)
            if not log:
                y[base + j] = e
            s += e
        s = _block_sum(sms, s)
        if log:
            tmp[0] = math.log(s)
            c = tmp[0]
            for j in range(t, D, nt):
                y[base + j] = (x[base + j] - m) - c  # (x - m) first: exact near the max
        else:
            tmp[0] = 1.0 / s
            c = tmp[0]
            for j in range(t, D, nt):
                y[base + j] *= c  # this thread wrote these entries above


@jit
def _rows_backward(g, y, gx, D, log):
    sms = cuda.shared.array(256, dtype=float64)
    tmp = cuda.local.array(1, dtype=y.dtype)
    t, nt = cuda.threadIdx.x, cuda.blockDim.x
    nrows = y.size // D
    for r in range(cuda.blockIdx.x, nrows, cuda.gridDim.x):
        base = r * D
        s = 0.0
        for j in range(t, D, nt):
            if log:
                s += g[base + j]
            else:
                s += float64(g[base + j]) * float64(y[base + j])
        tmp[0] = _block_sum(sms, s)
        c = tmp[0]
        for j in range(t, D, nt):
            if log:
                gx[base + j] = g[base + j] - math.exp(y[base + j]) * c
            else:
                gx[base + j] = y[base + j] * (g[base + j] - c)


@jit
def _cols_forward(x, y, D, inner, log, ninf):
    tmp = cuda.local.array(1, dtype=x.dtype)
    ncols = x.size // D
    for col in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        o = col // inner
        base = o * D * inner + (col - o * inner)
        m = ninf
        for d in range(D):
            v = x[base + d * inner]
            if v > m:
                m = v
        s = 0.0
        for d in range(D):
            e = math.exp(x[base + d * inner] - m)
            if not log:
                y[base + d * inner] = e
            s += e
        if log:
            tmp[0] = math.log(s)
            c = tmp[0]
            for d in range(D):
                i = base + d * inner
                y[i] = (x[i] - m) - c
        else:
            tmp[0] = 1.0 / s
            c = tmp[0]
            for d in range(D):
                y[base + d * inner] *= c


@jit
def _cols_backward(g, y, gx, D, inner, log):
    tmp = cuda.local.array(1, dtype=y.dtype)
    ncols = y.size // D
    for col in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        o = col // inner
        base = o * D * inner + (col - o * inner)
        s = 0.0
        for d in range(D):
            i = base + d * inner
            if log:
                s += g[i]
            else:
                s += float64(g[i]) * float64(y[i])
        tmp[0] = s
        c = tmp[0]
        for d in range(D):
            i = base + d * inner
            if log:
                gx[i] = g[i] - math.exp(y[i]) * c
            else:
                gx[i] = y[i] * (g[i] - c)


def _contig(a, op: str, name: str) -> None:
    if not a.is_c_contiguous():
        raise ValueError(f"{op}: {describe(a, name)} must be C-contiguous")


def _geometry(op, x, xname, g, out, outname, dim):
    """The CPU's check_softmax: checks, then (outer, D, inner) for axis `dim`."""
    check_float(x, op, xname)
    _contig(x, op, xname)
    if g is not None:
        _contig(g, op, "grad")
        check_same_dtype(g, x, op, "grad", xname)
        check_same_shape(g, x, op, "grad", xname)
    check_same_dtype(x, out, op, xname, outname)
    check_same_shape(x, out, op, xname, outname)
    _contig(out, op, outname)
    dim = int(dim)
    nd = x.ndim
    lim = max(nd, 1)  # a 0-d array is one row of one element (PyTorch)
    if not -lim <= dim < lim:
        raise IndexError(f"{op}: dim {dim} is out of range for {describe(x, xname)}")
    if dim < 0:
        dim += lim
    shape = tuple(x.shape)
    outer = math.prod(shape[:dim])
    D = shape[dim] if nd else 1
    inner = math.prod(shape[dim + 1:])
    return outer, D, inner


def _row_block(D: int) -> int:
    return min(_ROW_MAX, max(_ROW_MIN, 1 << (D - 1).bit_length()))


def _forward(op, x, out, dim, log):
    x, out = dev(x, op, "x"), dev(out, op, "out")
    outer, D, inner = _geometry(op, x, "x", None, out, "out", dim)
    if x.size == 0:
        return
    xf, yf = flat(x), flat(out)
    ninf = np.dtype(x.dtype).type(-np.inf)
    if inner == 1:
        _rows_forward[min(outer, _MAX_BLOCKS), _row_block(D)](xf, yf, D, log, ninf)
    else:
        blocks = min(_MAX_BLOCKS, math.ceil(outer * inner / _COL_TPB))
        _cols_forward[blocks, _COL_TPB](xf, yf, D, inner, log, ninf)


def _backward(op, grad, y, grad_input, dim, log):
    g, y, gi = dev(grad, op, "grad"), dev(y, op, "y"), dev(grad_input, op, "grad_input")
    outer, D, inner = _geometry(op, y, "y", g, gi, "grad_input", dim)
    if y.size == 0:
        return
    gf, yf, gif = flat(g), flat(y), flat(gi)
    if inner == 1:
        _rows_backward[min(outer, _MAX_BLOCKS), _row_block(D)](gf, yf, gif, D, log)
    else:
        blocks = min(_MAX_BLOCKS, math.ceil(outer * inner / _COL_TPB))
        _cols_backward[blocks, _COL_TPB](gf, yf, gif, D, inner, log)


def softmax(x, out, dim) -> None:
    _forward("softmax", x, out, dim, False)


def log_softmax(x, out, dim) -> None:
    _forward("log_softmax", x, out, dim, True)


def softmax_backward(grad, y, grad_input, dim) -> None:
    _backward("softmax_backward", grad, y, grad_input, dim, False)


def log_softmax_backward(grad, y, grad_input, dim) -> None:
    _backward("log_softmax_backward", grad, y, grad_input, dim, True)
