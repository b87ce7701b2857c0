"""Normalization through the compiled kernels: ``layer_norm``, ``batch_norm`` and
``group_norm`` with ``torch.nn.functional``'s signatures, gradients for input, weight and
bias (one ``*_backward`` kernel each; ``once_differentiable``).

With xhat = (x - mean) * rstd over each normalized group of n elements:
  forward   y = xhat * w + b,  rstd = 1 / sqrt(var + eps) (biased variance)
  backward  gx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat)),  gy = g * w
            gw = sum g * xhat,  gb = sum g  (over everything but the affine's axis)
layer_norm groups = the trailing ``normalized_shape`` elements of each row; batch_norm
groups = one channel over the batch and spatial dims (training), or the running
statistics (eval: gx = g * w * rstd); group_norm groups = C / G channels of one sample.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.autograd import Function
from kiln.ops._util import check_float, contig, kernels
from kiln.tensor import Tensor


def _needs(a) -> bool:
    return type(a) is Tensor and a.requires_grad


def _flat(a):
    return None if a is None else contig(a).reshape(-1)


def _grad_of(a, flat):
    return None if flat is None else flat.reshape(a.data.shape)


def _check_affine(t, want, name, x, op):
    if t is None:
        return
    if type(t) is not Tensor:
        raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(t).__name__}")
    if tuple(t.data.shape) != tuple(want):
        raise ValueError(
            f"{op}: expected {name} of shape {tuple(want)} for input of shape "
            f"{tuple(x.data.shape)}, got {name} of shape {tuple(t.data.shape)}"
        )
    if t.data.dtype != x.data.dtype:
        raise TypeError(f"{op}: {name} dtype {t.dtype} must match the input's {x.dtype}")


class LayerNorm(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w, b, rows, eps):
        x = contig(x)
        out = np.empty_like(x)
        ctx.mean = np.empty((rows,), x.dtype)
        ctx.rstd = np.empty((rows,), x.dtype)
        kernels(x).layer_norm(x, _flat(w), _flat(b), out, ctx.mean, ctx.rstd, eps)
        ctx.x = x
        return out

    @staticmethod
    def backward(ctx, g):
        xt, w, b = ctx.inputs[:3]
        gd = contig(g.data)
        gx = np.empty_like(gd) if _needs(xt) else None
        gw = np.empty(w.data.size, gd.dtype) if _needs(w) else None
        gb = np.empty(b.data.size, gd.dtype) if _needs(b) else None
        kernels(gd).layer_norm_backward(gd, ctx.x, ctx.mean, ctx.rstd,
                                        None if w is None else _flat(w.data), gx, gw, gb)
        return gx, _grad_of(w, gw), _grad_of(b, gb), None, None


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift.

    >>> import kiln
    >>> x = kiln.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    >>> layer_norm(x, (3,))
    tensor([[-1.2247,  0.0000,  1.2247],
            [ 0.0000,  0.0000,  0.0000]])
    """
    op = "layer_norm"
    if type(input) is not Tensor:
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    check_float(input, op)
    ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(
        int(s) for s in normalized_shape)
    shape = tuple(input.data.shape)
    if not ns or len(ns) > len(shape) or shape[len(shape) - len(ns):] != ns:
        raise ValueError(
            f"{op}: given normalized_shape={list(ns)}, expected input with shape "
            f"[*, {', '.join(map(str, ns))}], but got input of size {list(shape)}"
        )
    _check_affine(weight, ns, "weight", input, op)
    _check_affine(bias, ns, "bias", input, op)
    d = math.prod(ns)
    rows = math.prod(shape[: len(shape) - len(ns)])
    if d == 0 or rows == 0:
        from kiln.ops import elementwise as ew

        out = ew.mul(input, 0.0)  # empty: an empty result that still joins the graph
        return out
    return LayerNorm.apply(input, weight, bias, rows, float(eps))
