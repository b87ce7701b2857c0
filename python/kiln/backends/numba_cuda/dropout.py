"""Dropout on the Numba CUDA table with kiln's Philox4x32-10 convention (csrc/common/philox.h).

The random word of element index `idx` for a call seeded with `seed` is word (idx & 3) of
philox4x32(counter = {lo32(idx >> 2), hi32(idx >> 2), 0, 0}, key = {lo32(seed), hi32(seed)}):
ten rounds of
    (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
with the key bumped by the Weyl constants (W0, W1) before every round but the first.
The element is kept when (word >> 8) >= ceil(float32(p) * 2^24) (its 24-bit uniform is >= p)
and then scaled by 1 / (1 - p); a dropped element is x * 0 (NaN and inf stay NaN, as on the
CPU). Feature dropout (`inner` > 1) draws once per run of `inner` elements, with index
f = i // inner. The mask is a pure function of (seed, index): bit for bit the CPU's, for any
launch geometry. The backward is the same map applied to the gradient.

The Philox device function and its integer conventions are in _philox.py.

Launches: inner == 1, one thread per Philox block (4 elements from one 10-round call);
1 < inner < 32, one thread per element (each recomputes its feature's word); inner >= 32,
one CUDA block per feature whose threads stride over its run (coalesced, one word per
thread). All are grid-stride loops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, uint64

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
from kiln.backends.numba_cuda._philox import U2 as _U2
from kiln.backends.numba_cuda._philox import U8 as _U8
from kiln.backends.numba_cuda._philox import philox4x32 as _philox
from kiln.backends.numba_cuda._philox import pick

# Grid-stride caps; the simulator (one Python thread per CUDA thread) gets small grids, so
# that the tests run every stride loop more than once.
_MAX_BLOCKS, _TPB = (2, 32) if SIMULATOR else (4096, 256)
_FEATURE_MIN_INNER = 32  # from this run length on, one CUDA block per feature


@jit(device=True)
def _word(k0, k1, idx):
    """Word idx & 3 of block idx >> 2 (idx a uint64)."""
    w0, w1, w2, w3 = _philox(k0, k1, idx >> _U2)
    return pick(w0, w1, w2, w3, idx)


@jit
def _dropout_blocks(x, y, k0, k1, thr, scale, zero):
    # inner == 1: thread t owns Philox block t, i.e. elements 4t .. 4t + 3
    n = x.size
    nblocks = (n + 3) // 4
    for b in range(cuda.grid(1), nblocks, cuda.gridsize(1)):
        w0, w1, w2, w3 = _philox(k0, k1, uint64(b))
        i = 4 * b
        y[i] = x[i] * (scale if (w0 >> _U8) >= thr else zero)
        if i + 1 < n:
            y[i + 1] = x[i + 1] * (scale if (w1 >> _U8) >= thr else zero)
        if i + 2 < n:
            y[i + 2] = x[i + 2] * (scale if (w2 >> _U8) >= thr else zero)
        if i + 3 < n:
            y[i + 3] = x[i + 3] * (scale if (w3 >> _U8) >= thr else zero)


@jit
def _dropout_elems(x, y, inner, k0, k1, thr, scale, zero):
    # short feature runs: thread per element, word of its feature f = i // inner
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        w = _word(k0, k1, uint64(i // inner))
        y[i] = x[i] * (scale if (w >> _U8) >= thr else zero)


@jit
def _dropout_features(x, y, inner, k0, k1, thr, scale, zero):
    # long feature runs: CUDA block per feature, its threads stride over the run
    nf = x.size // inner
    for f in range(cuda.blockIdx.x, nf, cuda.gridDim.x):
        w = _word(k0, k1, uint64(f))
        s = scale if (w >> _U8) >= thr else zero
        base = f * inner
        for k in range(cuda.threadIdx.x, inner, cuda.blockDim.x):
            y[base + k] = x[base + k] * s


@jit
def _scale(x, y, s):
    # p == 0 (s = 1, a copy) or p == 1 (s = 0: zeros, NaN for NaN/inf, as x * 0 on the CPU)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i] * s


def _run(op: str, xname: str, yname: str, x, y, seed, p, inner) -> None:
    x = dev(x, op, xname)
    y = dev(y, op, yname)
    check_float(x, op, xname)
    for a, n in ((x, xname), (y, yname)):
        if not a.is_c_contiguous():
            raise ValueError(f"{op}: {describe(a, n)} must be C-contiguous")
    check_same_dtype(x, y, op, xname, yname)
    check_same_shape(x, y, op, xname, yname)
    seed, p, inner = int(seed), float(p), int(inner)
    if not 0 <= seed < 1 << 64:
        raise TypeError(f"{op}: seed must be an unsigned 64-bit integer, got {seed}")
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p:f}")
    if inner < 1 or x.size % inner != 0:
        raise ValueError(f"{op}: inner = {inner} must be >= 1 and divide the size of "
                         f"{describe(x, xname)}")
    n = x.size
    if n == 0:
        return
    xf, yf = flat(x), flat(y)
    t = np.dtype(x.dtype).type
    grid = min(_MAX_BLOCKS, math.ceil(n / _TPB))
    if p == 0.0 or p == 1.0:
        _scale[grid, _TPB](xf, yf, t(1.0 if p == 0.0 else 0.0))
        return
    # thr = ceil(float32(p) 2^24): uniform >= p  <=>  (word >> 8) >= thr, as on the CPU
    thr = np.uint64(math.ceil(float(np.float32(p)) * 16777216.0))
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    scale, zero = t(1.0 / (1.0 - p)), t(0)
    if inner == 1:
        nb = (n + 3) // 4
        _dropout_blocks[min(_MAX_BLOCKS, math.ceil(nb / _TPB)), _TPB](
            xf, yf, k0, k1, thr, scale, zero)
    elif inner < _FEATURE_MIN_INNER:
        _dropout_elems[grid, _TPB](xf, yf, inner, k0, k1, thr, scale, zero)
    else:
        nf = n // inner
        tpb = min(_TPB, 1 << (inner - 1).bit_length())  # >= 32: inner >= 32
        _dropout_features[min(nf, 65535 if not SIMULATOR else _MAX_BLOCKS), tpb](
            xf, yf, inner, k0, k1, thr, scale, zero)


def dropout(x, out, seed, p, inner=1) -> None:
    _run("dropout", "x", "out", x, out, seed, p, inner)


def dropout_backward(grad, grad_input, seed, p, inner=1) -> None:
    _run("dropout_backward", "grad", "grad_input", grad, grad_input, seed, p, inner)
