"""Losses: cross_entropy (fused kernel: log-softmax + NLL + weights + label smoothing,
forward and backward) and nll_loss. The other losses are in loss_regression.py
(mse, l1, smooth_l1, huber), loss_binary.py (binary cross-entropies) and
loss_divergence.py (kl_div, cosine_embedding_loss).

cross_entropy follows ``torch.nn.functional.cross_entropy``: input (C,), (N, C) or
(N, C, d1, ...); target class indices (int64, input's shape without C) or class
probabilities (input's shape); ``ignore_index``, ``weight``, ``label_smoothing``,
``reduction`` none|mean|sum. d loss / d logits = w * (softmax - smoothed target) * g.
"""

from __future__ import annotations

import numpy as np

from kiln import _cpu
from kiln.autograd import Function
from kiln.ops import elementwise as ew
from kiln.ops._util import check_float, contig, kernels, wrap
from kiln.ops.movement import contiguous, permute, reshape, unsqueeze
from kiln.tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")
_F32, _F64, _I64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)


class CrossEntropy(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, label_smoothing, reduction):
        n, dt = logits.shape[0], logits.dtype
        loss = np.empty((n,) if reduction == "none" else (), dt)
        lse = np.empty((n,), dt)
        (_cpu if type(logits) is np.ndarray else kernels(logits)).cross_entropy(
            logits, target, weight, loss, lse, ignore_index, label_smoothing, reduction)
        ctx.lse = lse
        return loss

    @staticmethod
    def backward(ctx, g):
        logits, target, weight, ignore_index, label_smoothing, reduction = ctx.inputs
        gl = np.empty_like(logits.data)
        w = weight.data if weight is not None else None
        kernels(gl).cross_entropy_backward(contig(g.data), logits.data, target.data, w, ctx.lse,
                                           gl, ignore_index, label_smoothing, reduction)
        return wrap(gl), None, None, None, None, None


def _class_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N*d1*..., C), contiguous."""
    if x.data.ndim <= 2:
        return contiguous(x)
    perm = (0,) + tuple(range(2, x.data.ndim)) + (1,)
    rows = x.data.size // x.data.shape[1] if x.data.shape[1] else 0
    return reshape(contiguous(permute(x, *perm)), (rows, x.data.shape[1]))


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,  # noqa: A002
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits against class indices or probabilities (PyTorch semantics).

    >>> import kiln
    >>> logits = kiln.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> round(cross_entropy(logits, kiln.tensor([0, 2])).item(), 4)
    0.6691
    """
    op = "cross_entropy"
    if type(input) is Tensor and type(target) is Tensor and weight is None and (
            reduction == "mean" or reduction == "sum") and 0.0 <= label_smoothing <= 1.0:
        # the common case, (N, C) logits and (N,) int64 classes, with nothing else on the
        # path: the checks below cost as much as the kernel on a small batch
        xd, td = input.data, target.data
        xs = xd.shape
        if (len(xs) == 2 and (xd.dtype is _F32 or xd.dtype is _F64) and td.dtype is _I64
                and td.shape == xs[:1] and xd.flags.c_contiguous and td.flags.c_contiguous):
            return CrossEntropy.apply(input, target, None, int(ignore_index),
                                      float(label_smoothing), reduction)
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected Tensors for input and target")
    check_float(input, op)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    x, t = input, target
    ishape, tshape = tuple(x.data.shape), tuple(t.data.shape)
    if x.data.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d tensor")
    unbatched = x.data.ndim == 1
    if unbatched:
        x = unsqueeze(x, 0)
        t = unsqueeze(t, 0)
    C = x.data.shape[1]
    probs = t.data.dtype.kind == "f"
    if probs:
        if t.data.shape != x.data.shape:
            raise ValueError(
                f"{op}: float target must hold class probabilities with the input's shape "
                f"{ishape}; got target of shape {tshape} (for class indices use an int64 target)"
            )
        if t.data.dtype != x.data.dtype:
            raise TypeError(f"{op}: probability target {t.dtype} must match input {input.dtype}")
        tf = _class_last(t.detach())
    else:
        if t.data.dtype.kind != "i":
            raise TypeError(
                f"{op}: target must be int64 class indices or float class probabilities; got "
                f"{t.dtype} of shape {tshape}"
            )
        want = (x.data.shape[0],) + x.data.shape[2:]
        if t.data.shape != want:
            raise ValueError(
                f"{op}: expected target of shape {want if not unbatched else ()} for input of "
                f"shape {ishape}, got {tshape}"
            )
        tf = wrap(contig(t.data.reshape(-1)))
    if weight is not None:
        if not isinstance(weight, Tensor) or weight.data.shape != (C,):
            raise ValueError(
                f"{op}: weight must be a tensor of shape ({C},) for {C} classes, got "
                f"{tuple(np.shape(getattr(weight, 'data', weight)))}"
            )
        if weight.data.dtype != x.data.dtype:
            raise TypeError(f"{op}: weight dtype {weight.dtype} must match input {input.dtype}")
        weight = wrap(contig(weight.data))
    xf = _class_last(x)
    loss = CrossEntropy.apply(xf, tf, weight, int(ignore_index), float(label_smoothing),
                              reduction)
    if reduction == "none":
        out_shape = () if unbatched else (x.data.shape[0],) + x.data.shape[2:]
        loss = reshape(loss, out_shape)
    return loss


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100,  # noqa: A002
             reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` (C,), (N, C) or (N, C, d1, ...)
    at class indices ``target``; ``weight`` per class, ``ignore_index`` rows count for
    nothing (the weighted mean divides by the sum of the kept rows' weights).

    >>> import kiln
    >>> logp = kiln.tensor([[-0.1, -2.0], [-1.0, -0.5]])
    >>> nll_loss(logp, kiln.tensor([0, 1]))
    tensor(0.3000)
    """
    from kiln.ops.indexing import index
    from kiln.ops.loss_common import check_reduction, legacy_reduction

    op = "nll_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction, op)
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected Tensors for input and target")
    check_float(input, op)
    if target.data.dtype.kind != "i":
        raise TypeError(f"{op}: target must be int64 class indices, got {target.dtype}")
    ishape, tshape = tuple(input.data.shape), tuple(target.data.shape)
    if input.data.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d tensor")
    want = () if input.data.ndim == 1 else (ishape[0],) + ishape[2:]
    if tshape != want:
        raise ValueError(f"{op}: expected target of shape {want} for input of shape {ishape}, "
                         f"got {tshape}")
    x = input if input.data.ndim > 1 else input.unsqueeze(0)
    t = target.data.reshape(-1)
    if x.data.ndim > 2:
        x = _class_last(x)
    C = x.data.shape[1]
    if weight is not None and (not isinstance(weight, Tensor) or weight.data.shape != (C,)):
        raise ValueError(f"{op}: weight must be a tensor of shape ({C},) for {C} classes, got "
                         f"{tuple(np.shape(getattr(weight, 'data', weight)))}")
    valid = t != ignore_index
    if np.any((t[valid] < 0) | (t[valid] >= C)):
        bad = t[valid][(t[valid] < 0) | (t[valid] >= C)][0]
        raise IndexError(f"{op}: target {int(bad)} is out of bounds for {C} classes")
    safe = np.where(valid, t, 0)
    picked = index(x, (np.arange(x.data.shape[0]), safe))
    w = np.ones(C, dtype=x.data.dtype) if weight is None else weight.data
    wt = wrap((w[safe] * valid).astype(x.data.dtype))
    losses = ew.neg(ew.mul(picked, wt))
    if reduction == "none":
        return losses.reshape(tshape)
    total = losses.sum()
    if reduction == "sum":
        return total
    wsum = wt.data.sum()
    if wsum == 0:  # every target ignored: NaN loss, zero gradient (as PyTorch)
        return ew.add(ew.mul(total, 0.0), float("nan"))
    return ew.div(total, wrap(wsum))


# Regression and binary losses live in their own files; re-exported for old imports.
from kiln.ops.loss_binary import binary_cross_entropy_with_logits  # noqa: E402, F401
from kiln.ops.loss_regression import l1_loss, mse_loss  # noqa: E402, F401
