"""Linear and Bilinear layers, with PyTorch's parameters, initialisation and repr.

Linear:   y = x W^T + b,  W (out, in);  W ~ kaiming_uniform(a=sqrt(5)), i.e.
          U(-1/sqrt(in), 1/sqrt(in)), and b ~ U(-1/sqrt(in), 1/sqrt(in)).
Bilinear: y = x1^T W[o] x2 + b[o],  W (out, in1, in2);  W, b ~ U(-1/sqrt(in1), 1/sqrt(in1)).

State dict keys are ``weight`` and ``bias``, as in torch.nn, so weights move across.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> lin = nn.Linear(3, 2)
    >>> lin
    Linear(in_features=3, out_features=2, bias=True)
    >>> lin(kiln.zeros(4, 3)).shape
    kiln.Size([4, 2])
"""

from __future__ import annotations

import math

from kiln import creation
from kiln.nn import init
from kiln.nn.module import Module
from kiln.nn.parameter import Parameter
from kiln.ops.bilinear import bilinear
from kiln.ops.matmul import linear
from kiln.tensor import Tensor


def _features(n, name: str, cls: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{cls}: {name} must be a non-negative int, got {n!r}")
    return n


class Linear(Module):
    """``y = x W^T + b`` (``torch.nn.Linear``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.in_features = _features(in_features, "in_features", "Linear")
        self.out_features = _features(out_features, "out_features", "Linear")
        self.weight = Parameter(creation.empty(out_features, in_features, device=device,
                                               dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # a = sqrt(5) makes the weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as in PyTorch
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        # Straight from the table: `self.weight` misses the instance dict and costs an
        # AttributeError inside CPython before Module.__getattr__ (~0.7 us per access).
        p = self._parameters
        if "weight" in p and "bias" in p:
            return linear(input, p["weight"], p["bias"])
        return linear(input, self.weight, self.bias)  # re-registered as plain attributes

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Bilinear(Module):
    """``y = x1^T W x2 + b`` (``torch.nn.Bilinear``), weight (out, in1, in2)."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.in1_features = _features(in1_features, "in1_features", "Bilinear")
        self.in2_features = _features(in2_features, "in2_features", "Bilinear")
        self.out_features = _features(out_features, "out_features", "Bilinear")
        self.weight = Parameter(creation.empty(out_features, in1_features, in2_features,
                                               device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.in1_features <= 0:
            raise ValueError(
                f"in1_features must be > 0, but got (in1_features={self.in1_features})")
        bound = 1 / math.sqrt(self.weight.size(1))
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
