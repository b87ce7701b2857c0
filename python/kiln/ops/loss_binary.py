"""Binary cross-entropies, each one graph node (forward in NumPy with the reduction
fused; backward in kiln ops, differentiable again under create_graph), following
PyTorch 2.13 exactly:

binary_cross_entropy(x, t, w), x in [0, 1]:
  l = -w (t max(log x, -100) + (1 - t) max(log(1 - x), -100))
  dl/dx = w (x - t) / max(x (1 - x), 1e-12)        dl/dt = w (log(1 - x) - log x)
binary_cross_entropy_with_logits(x, t, w, p), any x, stable for |x| >> 1:
  ls(x) = log sigmoid(x) = min(x, 0) - log1p(exp(-|x|))
  l = w ((1 - t) x - (1 + (p - 1) t) ls(x))
  dl/dx = w ((p t + 1 - t) sigmoid(x) - p t)        dl/dt = w (ls(-x) - p ls(x))
with p = 1 when no pos_weight is given. input and target must have the same
size; weight and pos_weight broadcast against them (pos_weight usually (C,): one
weight per class along the last dimension). As in PyTorch, neither weight nor
pos_weight is differentiable.
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function, is_grad_enabled
from kiln.ops import activation as act
from kiln.ops import elementwise as ew
from kiln.ops._util import raw, sum_to, wrap
from kiln.ops.loss_common import check_pair, check_reduction, check_tensor, legacy_reduction
from kiln.ops.loss_regression import reduce_array, scale_grad
from kiln.tensor import Tensor


class BinaryCrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, t, w, reduction):
        bad = ~((x >= 0) & (x <= 1))
        if bad.any():
            raise ValueError(
                f"binary_cross_entropy: all elements of input should be between 0 and 1; got "
                f"{x[bad].reshape(-1)[0]!r} in input of shape {tuple(x.shape)}"
            )
        with np.errstate(divide="ignore"):
            lx = np.maximum(np.log(x), -100)
            l1x = np.maximum(np.log1p(-x), -100)
        loss = -(t * lx + (1 - t) * l1x)
        if w is not None:
            loss = loss * w
        return reduce_array(loss.astype(x.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, g):
        x, t, w, reduction = ctx.inputs
        gs = scale_grad(g, reduction, x.data.size)
        if w is not None:
            gs = ew.mul(gs, w)
        gx = gt = None
        if x.requires_grad:
            denom = ew.clamp(ew.mul(x, ew.sub(1.0, x)), min=1e-12)
            gx = sum_to(ew.mul(gs, ew.div(ew.sub(x, t), denom)), x.data.shape)
        if t.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                logit = wrap(np.log(x.data) - np.log1p(-x.data)) if raw() else ew.sub(
                    ew.log(x), ew.log(ew.sub(1.0, x)))
                gt = sum_to(ew.neg(ew.mul(gs, logit)), t.data.shape)
        return gx, gt, None, None


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


class BinaryCrossEntropyWithLogits(Function):
    @staticmethod
    def forward(ctx, x, t, w, p, reduction):
        ls = _log_sigmoid(x)
        if p is None:
            loss = (1 - t) * x - ls
        else:
            loss = (1 - t) * x - (1 + (p - 1) * t) * ls
        if w is not None:
            loss = loss * w
        return reduce_array(loss.astype(x.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, g):
        x, t, w, p, reduction = ctx.inputs
        gs = scale_grad(g, reduction, x.data.size)
        if w is not None:
            gs = ew.mul(gs, w)
        gx = gt = None
        if x.requires_grad:
            s = act.sigmoid(x)
            if p is None:
                d = ew.sub(s, t)
            else:
                pt = ew.mul(p, t)
                d = ew.sub(ew.mul(ew.sub(ew.add(pt, 1.0), t), s), pt)
            gx = sum_to(ew.mul(gs, d), x.data.shape)
        if isinstance(t, Tensor) and t.requires_grad:
            # d/dt = ls(-x) - p ls(x); ls(x) = -softplus(-x)
            ls_pos = ew.neg(act.softplus(ew.neg(x)))
            ls_neg = ew.neg(act.softplus(x))
            d = ew.sub(ls_neg, ls_pos if p is None else ew.mul(p, ls_pos))
            gt = sum_to(ew.mul(gs, d), t.data.shape)
        return gx, gt, None, None, None


def _check_weight(w, name, shape, op):
    if w is None:
        return None
    check_tensor(w, op, name)
    if w.requires_grad and is_grad_enabled():
        raise RuntimeError(f"The function '{op}' is not differentiable with respect to argument "
                           f"'{name}'. This input cannot have requires_grad True.")
    try:
        ok = np.broadcast_shapes(tuple(w.data.shape), shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{op}: {name} of shape {tuple(w.data.shape)} cannot be broadcast to "
                         f"the input's shape {shape}")
    return w.detach()


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,  # noqa: A002
                         reduction="mean"):
    """Binary cross-entropy of probabilities ``input`` against ``target`` in [0, 1].

    >>> import kiln
    >>> binary_cross_entropy(kiln.tensor([0.5, 0.9]), kiln.tensor([1.0, 1.0]), reduction="sum")
    tensor(0.7985)
    """
    op = "binary_cross_entropy"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction, op)
    check_pair(input, target, op, same_size=True)
    w = _check_weight(weight, "weight", tuple(input.data.shape), op)
    return BinaryCrossEntropy.apply(input, target, w, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,  # noqa: A002
                                     reduce=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one numerically stable step.

    >>> import kiln
    >>> x = kiln.tensor([1e4, -1e4, 0.0])
    >>> binary_cross_entropy_with_logits(x, kiln.tensor([0.0, 1.0, 1.0]), reduction="none")
    tensor([1.0000e+04, 1.0000e+04, 6.9315e-01])
    """
    op = "binary_cross_entropy_with_logits"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction, op)
    check_pair(input, target, op, same_size=True)
    shape = tuple(input.data.shape)
    w = _check_weight(weight, "weight", shape, op)
    p = _check_weight(pos_weight, "pos_weight", shape, op)
    return BinaryCrossEntropyWithLogits.apply(input, target, w, p, reduction)
