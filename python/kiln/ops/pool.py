"""Pooling through the compiled kernels, with ``torch.nn.functional``'s signatures:
``max_pool2d`` / ``max_pool1d`` (stride, padding, dilation, ceil_mode, return_indices),
``avg_pool2d`` / ``avg_pool1d`` (ceil_mode, count_include_pad, divisor_override) and
``adaptive_avg_pool2d`` / ``adaptive_avg_pool1d``. Inputs are batched (N, C, H, W) /
(N, C, L) or unbatched (C, H, W) / (C, L), as in PyTorch; 1-d pooling is 2-d pooling of
(..., 1, L).

Output size (PyTorch's ``pooling_output_shape``): o = floor((i + 2p - d(k - 1) - 1
[+ s - 1 if ceil_mode]) / s) + 1, minus one when ceil_mode makes the last window start
past the input and its left padding. Max-pool indices are flat h * W + w per plane; its
backward scatters the gradient through them. avg_pool's backward spreads g / divisor over
each window; adaptive windows are floor(o I / O) .. ceil((o + 1) I / O).
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function, is_grad_enabled
from kiln.ops._util import check_float, contig, kernels, wrap
from kiln.ops.movement import squeeze, unsqueeze
from kiln.tensor import Tensor


def _pair(v, name, op, n=2):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v),) * n
    t = tuple(v)
    if len(t) == 1:
        t = t * n
    if len(t) != n or not all(isinstance(e, (int, np.integer)) for e in t):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return tuple(int(e) for e in t)


def _out_size(i, k, s, p, d, ceil, op, shape):
    num = i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    o = num // s + 1
    if ceil and (o - 1) * s >= i + p:
        o -= 1
    if o < 1:
        raise ValueError(
            f"{op}: given input size {tuple(shape)}, kernel {k}, stride {s}, padding {p}, "
            f"dilation {d}: calculated output size {o} is too small"
        )
    return o


def _check_input(x, op, dims):
    if type(x) is not Tensor:
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    check_float(x, op)
    shape = tuple(x.data.shape)
    if len(shape) not in (dims + 1, dims + 2) or 0 in shape[-dims - 1:]:
        names = "(C, L) or (N, C, L)" if dims == 1 else "(C, H, W) or (N, C, H, W)"
        raise ValueError(f"{op}: expected a non-empty input of shape {names}, got {shape}")


def _window(x, kernel_size, stride, padding, dilation, ceil_mode, op):
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _pair(
        stride, "stride", op)
    p = _pair(padding, "padding", op)
    d = _pair(dilation, "dilation", op)
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be >= 1 and padding >= 0, "
                         f"got kernel_size={k}, stride={s}, padding={p}, dilation={d}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: pad should be at most half of effective kernel size, but got "
                         f"padding={p} for kernel_size={k}")
    shape = x.shape[-2:]
    oh = _out_size(shape[0], k[0], s[0], p[0], d[0], ceil_mode, op, x.shape)
    ow = _out_size(shape[1], k[1], s[1], p[1], d[1], ceil_mode, op, x.shape)
    return k, s, p, d, (oh, ow)


class MaxPool2d(Function):
    once_differentiable = True
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, k, s, p, d, out_hw, holder, want_idx):
        x = contig(x)
        out = np.empty(x.shape[:-2] + out_hw, x.dtype)
        idx = np.empty(out.shape, np.int64) if want_idx else None
        kernels(x).max_pool2d(x, out, idx, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
        ctx.idx = idx
        ctx.in_shape = x.shape
        holder.append(idx)
        return out

    @staticmethod
    def backward(ctx, g):
        gd = contig(g.data)
        gi = np.empty(ctx.in_shape, gd.dtype)
        kernels(gd).max_pool2d_backward(gd, ctx.idx, gi)
        return gi, None, None, None, None, None, None, None


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,  # noqa: A002
               ceil_mode: bool = False, return_indices: bool = False):
    """2-D max pooling over (N, C, H, W) or (C, H, W) input.

    >>> import kiln
    >>> x = kiln.arange(16.0).reshape(1, 1, 4, 4)
    >>> max_pool2d(x, 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    >>> max_pool2d(x, 3, stride=2, padding=1, return_indices=True)[1]
    tensor([[[[ 5,  7],
              [13, 15]]]])
    """
    op = "max_pool2d"
    _check_input(input, op, 2)
    k, s, p, d, out_hw = _window(input.data, kernel_size, stride, padding, dilation,
                                 bool(ceil_mode), op)
    holder = []
    # indices only when asked for or needed by a backward pass
    want_idx = bool(return_indices) or (input.requires_grad and is_grad_enabled())
    out = MaxPool2d.apply(input, k, s, p, d, out_hw, holder, want_idx)
    return (out, wrap(holder[0])) if return_indices else out


def _as_2d(x: Tensor) -> Tensor:
    """(..., L) -> (..., 1, L)."""
    return unsqueeze(x, -2)


def _from_2d(y: Tensor) -> Tensor:
    return squeeze(y, -2)


def _one(v, name, op):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise TypeError(f"{op}: {name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    return int(v)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,  # noqa: A002
               ceil_mode: bool = False, return_indices: bool = False):
    """1-D max pooling over (N, C, L) or (C, L) input.

    >>> import kiln
    >>> max_pool1d(kiln.tensor([[1.0, 3.0, 2.0, 5.0, 4.0]]), 2)
    tensor([[3., 5.]])
    """
    op = "max_pool1d"
    _check_input(input, op, 1)
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else (
        1, _one(stride, "stride", op))
    res = max_pool2d(_as_2d(input), (1, _one(kernel_size, "kernel_size", op)), stride,
                     (0, _one(padding, "padding", op)), (1, _one(dilation, "dilation", op)),
                     ceil_mode, return_indices)
    if return_indices:
        return _from_2d(res[0]), wrap(res[1].data.reshape(res[1].data.shape[:-2] + (-1,)))
    return _from_2d(res)


class AvgPool2d(Function):
    once_differentiable = True
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, k, s, p, out_hw, count_include_pad, divisor):
        x = contig(x)
        out = np.empty(x.shape[:-2] + out_hw, x.dtype)
        kernels(x).avg_pool2d(x, out, k[0], k[1], s[0], s[1], p[0], p[1], count_include_pad,
                              divisor)
        ctx.in_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, g):
        _, k, s, p, _, count_include_pad, divisor = ctx.inputs
        gd = contig(g.data)
        gi = np.empty(ctx.in_shape, gd.dtype)
        kernels(gd).avg_pool2d_backward(gd, gi, k[0], k[1], s[0], s[1], p[0], p[1],
                                        count_include_pad, divisor)
        return gi, None, None, None, None, None, None


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """2-D average pooling over (N, C, H, W) or (C, H, W) input.

    >>> import kiln
    >>> x = kiln.arange(16.0).reshape(1, 4, 4)
    >>> avg_pool2d(x, 2)
    tensor([[[ 2.5000,  4.5000],
             [10.5000, 12.5000]]])
    >>> avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    tensor([[[ 2.5000,  4.0000],
             [ 8.5000, 10.0000]]])
    """
    op = "avg_pool2d"
    _check_input(input, op, 2)
    k, s, p, _, out_hw = _window(input.data, kernel_size, stride, padding, 1, bool(ceil_mode), op)
    div = 0
    if divisor_override is not None:
        div = int(divisor_override)
        if div == 0:
            raise ValueError(f"{op}: divisor must be not zero")
        if div < 0:
            raise ValueError(f"{op}: divisor_override must be positive, got {div}")
    return AvgPool2d.apply(input, k, s, p, out_hw, bool(count_include_pad), div)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """1-D average pooling over (N, C, L) or (C, L) input.

    >>> import kiln
    >>> avg_pool1d(kiln.tensor([[1.0, 3.0, 2.0, 6.0]]), 2)
    tensor([[2., 4.]])
    """
    op = "avg_pool1d"
    _check_input(input, op, 1)
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else (
        1, _one(stride, "stride", op))
    return _from_2d(avg_pool2d(_as_2d(input), (1, _one(kernel_size, "kernel_size", op)), stride,
                               (0, _one(padding, "padding", op)), ceil_mode, count_include_pad))


class AdaptiveAvgPool2d(Function):
    once_differentiable = True
    needs_inputs = False

    @staticmethod
    def forward(ctx, x, out_hw):
        x = contig(x)
        out = np.empty(x.shape[:-2] + out_hw, x.dtype)
        kernels(x).adaptive_avg_pool2d(x, out)
        ctx.in_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, g):
        gd = contig(g.data)
        gi = np.empty(ctx.in_shape, gd.dtype)
        kernels(gd).adaptive_avg_pool2d_backward(gd, gi)
        return gi, None


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:  # noqa: A002
    """Average pooling to a fixed (OH, OW) output; ``None`` keeps that input dim.

    >>> import kiln
    >>> x = kiln.arange(16.0).reshape(1, 1, 4, 4)
    >>> adaptive_avg_pool2d(x, 1)
    tensor([[[[7.5000]]]])
    >>> adaptive_avg_pool2d(x, (None, 2)).shape
    kiln.Size([1, 1, 4, 2])
    """
    op = "adaptive_avg_pool2d"
    _check_input(input, op, 2)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        sizes = (output_size, output_size)
    else:
        sizes = tuple(output_size)
        if len(sizes) != 2:
            raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    hw = input.data.shape[-2:]
    out_hw = tuple(int(hw[i]) if sizes[i] is None else int(sizes[i]) for i in range(2))
    if min(out_hw) < 0:
        raise ValueError(f"{op}: output_size must be >= 0, got {output_size!r}")
    return AdaptiveAvgPool2d.apply(input, out_hw)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:  # noqa: A002
    """Average pooling of (N, C, L) or (C, L) input to a fixed length.

    >>> import kiln
    >>> adaptive_avg_pool1d(kiln.tensor([[1.0, 3.0, 2.0, 6.0]]), 2)
    tensor([[2., 4.]])
    """
    op = "adaptive_avg_pool1d"
    _check_input(input, op, 1)
    return _from_2d(adaptive_avg_pool2d(_as_2d(input), (1, _one(output_size, "output_size", op))))
