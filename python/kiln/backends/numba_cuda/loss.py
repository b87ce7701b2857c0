"""Fused cross-entropy from logits (N, C), forward and backward, on the Numba CUDA table, with
the CPU table's semantics (csrc/cpu/loss.cpp, PyTorch's F.cross_entropy). Per row i,
lse_i = log sum_c exp(x_ic) (max-subtracted); eps = label_smoothing, w_c the class weight:
  class-index target y_i (int64), rows with y_i == ignore_index contribute nothing:
    l_i = (1 - eps) w_{y_i} (lse_i - x_{i,y_i}) + (eps / C) sum_c w_c (lse_i - x_ic)
    mean = sum_i l_i / sum_{i not ignored} w_{y_i}      (0/0 = NaN when every row is ignored)
  probability target t_ic (float, logits' shape), t' = (1 - eps) t + eps / C:
    l_i = sum_c w_c t'_ic (lse_i - x_ic)                 mean = sum_i l_i / N
  sum = sum_i l_i;  none = (l_i).  loss: (N,) for 'none', () otherwise; lse: (N,).
Gradient (p_ic = exp(x_ic - lse_i), a_i = grad_loss[i], grad_loss, or grad_loss / denom):
  class:  p_ic ((1 - eps) w_y + (eps / C) sum_k w_k) - (1 - eps) w_y [c = y] - (eps / C) w_c
  prob:   p_ic sum_k w_k t'_ik - w_c t'_ic
For float32 rows whose lse is beyond +-16 (rounding cost > ~1e-6 absolute) the backward
recomputes the log-sum-exp around the row max, as the CPU does.

Launches: one CUDA block per row (grid-stride over rows), shared-memory tree reductions for
the row max and the float64 row sums. 'mean'/'sum' write per-row losses (and weights) to a
float64 device scratch that one block then sums in a fixed order (no atomics, deterministic).
Class indices are validated on the device (one atomic min finds the first bad row; min is
order-independent), then one int64 comes back to build the CPU's IndexError.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, int64

from kiln.backends.numba_cuda._common import SIMULATOR, check_float, describe, dev, jit
from kiln.backends.numba_cuda._reduce import _block_max, _block_sum

_ROW_MIN, _ROW_MAX = (4, 16) if SIMULATOR else (32, 256)
_MAX_BLOCKS = 2 if SIMULATOR else 65535
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


@jit(device=True)
def _div(a, b):
    """a / b in float64 with IEEE results for b == 0 (Numba would raise ZeroDivisionError)."""
    if b != 0.0:
        return a / b
    if a > 0.0:
        return math.inf
    if a < 0.0:
        return -math.inf
    return math.nan


@jit
def _first_bad_target(t, C, ignore_index, bad):
    for i in range(cuda.grid(1), t.size, cuda.gridsize(1)):
        y = t[i]
        if y != ignore_index and (y < 0 or y >= C):
            cuda.atomic.min(bad, 0, i)


@jit
def _weight_stats(w, has_w, C, N, t, is_class, ignore_index, stats):
    # stats[0] = sum_c w_c, stats[1] = the 'mean' denominator (one block)
    sm = cuda.shared.array(256, dtype=float64)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    a = 0.0
    if has_w:
        for c in range(tid, C, nt):
            a += w[c]
    a = _block_sum(sm, a)
    d = 0.0
    if is_class:
        for i in range(tid, t.shape[0], nt):
            y = t[i]
            if y != ignore_index:
                d += w[y] if has_w else 1.0
    d = _block_sum(sm, d)
    if tid == 0:
        stats[0] = a if has_w else float64(C)
        stats[1] = d if is_class else float64(N)


@jit
def _forward_rows(x, t, tp, w, has_w, is_class, lse, row_l, ignore_index, eps, stats, ninf):
    smx = cuda.shared.array(256, dtype=x.dtype)
    sms = cuda.shared.array(256, dtype=float64)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    N, C = x.shape[0], x.shape[1]
    epsC = eps / C if C > 0 else 0.0
    wall = stats[0]
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        m = ninf
        for c in range(tid, C, nt):
            if x[i, c] > m:
                m = x[i, c]
        m = _block_max(smx, m)
        s = 0.0
        for c in range(tid, C, nt):
            s += math.exp(x[i, c] - m)
        s = _block_sum(sms, s)
        lv = float64(m) + (math.log(s) if s > 0.0 else -math.inf)  # C == 0: -inf
        li = 0.0
        den = 0.0
        if is_class:
            y = t[i]
            if y != ignore_index:
                wy = float64(w[y]) if has_w else 1.0
                if eps > 0.0:
                    d = 0.0  # sum_c w_c x_c
                    for c in range(tid, C, nt):
                        d += (float64(w[c]) if has_w else 1.0) * float64(x[i, c])
                    d = _block_sum(sms, d)
                    li = epsC * (lv * wall - d)
                li += (1.0 - eps) * wy * (lv - float64(x[i, y]))
                den = wy
        else:
            a = 0.0
            for c in range(tid, C, nt):
                tpc = (1.0 - eps) * float64(tp[i, c]) + epsC
                a += (float64(w[c]) if has_w else 1.0) * tpc * (lv - float64(x[i, c]))
            li = _block_sum(sms, a)
            den = 1.0
        if tid == 0:
            lse[i] = lv
            row_l[0, i] = li
            row_l[1, i] = den


@jit
def _reduce_loss(row_l, loss, mode):
    # one block: loss[0] = sum_i l_i (mode 2) or sum_i l_i / sum_i den_i (mode 1)
    sm = cuda.shared.array(256, dtype=float64)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    a = 0.0
    b = 0.0
    for i in range(tid, row_l.shape[1], nt):
        a += row_l[0, i]
        b += row_l[1, i]
    a = _block_sum(sm, a)
    b = _block_sum(sm, b)
    if tid == 0:
        loss[0] = a if mode == 2 else _div(a, b)


@jit
def _copy_rows(row_l, loss):
    for i in range(cuda.grid(1), loss.size, cuda.gridsize(1)):
        loss[i] = row_l[0, i]


@jit
def _backward_rows(gl, x, t, tp, w, has_w, is_class, lse, gx, ignore_index, eps, mode, stats,
                   recompute, ninf):
    smx = cuda.shared.array(256, dtype=x.dtype)
    sms = cuda.shared.array(256, dtype=float64)
    tmp = cuda.local.array(1, dtype=x.dtype)  # rounds a float64 to the logits' dtype
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    N, C = x.shape[0], x.shape[1]
    epsC = eps / C if C > 0 else 0.0
    wall = stats[0]
    scale = _div(1.0, stats[1]) if mode == 1 else 1.0
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        a = float64(gl[i] if mode == 0 else gl[0]) * scale
        shift = lse[i]
        inv = 1.0
        if recompute and not abs(float64(lse[i])) <= 16.0:  # block-uniform branch
            m = ninf
            for c in range(tid, C, nt):
                if x[i, c] > m:
                    m = x[i, c]
            shift = _block_max(smx, m)
            s = 0.0
            for c in range(tid, C, nt):
                s += math.exp(x[i, c] - shift)
            inv = 1.0 / _block_sum(sms, s)
        if not is_class:
            A = 0.0
            for c in range(tid, C, nt):
                A += (float64(w[c]) if has_w else 1.0) * ((1.0 - eps) * float64(tp[i, c]) + epsC)
            A = _block_sum(sms, A)
            tmp[0] = a * A * inv
            k = tmp[0]
            for c in range(tid, C, nt):
                v = math.exp(x[i, c] - shift) * k
                tmp[0] = a * (float64(w[c]) if has_w else 1.0) * (
                    (1.0 - eps) * float64(tp[i, c]) + epsC)
                gx[i, c] = v - tmp[0]
            continue
        y = t[i]
        if y == ignore_index:
            for c in range(tid, C, nt):
                gx[i, c] = 0
            continue
        wy = float64(w[y]) if has_w else 1.0
        tmp[0] = a * ((1.0 - eps) * wy + epsC * wall) * inv
        k = tmp[0]
        for c in range(tid, C, nt):
            v = math.exp(x[i, c] - shift) * k
            if eps > 0.0:
                tmp[0] = a * epsC * (float64(w[c]) if has_w else 1.0)
                v -= tmp[0]
            if c == y:
                tmp[0] = a * (1.0 - eps) * wy
                v -= tmp[0]
            gx[i, c] = v


# ---- host side: the CPU's checks, scratch and launches ----------------------------------

def _shape_str(*dims) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _contig(a, op, name):
    if not a.is_c_contiguous():
        raise ValueError(f"{op}: {describe(a, name)} must be C-contiguous")


def _check(op, logits, target, weight, lse, loss_like, loss_name, label_smoothing, reduction):
    """The CPU's check_ce: returns (N, C, is_class, mode)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got '{reduction}'")
    mode = _REDUCTIONS[reduction]
    check_float(logits, op, "logits")
    _contig(logits, op, "logits")
    if logits.ndim != 2:
        raise ValueError(f"{op}: {describe(logits, 'logits')} must be 2-D (N, C)")
    N, C = logits.shape
    _contig(target, op, "target")
    td = np.dtype(target.dtype)
    if td == np.int64:
        is_class = True
        if tuple(target.shape) != (N,):
            raise ValueError(f"{op}: class-index {describe(target, 'target')} must have shape "
                             f"{_shape_str(N)} for {describe(logits, 'logits')}")
    elif td in (np.float32, np.float64):
        is_class = False
        if td != np.dtype(logits.dtype):
            raise TypeError(f"{op}: dtype mismatch: {describe(logits, 'logits')} vs "
                            f"{describe(target, 'target')}")
        if tuple(target.shape) != (N, C):
            raise ValueError(f"{op}: probability {describe(target, 'target')} must have the shape"
                             f" of {describe(logits, 'logits')} (class-index targets must be "
                             f"int64 of shape {_shape_str(N)})")
    else:
        raise TypeError(f"{op}: {describe(target, 'target')} must be int64 class indices or "
                        "float probabilities")
    if weight is not None:
        _contig(weight, op, "weight")
        if np.dtype(weight.dtype) != np.dtype(logits.dtype):
            raise TypeError(f"{op}: dtype mismatch: {describe(logits, 'logits')} vs "
                            f"{describe(weight, 'weight')}")
        if tuple(weight.shape) != (C,):
            raise ValueError(f"{op}: {describe(weight, 'weight')} must have shape "
                             f"{_shape_str(C)} for {describe(logits, 'logits')}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing:f}")
    for a, n, want in ((lse, "lse", (N,)),
                       (loss_like, loss_name, (N,) if mode == 0 else ())):
        if np.dtype(a.dtype) != np.dtype(logits.dtype):
            raise TypeError(f"{op}: dtype mismatch: {describe(logits, 'logits')} vs "
                            f"{describe(a, n)}")
        if tuple(a.shape) != want:
            extra = f" for reduction '{reduction}'" if n == loss_name else ""
            raise ValueError(f"{op}: {describe(a, n)} must have shape {_shape_str(*want)}"
                             + extra)
        _contig(a, op, n)
    return N, C, is_class, mode


def _check_targets(op, t, N, C, ignore_index):
    """Out-of-range class indices raise IndexError (checked on the device)."""
    if N == 0:
        return
    bad = cuda.to_device(np.array([N], np.int64))
    _first_bad_target[min(_MAX_BLOCKS, math.ceil(N / 128)), 128](t, int64(C), int64(ignore_index),
                                                                  bad)
    row = int(bad.copy_to_host()[0])
    if row < N:
        y = int(t[row:row + 1].copy_to_host()[0])
        raise IndexError(f"{op}: target {y} at row {row} is out of bounds for C = {C} classes "
                         f"(ignore_index = {ignore_index})")


def _block(C: int) -> int:
    return min(_ROW_MAX, max(_ROW_MIN, 1 << max(C - 1, 0).bit_length()))


def _args(logits, target, weight, is_class, N, C, ignore_index, eps, need_den):
    """Kernel operands: the unused target/weight slots get 1-element dummies of their type;
    stats = (sum_c w_c, the 'mean' denominator), on the device only where they need a sum."""
    dt = np.dtype(logits.dtype)
    t = target if is_class else cuda.to_device(np.zeros(1, np.int64))
    tp = cuda.to_device(np.zeros((1, 1), dt)) if is_class else target
    has_w = weight is not None
    w = weight if has_w else cuda.to_device(np.zeros(1, dt))
    if not (is_class and ((has_w and eps > 0.0) or need_den)):
        return t, tp, w, has_w, cuda.to_device(np.array([C, N], np.float64))
    stats = cuda.device_array(2, np.float64)
    _weight_stats[1, _block(max(C, N))](w, has_w, int64(C), int64(N), t, is_class,
                                        int64(ignore_index), stats)
    return t, tp, w, has_w, stats


def cross_entropy(logits, target, weight, loss, lse, ignore_index, label_smoothing,
                  reduction) -> None:
    op = "cross_entropy"
    logits, target, loss, lse = (dev(a, op, n) for a, n in (
        (logits, "logits"), (target, "target"), (loss, "loss"), (lse, "lse")))
    weight = dev(weight, op, "weight", optional=True)
    eps = float(label_smoothing)
    N, C, is_class, mode = _check(op, logits, target, weight, lse, loss, "loss", eps, reduction)
    if is_class:
        _check_targets(op, target, N, C, int(ignore_index))
    t, tp, w, has_w, stats = _args(logits, target, weight, is_class, N, C, ignore_index, eps,
                                   False)
    row_l = cuda.device_array((2, max(N, 1)), np.float64)
    ninf = np.dtype(logits.dtype).type(-np.inf)
    if N > 0:
        _forward_rows[min(N, _MAX_BLOCKS), _block(C)](
            logits, t, tp, w, has_w, is_class, lse, row_l, int64(ignore_index), eps, stats,
            ninf)
    if mode == 0:
        if N > 0:
            _copy_rows[min(_MAX_BLOCKS, math.ceil(N / 128)), 128](row_l, loss)
    else:
        if N == 0:
            row_l = cuda.to_device(np.zeros((2, 0), np.float64))
        _reduce_loss[1, _block(N)](row_l, loss.reshape(1), mode)


def cross_entropy_backward(grad_loss, logits, target, weight, lse, grad_logits, ignore_index,
                           label_smoothing, reduction) -> None:
    op = "cross_entropy_backward"
    grad_loss, logits, target, lse, grad_logits = (dev(a, op, n) for a, n in (
        (grad_loss, "grad_loss"), (logits, "logits"), (target, "target"), (lse, "lse"),
        (grad_logits, "grad_logits")))
    weight = dev(weight, op, "weight", optional=True)
    eps = float(label_smoothing)
    N, C, is_class, mode = _check(op, logits, target, weight, lse, grad_loss, "grad_loss", eps,
                                  reduction)
    if np.dtype(grad_logits.dtype) != np.dtype(logits.dtype):
        raise TypeError(f"{op}: dtype mismatch: {describe(logits, 'logits')} vs "
                        f"{describe(grad_logits, 'grad_logits')}")
    if tuple(grad_logits.shape) != (N, C):
        raise ValueError(f"{op}: shape mismatch: {describe(logits, 'logits')} vs "
                         f"{describe(grad_logits, 'grad_logits')}")
    _contig(grad_logits, op, "grad_logits")
    if is_class:
        _check_targets(op, target, N, C, int(ignore_index))
    if N == 0 or C == 0:
        return
    t, tp, w, has_w, stats = _args(logits, target, weight, is_class, N, C, ignore_index, eps,
                                   mode == 1)
    dt = np.dtype(logits.dtype)
    _backward_rows[min(N, _MAX_BLOCKS), _block(C)](
        grad_loss.reshape(max(grad_loss.size, 1)), logits, t, tp, w, has_w, is_class, lse,
        grad_logits, int64(ignore_index), eps, mode, stats, dt == np.float32, dt.type(-np.inf))
