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
from kiln.ops import elementwise as ew
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
        out = ew.mul(input, 0.0)  # empty: an empty result that still joins the graph
        return out
    return LayerNorm.apply(input, weight, bias, rows, float(eps))


class BatchNorm(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w, b, rm, rv, training, momentum, eps):
        x = contig(x)
        out = np.empty_like(x)
        c = x.shape[1]
        ctx.mean = np.empty((c,), x.dtype)
        ctx.invstd = np.empty((c,), x.dtype)
        kernels(x).batch_norm(x, w, b, rm, rv, out, ctx.mean, ctx.invstd, training, momentum, eps)
        ctx.x = x
        return out

    @staticmethod
    def backward(ctx, g):
        xt, w, b = ctx.inputs[:3]
        training = ctx.inputs[5]
        gd = contig(g.data)
        gx = np.empty_like(gd) if _needs(xt) else None
        gw = np.empty_like(w.data) if _needs(w) else None
        gb = np.empty_like(b.data) if _needs(b) else None
        kernels(gd).batch_norm_backward(gd, ctx.x, None if w is None else w.data, ctx.mean,
                                        ctx.invstd, gx, gw, gb, training)
        return gx, gw, gb, None, None, None, None, None


def _stat_arg(t, c, x, name, op):
    """A running statistic must be a contiguous (C,) tensor of x's dtype: it is updated in place."""
    _check_affine(t, (c,), name, x, op)
    if t is not None and not t.data.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be contiguous (it is updated in place)")


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel of (N, C, *) input by batch statistics (``training``) or by
    the running ones; in training the running statistics are updated in place.

    >>> import kiln
    >>> x = kiln.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> rm, rv = kiln.zeros(2), kiln.ones(2)
    >>> batch_norm(x, rm, rv, training=True)
    tensor([[-1.0000, -1.0000],
            [ 1.0000,  1.0000]])
    >>> rm, rv
    (tensor([0.2000, 2.0000]), tensor([ 1.1000, 20.9000]))
    """
    op = "batch_norm"
    if type(input) is not Tensor:
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    check_float(input, op)
    shape = tuple(input.data.shape)
    if len(shape) < 2:
        raise ValueError(f"{op}: expected input of shape (N, C) or (N, C, *), got {shape}")
    c = shape[1]
    _check_affine(weight, (c,), "weight", input, op)
    _check_affine(bias, (c,), "bias", input, op)
    _stat_arg(running_mean, c, input, "running_mean", op)
    _stat_arg(running_var, c, input, "running_var", op)
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must be given when training=False")
    if training and math.prod(shape) // max(c, 1) <= 1:
        raise ValueError(
            f"{op}: expected more than 1 value per channel when training, got input of size "
            f"{list(shape)}"
        )
    if 0 in shape:
        return ew.mul(input, 0.0)
    rm = None if running_mean is None else running_mean.data
    rv = None if running_var is None else running_var.data
    out = BatchNorm.apply(input, weight, bias, rm, rv, bool(training), float(momentum),
                          float(eps))
    if training:  # the kernel updated the statistics in place
        for t in (running_mean, running_var):
            if t is not None:
                t._version += 1
    return out


class GroupNorm(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w, b, groups, eps):
        x = contig(x)
        out = np.empty_like(x)
        ctx.mean = np.empty((x.shape[0], groups), x.dtype)
        ctx.rstd = np.empty((x.shape[0], groups), x.dtype)
        kernels(x).group_norm(x, w, b, out, ctx.mean, ctx.rstd, groups, eps)
        ctx.x = x
        return out

    @staticmethod
    def backward(ctx, g):
        xt, w, b, groups = ctx.inputs[:4]
        gd = contig(g.data)
        gx = np.empty_like(gd) if _needs(xt) else None
        gw = np.empty_like(w.data) if _needs(w) else None
        gb = np.empty_like(b.data) if _needs(b) else None
        kernels(gd).group_norm_backward(gd, ctx.x, ctx.mean, ctx.rstd,
                                        None if w is None else w.data, gx, gw, gb, groups)
        return gx, gw, gb, None, None


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize (N, C, *) input over groups of ``C // num_groups`` channels per sample.

    >>> import kiln
    >>> x = kiln.tensor([[[1.0], [3.0], [5.0], [5.0]]])
    >>> group_norm(x, 2).reshape(4)
    tensor([-1.0000,  1.0000,  0.0000,  0.0000])
    """
    op = "group_norm"
    if type(input) is not Tensor:
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    check_float(input, op)
    shape = tuple(input.data.shape)
    if len(shape) < 2:
        raise ValueError(f"{op}: expected input of shape (N, C, *), got {shape}")
    c = shape[1]
    if int(num_groups) < 1 or c % int(num_groups):
        raise ValueError(
            f"{op}: expected the number of channels {c} of input of shape {shape} to be "
            f"divisible by num_groups={num_groups}"
        )
    _check_affine(weight, (c,), "weight", input, op)
    _check_affine(bias, (c,), "bias", input, op)
    if shape[0] * (c // int(num_groups)) * math.prod(shape[2:]) == 1:  # PyTorch refuses too
        raise ValueError(
            f"{op}: expected more than 1 value per group, got input of size {list(shape)} "
            f"with num_groups={num_groups}"
        )
    if 0 in shape:
        return ew.mul(input, 0.0)
    return GroupNorm.apply(input, weight, bias, int(num_groups), float(eps))
