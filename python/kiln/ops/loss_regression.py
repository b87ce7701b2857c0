"""Regression losses on d = input - target, each one graph node (forward in NumPy,
elementwise loss and reduction fused; backward in kiln ops, so it is differentiable
again under create_graph), with PyTorch's names, arguments and semantics:

  mse_loss        l = d^2                                  dl/dd = 2 d
  l1_loss         l = |d|                                  dl/dd = sign(d)
  smooth_l1_loss  l = 0.5 d^2 / beta  if |d| < beta         dl/dd = d / beta
                      |d| - 0.5 beta  otherwise                    sign(d)
  huber_loss      l = 0.5 d^2         if |d| < delta        dl/dd = d
                      delta (|d| - 0.5 delta) otherwise            delta sign(d)

input and target broadcast (with PyTorch's UserWarning when their sizes differ);
the gradient of each is summed back to its own shape. ``weight`` (mse, l1, huber:
the input's exact size) multiplies the unreduced loss; the weighted 'mean' is
sum(w l) / sum(w) for mse and l1 but mean(w l) for huber, as in PyTorch 2.13.
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function
from kiln.ops import elementwise as ew
from kiln.ops._util import raw, sum_to, sum_to_array, wrap
from kiln.ops.loss_common import (
    check_pair,
    check_reduction,
    check_weight_same,
    legacy_reduction,
)
from kiln.tensor import Tensor


def reduce_array(loss: np.ndarray, reduction: str) -> np.ndarray:
    """none | mean | sum of an array; the mean of an empty loss is NaN, as in PyTorch."""
    if reduction == "none":
        return loss
    with np.errstate(invalid="ignore", divide="ignore"):
        s = loss.sum(dtype=loss.dtype)
        if reduction == "mean":
            s = s / loss.dtype.type(loss.size)
    return np.asarray(s, dtype=loss.dtype)


def scale_grad(g: Tensor, reduction: str, n: int) -> Tensor:
    """The upstream gradient of a reduced loss as seen by each element."""
    return ew.mul(g, 1.0 / n) if reduction == "mean" and n else g


class _DiffLoss(Function):
    """loss(input - target) then the reduction, in one node. Subclasses give ``value``
    (NumPy), ``slope`` (dl/dd in kiln ops, differentiable: create_graph) and
    ``slope_np`` (the same on arrays: the plain backward's single pass)."""

    @classmethod
    def forward(cls, ctx, x, t, reduction, param):
        if x.dtype != t.dtype:
            raise TypeError(f"{cls.op}: input {x.dtype} and target {t.dtype} must have the "
                            "same dtype")
        d = np.subtract(x, t)
        ctx.d = d
        return reduce_array(cls.value(d, param), reduction)

    @classmethod
    def backward(cls, ctx, g):
        x, t, reduction, param = ctx.inputs
        t_grad = isinstance(t, Tensor) and t.requires_grad
        if raw():  # plain backward: one NumPy pass, no graph
            gd = cls.slope_np(ctx.d, param)
            n = ctx.d.size
            gd *= g.data * gd.dtype.type(1.0 / n) if reduction == "mean" and n else g.data
            gx = sum_to_array(gd, x.data.shape) if x.requires_grad else None
            gt = sum_to_array(-gd, t.data.shape) if t_grad else None
            return gx, gt, None, None
        d = ew.sub(x, t)
        gd = ew.mul(cls.slope(d, param), scale_grad(g, reduction, ctx.d.size))
        gx = sum_to(gd, x.data.shape) if x.requires_grad else None
        gt = sum_to(ew.neg(gd), t.data.shape) if t_grad else None
        return gx, gt, None, None


def _sign(d: Tensor) -> Tensor:
    return wrap(np.sign(d.data))


class MseLoss(_DiffLoss):
    op = "mse_loss"
    value = staticmethod(lambda d, p: np.square(d))
    slope = staticmethod(lambda d, p: ew.mul(d, 2.0))
    slope_np = staticmethod(lambda d, p: d * d.dtype.type(2))


class L1Loss(_DiffLoss):
    op = "l1_loss"
    value = staticmethod(lambda d, p: np.abs(d))
    slope = staticmethod(lambda d, p: _sign(d))
    slope_np = staticmethod(lambda d, p: np.sign(d))


def _smooth_value(d, beta):
    # with m = min(|d|, beta): m (|d| - m/2) / beta is 0.5 d^2 / beta below beta and
    # |d| - beta/2 above -- one pass of in-place ops instead of np.where's temporaries
    a = np.abs(d)
    m = np.minimum(a, d.dtype.type(beta))
    a -= 0.5 * m
    a *= m
    a *= d.dtype.type(1.0 / beta)
    return a


def _huber_value(d, delta):
    a = np.abs(d)
    m = np.minimum(a, d.dtype.type(delta))  # m (|d| - m/2): 0.5 d^2, or delta (|d| - delta/2)
    a -= 0.5 * m
    a *= m
    return a


class SmoothL1Loss(_DiffLoss):
    op = "smooth_l1_loss"
    value = staticmethod(_smooth_value)
    # d / beta inside (-beta, beta), sign(d) outside: a clamp
    slope = staticmethod(lambda d, beta: ew.clamp(ew.mul(d, 1.0 / beta), -1.0, 1.0))
    slope_np = staticmethod(lambda d, beta: np.clip(d * d.dtype.type(1.0 / beta), -1, 1,
                                                    dtype=d.dtype))


class HuberLoss(_DiffLoss):
    op = "huber_loss"
    value = staticmethod(_huber_value)
    slope = staticmethod(lambda d, delta: ew.clamp(d, -delta, delta))
    slope_np = staticmethod(lambda d, delta: np.clip(d, -delta, delta, dtype=d.dtype))


def _weighted(loss: Tensor, weight: Tensor, reduction: str, by_weight_sum: bool) -> Tensor:
    wl = ew.mul(loss, weight)
    if reduction == "none":
        return wl
    if reduction == "sum":
        return wl.sum()
    return ew.div(wl.sum(), weight.sum()) if by_weight_sum else wl.mean()


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean",  # noqa: A002
             weight=None):
    """Mean squared error ``(input - target)^2`` with PyTorch's reduction and ``weight``.

    >>> import kiln
    >>> mse_loss(kiln.tensor([1.0, 2.0]), kiln.tensor([0.0, 0.0]))
    tensor(2.5000)
    """
    return _diff_loss(MseLoss, input, target, size_average, reduce, reduction, None, weight, True)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean",  # noqa: A002
            weight=None):
    """Mean absolute error ``|input - target|``.

    >>> import kiln
    >>> l1_loss(kiln.tensor([1.0, -3.0]), kiln.tensor([0.0, 0.0]), reduction="sum")
    tensor(4.)
    """
    return _diff_loss(L1Loss, input, target, size_average, reduce, reduction, None, weight, True)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean",  # noqa: A002
                   beta=1.0):
    """Quadratic below ``beta``, linear above (``beta=0`` is the L1 loss).

    >>> import kiln
    >>> smooth_l1_loss(kiln.tensor([0.5, 3.0]), kiln.tensor([0.0, 0.0]), reduction="none")
    tensor([0.1250, 2.5000])
    """
    beta = float(beta)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    cls = L1Loss if beta == 0.0 else SmoothL1Loss
    return _diff_loss(cls, input, target, size_average, reduce, reduction, beta, None, True,
                      op="smooth_l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):  # noqa: A002
    """Quadratic below ``delta``, ``delta``-sloped linear above.

    >>> import kiln
    >>> huber_loss(kiln.tensor([0.5, 3.0]), kiln.tensor([0.0, 0.0]), reduction="none", delta=2.0)
    tensor([0.1250, 4.0000])
    """
    delta = float(delta)
    if not delta > 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta, got {delta}")
    return _diff_loss(HuberLoss, input, target, None, None, reduction, delta, weight, False)


def _diff_loss(cls, input, target, size_average, reduce, reduction, param, weight,  # noqa: A002
               by_weight_sum, op=None):
    op = op or cls.op
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction, op)
    check_pair(input, target, op)
    if weight is None:
        return cls.apply(input, target, reduction, param)
    check_weight_same(weight, input, op)
    return _weighted(cls.apply(input, target, "none", param), weight, reduction, by_weight_sum)
