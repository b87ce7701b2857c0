"""bilinear: y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o], PyTorch's
``torch.nn.functional.bilinear`` (weight (out, in1, in2)).

A composition of kiln ops (DESIGN.md: no kernel, no backward of its own): one GEMM
u = x1 (N, I) @ W' (I, O*J) with W' = W permuted to (I, O, J), then the J-sum of
u (N, O, J) * x2 (N, 1, J). That is 2 N I O J + 2 N O J flops, the same count as
PyTorch's ``_trilinear`` path, and the gradients of x1, x2, W and b come from the
ops' own backward formulas.
"""

from __future__ import annotations

import math

from kiln.ops import elementwise as ew
from kiln.ops._util import check_float
from kiln.ops.matmul import matmul
from kiln.ops.movement import permute, reshape, unsqueeze
from kiln.ops.reduce import sum as _sum
from kiln.tensor import Tensor


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Bilinear map of two inputs: ``x1^T W[o] x2 + b[o]`` for every output feature o.

    >>> import kiln
    >>> w = kiln.ones(1, 2, 2)
    >>> bilinear(kiln.tensor([[1.0, 2.0]]), kiln.tensor([[3.0, 4.0]]), w, kiln.tensor([0.5]))
    tensor([[21.5000]])
    """
    op = "bilinear"
    for name, t in (("input1", input1), ("input2", input2), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        check_float(t, op, name)
    s1, s2, sw = tuple(input1.shape), tuple(input2.shape), tuple(weight.shape)
    if len(sw) != 3:
        raise ValueError(f"{op}: weight must be 3-D (out_features, in1_features, in2_features), "
                         f"got shape {sw}")
    if not s1 or not s2 or s1[:-1] != s2[:-1]:
        raise ValueError(f"{op}: input batch dimensions do not match: input1 {s1}, input2 {s2}")
    n_out, n1, n2 = sw
    if s1[-1] != n1:
        raise ValueError(f"{op}: input1 size does not match weight size: got {s1[-1]} but "
                         f"expected {n1} (input1 {s1}, weight {sw})")
    if s2[-1] != n2:
        raise ValueError(f"{op}: input2 size does not match weight size: got {s2[-1]} but "
                         f"expected {n2} (input2 {s2}, weight {sw})")
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"{op}: bias size does not match weight size: got bias of shape "
                         f"{tuple(bias.shape)}, expected ({n_out},)")
    if not (input1.dtype == input2.dtype == weight.dtype) or (
            bias is not None and bias.dtype != weight.dtype):
        raise TypeError(f"{op}: dtype mismatch: input1 {input1.dtype}, input2 {input2.dtype}, "
                        f"weight {weight.dtype}" + (f", bias {bias.dtype}" if bias is not None
                                                    else ""))
    batch = s1[:-1]
    n = math.prod(batch)
    x1 = reshape(input1, (n, n1))
    x2 = reshape(input2, (n, 1, n2))
    wp = reshape(permute(weight, 1, 0, 2), (n1, n_out * n2))
    u = reshape(matmul(x1, wp), (n, n_out, n2))
    y = _sum(ew.mul(u, x2), 2)
    if bias is not None:
        y = ew.add(y, unsqueeze(bias, 0))
    return reshape(y, batch + (n_out,))
