"""Activation modules under torch.nn's names, arguments and repr: ReLU, LeakyReLU,
Sigmoid, Tanh, GELU, SiLU, Softplus, ELU, Softmax, LogSoftmax, Softmin, Hardtanh, Mish.

Each forwards to its functional op (compiled kernels for relu ... log_softmax). Three
small compositions are defined here and exported by ``kiln.nn.functional``:
  hardtanh(x) = clamp(x, min_val, max_val), gradient 1 strictly inside (min, max)
  mish(x)     = x tanh(softplus(x))
  softmin(x)  = softmax(-x)
``inplace=True`` is accepted (and shown by repr) as in PyTorch, but kiln computes
out of place and returns a new tensor: the result is the same, the input is not
overwritten.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> nn.LeakyReLU(0.2, inplace=True)
    LeakyReLU(negative_slope=0.2, inplace=True)
    >>> nn.Hardtanh()(kiln.tensor([-2.0, 0.5, 3.0]))
    tensor([-1.0000,  0.5000,  1.0000])
"""

from __future__ import annotations

import warnings

import numpy as np

from kiln.nn.module import Module
from kiln.ops import activation as A
from kiln.ops import elementwise as ew
from kiln.ops._util import check_float, wrap
from kiln.tensor import Tensor


# ---- functional compositions ---------------------------------------------------------
def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,  # noqa: A002
             inplace: bool = False) -> Tensor:
    """Clamp to [min_val, max_val]; like PyTorch, the gradient is 0 at the bounds.

    >>> import kiln
    >>> hardtanh(kiln.tensor([-3.0, 0.25]), -2.0, 2.0)
    tensor([-2.0000,  0.2500])
    """
    check_float(input, "hardtanh")
    x = input.data
    inside = (x > min_val) & (x < max_val)
    clipped = wrap(np.clip(x, min_val, max_val).astype(x.dtype, copy=False))
    return ew.where(wrap(inside), input, clipped)


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * tanh(softplus(x))``.

    >>> import kiln
    >>> mish(kiln.tensor([0.0, 1.0]))
    tensor([0.0000, 0.8651])
    """
    return ew.mul(input, A.tanh(A.softplus(input)))


def softmin(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:  # noqa: A002
    """``softmax(-x, dim)``.

    >>> import kiln
    >>> softmin(kiln.tensor([0.0, 1e4]), 0)
    tensor([1., 0.])
    """
    if dtype is not None:
        input = input.to(dtype)
    return A.softmax(ew.neg(input), dim)


# ---- modules ---------------------------------------------------------------------------
def _inplace(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class _Inplace(Module):
    """A parameterless activation with only PyTorch's ``inplace`` flag."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return _inplace(self.inplace)


class ReLU(_Inplace):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.relu(input)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                          else "")


class Sigmoid(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.sigmoid(input)


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.tanh(input)


class GELU(Module):
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Inplace):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.silu(input)


class Mish(_Inplace):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return mish(input)


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return A.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Hardtanh(Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: float | None = None, max_value: float | None = None) -> None:
        super().__init__()
        if min_value is not None:
            warnings.warn("keyword argument `min_value` is deprecated and renamed to `min_val`",
                          FutureWarning, stacklevel=2)
            min_val = min_value
        if max_value is not None:
            warnings.warn("keyword argument `max_value` is deprecated and renamed to `max_val`",
                          FutureWarning, stacklevel=2)
            max_val = max_value
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace
        if self.max_val <= self.min_val:
            raise ValueError(
                f"Hardtanh: max_val ({self.max_val}) must be greater than min_val ({self.min_val})")

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else "")


class _SoftmaxFamily(Module):
    _fn = staticmethod(A.softmax)

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if self.dim is None:
            warnings.warn(f"Implicit dimension choice for {type(self).__name__.lower()} has been "
                          "deprecated. Change the call to include dim=X as an argument.",
                          stacklevel=2)
        return type(self)._fn(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxFamily):
    _fn = staticmethod(A.softmax)


class LogSoftmax(_SoftmaxFamily):
    _fn = staticmethod(A.log_softmax)


class Softmin(_SoftmaxFamily):
    _fn = staticmethod(softmin)


__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Mish", "Softplus", "ELU",
           "Hardtanh", "Softmax", "LogSoftmax", "Softmin"]
