"""Dropout layers (``torch.nn.Dropout`` / ``Dropout1d`` / ``Dropout2d`` / ``Dropout3d``):
active in training mode, the identity in eval mode. Masks come from kiln's Philox
convention, so ``kiln.manual_seed`` makes them reproducible at any thread count.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> drop = nn.Dropout(p=0.25)
    >>> drop
    Dropout(p=0.25, inplace=False)
    >>> x = kiln.ones(4)
    >>> drop.eval()(x) is x
    True
"""

from __future__ import annotations

from kiln.nn.module import Module
from kiln.ops import dropout as D
from kiln.tensor import Tensor


class _DropoutNd(Module):
    _fn = staticmethod(D.dropout)

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return self._fn(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability p in training; scale the rest by 1 / (1 - p)."""


class Dropout1d(_DropoutNd):
    """Zero whole channels of (N, C, L) or (C, L) input with probability p."""

    _fn = staticmethod(D.dropout1d)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) or (C, H, W) input with probability p."""

    _fn = staticmethod(D.dropout2d)


class Dropout3d(_DropoutNd):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability p."""

    _fn = staticmethod(D.dropout3d)
