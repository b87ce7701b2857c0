"""Embedding lookup, its backward and max_norm renormalisation on the Numba CUDA table
(csrc/cpu/embedding.cpp; indices int64 of any shape, N = indices.size, weight (V, E)):

    embedding           out[n, :] = weight[idx[n], :]
    embedding_backward  grad_weight[r, :] = sum_{n : idx[n] = r} grad_out[n, :]
                                            (/ count(r) when scale_grad_by_freq),
                        and 0 for r = padding_idx (-1: none) and for rows never indexed
    embedding_renorm    for each distinct r in idx, once: weight[r] *= max_norm / (||weight[r]||_p
                        + 1e-7) when ||weight[r]||_p > max_norm (in place, torch's
                        embedding_renorm_; the norm in float64, as on the CPU)

Indices are range-checked on the device first (a kernel keeps the first bad position with an
atomic min, whose result does not depend on the order; one int comes back to the host), so a
bad index is an IndexError naming it, as on the CPU, never an out-of-bounds read.

Backward without atomics, deterministic: one block per weight row r, its threads over the
columns. The block stages the indices in shared memory a chunk at a time and each thread adds
grad_out[n, e] for every n with idx[n] = r, in index order -- the CPU's order. That costs
V * N index reads (from shared memory, N / blockDim per thread and row), which is cheap next
to the N * E gradient reads for the vocabularies and batches kiln trains; a sort-based
segmented sum would be the choice for very large V * N. scale_grad_by_freq multiplies the
row's sum by 1 / count instead of each term (the same value up to rounding).

Renorm: one block per index position n. The block first asks (syncthreads_or over a strided
scan of idx[:n]) whether idx[n] appeared earlier; only the first occurrence renormalises its
row, so each distinct row is scaled exactly once and no two blocks touch the same row.
The p-norm is a float64 shared-memory tree reduction (max for p = inf).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from kiln.backends.numba_cuda._common import (
    check_float,
    check_same_dtype,
    describe,
    dev,
    flat,
    grid1d,
    jit,
)
from kiln.backends.numba_cuda.gemm import contiguous

EB = 64  # threads per block for the per-row kernels (a power of two: tree reductions)
MAX_GRID = 65535  # blocks launched for the per-row kernels; more rows loop


@jit
def _first_bad(idx, v, first):
    # first[0] = the smallest n with idx[n] outside [0, v) (unchanged when there is none)
    n = cuda.grid(1)
    if n < idx.size and (idx[n] < 0 or idx[n] >= v):
        cuda.atomic.min(first, 0, n)


@jit
def _gather(weight, idx, out, e_dim):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < idx.size * e_dim:
        n = i // e_dim
        e = i % e_dim
        out[i] = weight[idx[n] * e_dim + e]
        i += stride


@jit
def _scatter_rows(grad, idx, gw, v_dim, e_dim, padding_idx, scale, zero, one):
    chunk = cuda.shared.array(EB, idx.dtype)
    t = cuda.threadIdx.x
    nidx = idx.size
    r = cuda.blockIdx.x
    while r < v_dim:  # bounds depend on blockIdx only: syncthreads below are uniform
        for e0 in range(0, e_dim, EB):
            e = e0 + t
            acc = zero
            count = zero  # in the dtype: no float64 math on float32 rows
            for n0 in range(0, nidx, EB):
                if n0 + t < nidx:
                    chunk[t] = idx[n0 + t]
                cuda.syncthreads()
                if r != padding_idx:
                    for j in range(min(EB, nidx - n0)):
                        if chunk[j] == r:
                            count += one
                            if e < e_dim:
                                acc += grad[(n0 + j) * e_dim + e]
                cuda.syncthreads()
            if e < e_dim:
                if scale and count > zero:
                    acc *= one / count
                gw[r * e_dim + e] = acc
        r += cuda.gridDim.x


@jit
def _renorm_rows(weight, idx, e_dim, max_norm, norm_type, p_kind):
    # p_kind: 1 (L1), 2 (L2), 3 (max, p = inf), 0 (general p)
    part = cuda.shared.array(EB, float64)
    s = cuda.shared.array(1, weight.dtype)  # the scale, rounded to the weight's dtype as on the CPU
    t = cuda.threadIdx.x
    n = cuda.blockIdx.x
    while n < idx.size:
        r = idx[n]
        seen = 0  # an int: syncthreads_or takes an integer predicate
        for j in range(t, n, EB):
            if idx[j] == r:
                seen = 1
        if not cuda.syncthreads_or(seen):  # first occurrence of r: this block owns the row
            acc = 0.0
            for e in range(t, e_dim, EB):
                a = abs(float(weight[r * e_dim + e]))
                if p_kind == 1:
                    acc += a
                elif p_kind == 2:
                    acc += a * a
                elif p_kind == 3:
                    acc = max(acc, a)
                else:
                    acc += a ** norm_type
            part[t] = acc
            cuda.syncthreads()
            half = EB // 2
            while half > 0:
                if t < half:
                    if p_kind == 3:
                        part[t] = max(part[t], part[t + half])
                    else:
                        part[t] += part[t + half]
                cuda.syncthreads()
                half //= 2
            norm = part[0]
            if p_kind == 2:
                norm = math.sqrt(norm)
            elif p_kind == 0:
                norm = norm ** (1.0 / norm_type)
            if norm > max_norm:  # the same on every thread: a uniform branch
                if t == 0:
                    s[0] = max_norm / (norm + 1e-7)
                cuda.syncthreads()
                for e in range(t, e_dim, EB):
                    weight[r * e_dim + e] *= s[0]
            cuda.syncthreads()  # part and s are reused by this block's next n
        n += cuda.gridDim.x


# ---- host wrappers -------------------------------------------------------------------------
def _weight(w, op: str, name: str):
    w = dev(w, op, name)
    check_float(w, op, name)
    contiguous(w, op, name)
    if w.ndim != 2:
        raise ValueError(f"{op}: {describe(w, name)} must be 2-d")
    return w


def _indices(idx, op: str, v: int):
    """indices as a flat int64 device array whose every entry is a row of the weight."""
    idx = dev(idx, op, "indices")
    contiguous(idx, op, "indices")
    if np.dtype(idx.dtype) != np.int64:
        raise TypeError(f"{op}: {describe(idx, 'indices')} must be int64")
    idx = flat(idx)
    if idx.size:
        first = cuda.to_device(np.array([idx.size], np.int64))
        _first_bad[grid1d(idx.size)](idx, v, first)
        bad = int(first.copy_to_host()[0])
        if bad < idx.size:
            value = int(idx[bad:bad + 1].copy_to_host()[0])
            raise IndexError(f"{op}: index {value} is out of range for a weight of {v} rows")
    return idx


def _rows(a, op: str, name: str, n: int, e: int) -> None:
    if a.ndim != 2 or tuple(a.shape) != (n, e):
        raise ValueError(f"{op}: {describe(a, name)} must have shape ({n}, {e})")


def embedding(weight, indices, out) -> None:
    """out[n, :] = weight[indices.flat[n], :] on device arrays."""
    op = "embedding"
    weight = _weight(weight, op, "weight")
    v, e = weight.shape
    idx = _indices(indices, op, v)
    out = dev(out, op, "out")
    contiguous(out, op, "out")
    check_same_dtype(weight, out, op, "weight", "out")
    _rows(out, op, "out", idx.size, e)
    if idx.size * e:
        _gather[grid1d(idx.size * e)](flat(weight), idx, flat(out), e)


def embedding_backward(grad_out, indices, grad_weight, padding_idx, scale_grad_by_freq) -> None:
    """grad_weight = the rows of grad_out summed by index (see the module docstring)."""
    op = "embedding_backward"
    gw = _weight(grad_weight, op, "grad_weight")
    v, e = gw.shape
    idx = _indices(indices, op, v)
    grad_out = dev(grad_out, op, "grad_out")
    contiguous(grad_out, op, "grad_out")
    check_same_dtype(gw, grad_out, op, "grad_weight", "grad_out")
    _rows(grad_out, op, "grad_out", idx.size, e)
    if v * e == 0:
        return
    t = np.dtype(gw.dtype).type
    _scatter_rows[min(v, MAX_GRID), EB](flat(grad_out), idx, flat(gw), v, e, int(padding_idx),
                                        bool(scale_grad_by_freq), t(0), t(1))


def embedding_renorm(weight, indices, max_norm, norm_type) -> None:
    """Scale, in place, each distinct indexed row of weight whose p-norm exceeds max_norm."""
    op = "embedding_renorm"
    weight = _weight(weight, op, "weight")
    v, e = weight.shape
    idx = _indices(indices, op, v)
    if idx.size == 0 or e == 0:
        return
    p = float(norm_type)
    kind = 1 if p == 1 else 2 if p == 2 else 3 if math.isinf(p) else 0
    _renorm_rows[min(idx.size, MAX_GRID), EB](flat(weight), idx, e, float(max_norm), p, kind)
