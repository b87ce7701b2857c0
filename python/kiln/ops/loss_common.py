"""Shared argument handling for the loss functions: reduction strings (PyTorch's
none | mean | sum, and the deprecated ``size_average`` / ``reduce`` pair), the
input/target broadcasting rule of the regression losses, and the final reduction.

PyTorch's regression losses (mse, l1, smooth_l1, huber) broadcast input against
target with a UserWarning when their sizes differ, and fail when they cannot be
broadcast; the binary cross-entropies demand equal sizes. Both rules live here so
every loss states them the same way.
"""

from __future__ import annotations

import warnings

import numpy as np

from kiln.ops._util import check_float
from kiln.tensor import Tensor

REDUCTIONS = ("none", "mean", "sum")


def legacy_reduction(size_average, reduce, reduction: str) -> str:
    """PyTorch's ``_Reduction.legacy_get_string``: the deprecated pair wins when given."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    out = "mean" if (size_average and reduce) else ("sum" if reduce else "none")
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{out}' instead.",
        stacklevel=3,
    )
    return out


def check_reduction(reduction, op: str, extra: tuple = ()) -> None:
    if reduction not in REDUCTIONS + extra:
        raise ValueError(
            f"{op}: {reduction!r} is not a valid value for reduction "
            f"(expected one of {REDUCTIONS + extra})"
        )


def reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_tensor(x, op: str, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    return x


def check_pair(input, target, op: str, *, same_size: bool = False):  # noqa: A002
    """Validate input/target: float tensors, and either equal shapes (``same_size``) or
    broadcastable ones (PyTorch warns then, and so do we)."""
    check_tensor(input, op, "input")
    check_tensor(target, op, "target")
    check_float(input, op, "input")
    check_float(target, op, "target")
    si, st = tuple(input.data.shape), tuple(target.data.shape)
    if si == st:
        return
    if same_size:
        raise ValueError(
            f"{op}: target size {st} must be the same as input size {si}"
        )
    try:
        np.broadcast_shapes(si, st)
    except ValueError:
        raise ValueError(
            f"{op}: input of shape {si} and target of shape {st} cannot be broadcast together"
        ) from None
    warnings.warn(
        f"{op}: Using a target size ({st}) that is different to the input size ({si}). "
        "This will likely lead to incorrect results due to broadcasting. "
        "Please ensure they have the same size.",
        stacklevel=3,
    )


def check_weight_same(weight, input, op: str):  # noqa: A002
    """The per-element ``weight`` of mse/l1/huber: PyTorch wants exactly the input's size."""
    check_tensor(weight, op, "weight")
    if tuple(weight.data.shape) != tuple(input.data.shape):
        raise ValueError(
            f"{op}: Weights and input must have the same size; got weight of shape "
            f"{tuple(weight.data.shape)} for input of shape {tuple(input.data.shape)}"
        )
