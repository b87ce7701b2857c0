"""kl_div and cosine_embedding_loss, as compositions of kiln ops (DESIGN.md: a
composition needs no kernel and no backward), with PyTorch 2.13's semantics.

kl_div(input, target): input holds log-probabilities; pointwise
  l = xlogy(t, t) - t * input          (log_target=False; 0 where t == 0)
  l = exp(t) * (t - input)             (log_target=True)
reduced by none | mean | sum | batchmean (sum / input.size(0)); input and target
broadcast. 'mean' divides by every element, which PyTorch warns about.

cosine_embedding_loss(x1, x2, y): cos = <x1, x2> / sqrt((|x1|^2 + eps)(|x2|^2 + eps)),
eps = 1e-12; l = 1 - cos where y == 1, max(0, cos - margin) where y == -1, 0 elsewhere.
"""

from __future__ import annotations

import warnings

import numpy as np

from kiln.ops import elementwise as ew
from kiln.ops._util import check_float, wrap
from kiln.ops.loss_common import (
    check_reduction,
    check_tensor,
    legacy_reduction,
)
from kiln.ops.loss_common import reduce as _reduce
from kiln.tensor import Tensor


def _xlogy_self(t: Tensor) -> Tensor:
    """t log t with 0 log 0 = 0; the log's argument is 1 where t == 0, so no 0 * inf."""
    pos = t.data > 0
    if pos.all():
        return ew.mul(t, ew.log(t))
    one = wrap(np.ones((), t.data.dtype))
    return ew.mul(t, ew.log(ew.where(wrap(pos), t, one)))


def kl_div(input, target, size_average=None, reduce=None, reduction="mean",  # noqa: A002
           log_target=False):
    """Kullback-Leibler divergence of ``target`` from ``exp(input)`` (input: log-probabilities).

    >>> import kiln
    >>> p = kiln.tensor([[0.5, 0.5]])
    >>> kl_div(kiln.tensor([[0.25, 0.75]]).log(), p, reduction="batchmean")
    tensor(0.1438)
    """
    op = "kl_div"
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction, op, ("batchmean",))
    if reduction == "mean":
        warnings.warn(
            "kl_div: reduction: 'mean' divides the total loss by both the batch size and the "
            "support size. 'batchmean' divides only by the batch size, and aligns with the KL "
            "div math definition.", stacklevel=2)
    check_tensor(input, op, "input")
    check_tensor(target, op, "target")
    check_float(input, op, "input")
    check_float(target, op, "target")
    try:
        np.broadcast_shapes(input.data.shape, target.data.shape)
    except ValueError:
        raise ValueError(
            f"{op}: input of shape {tuple(input.data.shape)} and target of shape "
            f"{tuple(target.data.shape)} cannot be broadcast together") from None
    if log_target:
        loss = ew.mul(ew.exp(target), ew.sub(target, input))
    else:
        loss = ew.sub(_xlogy_self(target), ew.mul(target, input))
    if reduction == "batchmean":
        total = loss.sum()
        return ew.div(total, float(input.data.shape[0])) if input.data.ndim else total
    return _reduce(loss, reduction)



def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None,
                          reduce=None, reduction="mean"):
    """1 - cos(x1, x2) for pairs labelled 1, max(0, cos - margin) for pairs labelled -1.

    >>> import kiln
    >>> a = kiln.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> b = kiln.tensor([[0.0, 1.0], [1.0, 1.0]])
    >>> cosine_embedding_loss(a, b, kiln.tensor([1, -1]), reduction="none")
    tensor([1.0000, 0.7071])
    """
    from kiln.ops.reduce import sum as _sum

    op = "cosine_embedding_loss"
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction, op)
    for name, x in (("input1", input1), ("input2", input2)):
        check_tensor(x, op, name)
        check_float(x, op, name)
    check_tensor(target, op, "target")
    s1, s2, st = (tuple(v.data.shape) for v in (input1, input2, target))
    nd = len(st)
    if nd not in (0, 1):
        raise ValueError(f"{op}: 0D or 1D target tensor expected, multi-target not supported; "
                         f"got target of shape {st}")
    if nd == 1 and not (len(s1) == 2 and len(s2) == 2):
        raise ValueError(f"{op}: 1D target tensor expects 2D input tensors, but found inputs "
                         f"with sizes {s1} and {s2}")
    if nd == 0 and not (len(s1) == 1 and len(s2) == 1):
        raise ValueError(f"{op}: 0D target tensor expects 1D input tensors, but found inputs "
                         f"with sizes {s1} and {s2}")
    if s1 != s2 or (nd == 1 and st[0] != s1[0]):
        raise ValueError(f"{op}: input1 {s1}, input2 {s2} and target {st} sizes do not match")
    prod = _sum(ew.mul(input1, input2), nd)
    m1 = ew.add(_sum(ew.mul(input1, input1), nd), 1e-12)
    m2 = ew.add(_sum(ew.mul(input2, input2), nd), 1e-12)
    cos = ew.div(prod, ew.sqrt(ew.mul(m1, m2)))
    zero = wrap(np.zeros((), cos.data.dtype))
    y = target.data
    pos = ew.where(wrap(y == 1), ew.sub(1.0, cos), zero)
    neg = ew.where(wrap(y == -1), ew.clamp(ew.sub(cos, float(margin)), min=0.0), zero)
    return _reduce(ew.add(pos, neg), reduction)
