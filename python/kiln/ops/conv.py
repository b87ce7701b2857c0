"""Convolutions: conv1d, conv2d, conv_transpose1d, conv_transpose2d (PyTorch semantics).

Everything runs on the three 2-D kernels (NCHW; a 1-D signal is a 2-D one of height 1):
  conv2d        out = conv(x, W) + b
  conv2d_dgrad  dL/dx = conv^T(g, W)     (the adjoint in x: also conv_transpose's forward)
  conv2d_wgrad  dL/dW, dL/db = sum of g over (N, H, W)
so conv2d's backward is (dgrad, wgrad), and conv_transpose2d's forward is dgrad, its
input gradient is conv2d(g, W) and its weight gradient is wgrad with the roles of
input and gradient swapped (<conv^T(x, W), g> = <x, conv(g, W)>).

Padding: an int, a pair, 'valid' (0) or 'same' (stride 1 only; an odd total puts the
extra row / column at the bottom / right, as PyTorch does). The kernels take the
top / left padding and read the bottom / right one from the output size.
Double backward is not implemented (``once_differentiable``).
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function
from kiln.ops._util import contig, kernels
from kiln.tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


def _pair(v, n: int, op: str, name: str) -> tuple:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v),) * n
    if isinstance(v, (tuple, list)) and len(v) == n and all(
            isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v):
        return tuple(int(e) for e in v)
    raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")


def _shape(t) -> tuple:
    return tuple(t.data.shape)


def _check_tensors(op, x, weight, bias, sp):
    """Types, dtypes, ranks. sp = number of spatial dims (1 or 2)."""
    for name, t in (("input", x), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"{op}: bias must be a Tensor or None, got {type(bias).__name__}")
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: input must be float32 or float64, got {x.dtype} of shape "
                        f"{_shape(x)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.data.dtype != x.data.dtype:
            raise TypeError(f"{op}: dtype mismatch: input is {x.dtype} but {name} is {t.dtype} "
                            f"(shapes {_shape(x)} and {_shape(t)})")
    if x.data.ndim not in (sp + 1, sp + 2):
        raise ValueError(f"{op}: expected a {sp + 1}-D (unbatched) or {sp + 2}-D (batched) "
                         f"input, got input of shape {_shape(x)}")
    if weight.data.ndim != sp + 2:
        raise ValueError(f"{op}: expected a {sp + 2}-D weight, got weight of shape "
                         f"{_shape(weight)}")


def _padding(op, padding, k, dil, stride, in_hw, shapes):
    """((top, bottom), (left, right)) per spatial dim."""
    sp = len(k)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * sp
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride {stride}); {shapes}")
            out = []
            for kk, d in zip(k, dil):
                total = d * (kk - 1)
                out.append((total // 2, total - total // 2))
            return out
        raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a tuple, "
                         f"got {padding!r}")
    p = _pair(padding, sp, op, "padding")
    if any(v < 0 for v in p):
        raise ValueError(f"{op}: padding must be >= 0, got {p}; {shapes}")
    return [(v, v) for v in p]


class _Conv(Function):
    """conv2d on 4-D arrays; ``shapes`` = (x shape, weight shape) of the caller's tensors
    (3-D / unbatched / 1-D forms), restored on the gradients."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w, b, cfg, out_hw, shapes):
        x4 = contig(x.reshape(cfg.x4))
        w4 = contig(w.reshape(cfg.w4))
        out = np.empty((cfg.x4[0], cfg.w4[0]) + out_hw, dtype=x.dtype)
        kernels(x4).conv2d(x4, w4, None if b is None else contig(b), out, *cfg.args)
        ctx.x4, ctx.w4 = x4, w4
        return out.reshape(cfg.out_shape(out.shape))

    @staticmethod
    def backward(ctx, g):
        x, w, b, cfg, _, shapes = ctx.inputs
        g4 = contig(g.data).reshape((cfg.x4[0], cfg.w4[0]) + cfg.out_hw)
        k = kernels(g4)
        gx = gw = gb = None
        if x.requires_grad:
            gx = np.empty(cfg.x4, dtype=g4.dtype)
            k.conv2d_dgrad(g4, ctx.w4, gx, *cfg.args)
            gx = gx.reshape(shapes[0])
        if w.requires_grad or (b is not None and b.requires_grad):
            gw = np.empty(cfg.w4, dtype=g4.dtype)
            gb = np.empty((cfg.w4[0],), dtype=g4.dtype) if b is not None else None
            k.conv2d_wgrad(g4, ctx.x4, gw, gb, *cfg.args)
            gw = gw.reshape(shapes[1])
        return gx, gw, gb, None, None, None


class _ConvT(Function):
    """conv_transpose2d on 4-D arrays: forward = conv2d_dgrad (+ bias)."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w, b, cfg, out_hw, shapes):
        # cfg describes the *conv* whose input is our output: x4 = (N, C_out, Ho, Wo),
        # w4 = (C_in, C_out / groups, kh, kw), its output = our input (N, C_in, H, W).
        xin = contig(x.reshape((cfg.x4[0], cfg.w4[0]) + tuple(cfg.out_hw)))
        w4 = contig(w.reshape(cfg.w4))
        out = np.empty(cfg.x4, dtype=x.dtype)
        kernels(xin).conv2d_dgrad(xin, w4, out, *cfg.args)
        if b is not None:
            out += b.reshape(1, -1, 1, 1)
        ctx.xin, ctx.w4 = xin, w4
        return out.reshape(cfg.out_shape(out.shape))

    @staticmethod
    def backward(ctx, g):
        x, w, b, cfg, _, shapes = ctx.inputs
        g4 = contig(g.data).reshape(cfg.x4)
        k = kernels(g4)
        gx = gw = gb = None
        if x.requires_grad:
            gx = np.empty(ctx.xin.shape, dtype=g4.dtype)
            k.conv2d(g4, ctx.w4, None, gx, *cfg.args)
            gx = gx.reshape(shapes[0])
        if w.requires_grad:
            gw = np.empty(cfg.w4, dtype=g4.dtype)
            k.conv2d_wgrad(ctx.xin, g4, gw, None, *cfg.args)
            gw = gw.reshape(shapes[1])
        if b is not None and b.requires_grad:
            gb = g4.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None


class _Cfg:
    """The 4-D view of one call: x4 / w4 shapes (of the conv2d whose input is x4), the
    kernel arguments, the output size and how to reshape the result back."""

    __slots__ = ("x4", "w4", "args", "out_hw", "unbatched", "one_d")

    def __init__(self, x4, w4, args, out_hw, unbatched, one_d):
        self.x4, self.w4, self.args, self.out_hw = x4, w4, args, out_hw
        self.unbatched, self.one_d = unbatched, one_d

    def out_shape(self, shape4):
        s = tuple(shape4)
        if self.one_d:
            s = s[:2] + s[3:]
        return s[1:] if self.unbatched else s


def _spatial(x, weight, sp):
    """(4-D input shape, 4-D weight shape, unbatched?) for a 1-D or 2-D conv."""
    xs, ws = _shape(x), _shape(weight)
    unbatched = len(xs) == sp + 1
    if unbatched:
        xs = (1,) + xs
    if sp == 1:
        xs = xs[:2] + (1,) + xs[2:]
        ws = ws[:2] + (1,) + ws[2:]
    return xs, ws, unbatched


def _conv(op, sp, input, weight, bias, stride, padding, dilation, groups):  # noqa: A002
    _check_tensors(op, input, weight, bias, sp)
    x4, w4, unbatched = _spatial(input, weight, sp)
    shapes = f"input of shape {_shape(input)}, weight of shape {_shape(weight)}"
    stride = _pair(stride, sp, op, "stride")
    dilation = _pair(dilation, sp, op, "dilation")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation):
        raise ValueError(f"{op}: stride {stride} and dilation {dilation} must be >= 1; {shapes}")
    N, C, H, W = x4
    Co, Cg, kh, kw = w4
    if C % groups or Co % groups:
        raise ValueError(f"{op}: in_channels ({C}) and out_channels ({Co}) must be divisible by "
                         f"groups ({groups}); {shapes}")
    if Cg * groups != C:
        raise ValueError(f"{op}: expected weight of shape ({Co}, {C // groups}, ...) for input "
                         f"with {C} channels and groups={groups}; got {shapes}")
    if bias is not None and _shape(bias) != (Co,):
        raise ValueError(f"{op}: bias must have shape ({Co},), got {_shape(bias)}; {shapes}")
    k = (kh, kw) if sp == 2 else (kw,)
    pads = _padding(op, padding, k, dilation, stride, None, shapes)
    if sp == 1:
        stride, dilation, pads = (1,) + stride, (1,) + dilation, [(0, 0)] + pads
    out_hw = []
    for n_in, kk, s, d, (lo, hi) in zip((H, W), (kh, kw), stride, dilation, pads):
        span = n_in + lo + hi - d * (kk - 1) - 1
        if span < 0:
            raise ValueError(
                f"{op}: kernel size (dilated) {d * (kk - 1) + 1} is larger than the padded input "
                f"size {n_in + lo + hi}; {shapes}, stride {stride}, padding {padding}, "
                f"dilation {dilation}")
        out_hw.append(span // s + 1)
    args = (stride[0], stride[1], pads[0][0], pads[1][0], dilation[0], dilation[1], int(groups))
    cfg = _Cfg(x4, w4, args, tuple(out_hw), unbatched, sp == 1)
    return _Conv.apply(input, weight, bias, cfg, tuple(out_hw),
                       (_shape(input), _shape(weight)))


def _conv_t(op, sp, input, weight, bias, stride, padding, output_padding, groups,  # noqa: A002
            dilation):
    _check_tensors(op, input, weight, bias, sp)
    x4, w4, unbatched = _spatial(input, weight, sp)
    shapes = f"input of shape {_shape(input)}, weight of shape {_shape(weight)}"
    stride = _pair(stride, sp, op, "stride")
    dilation = _pair(dilation, sp, op, "dilation")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple, got {padding!r}")
    padding = _pair(padding, sp, op, "padding")
    output_padding = _pair(output_padding, sp, op, "output_padding")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation) or any(p < 0 for p in padding):
        raise ValueError(f"{op}: stride {stride} and dilation {dilation} must be >= 1 and "
                         f"padding {padding} >= 0; {shapes}")
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ < 0 or (op_ >= s and op_ >= d):
            raise ValueError(f"{op}: output_padding {output_padding} must be >= 0 and smaller "
                             f"than either stride {stride} or dilation {dilation}")
    N, Cin, H, W = x4
    wc_in, Cog, kh, kw = w4
    if wc_in != Cin:
        raise ValueError(f"{op}: expected weight of shape ({Cin}, out_channels / groups, ...) for "
                         f"input with {Cin} channels; got {shapes}")
    if Cin % groups:
        raise ValueError(f"{op}: in_channels ({Cin}) must be divisible by groups ({groups}); "
                         f"{shapes}")
    Cout = Cog * groups
    if bias is not None and _shape(bias) != (Cout,):
        raise ValueError(f"{op}: bias must have shape ({Cout},), got {_shape(bias)}; {shapes}")
    if sp == 1:
        stride, dilation = (1,) + stride, (1,) + dilation
        padding, output_padding = (0,) + padding, (0,) + output_padding
    out_hw = []
    for n_in, kk, s, d, p, o in zip((H, W), (kh, kw), stride, dilation, padding, output_padding):
        size = (n_in - 1) * s - 2 * p + d * (kk - 1) + o + 1
        if size < 1:
            raise ValueError(f"{op}: output size {size} is too small; {shapes}, stride {stride}, "
                             f"padding {padding}, dilation {dilation}")
        out_hw.append(size)
    args = (stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], int(groups))
    # the conv whose input is our output: x4 = (N, Cout, Ho, Wo), its output = our input
    cfg = _Cfg((N, Cout) + tuple(out_hw), w4, args, (H, W), unbatched, sp == 1)
    return _ConvT.apply(input, weight, bias, cfg, tuple(out_hw),
                        (_shape(input), _shape(weight)))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D convolution over (N, C, H, W) or unbatched (C, H, W) input
    (``torch.nn.functional.conv2d``).

    >>> import kiln
    >>> x = kiln.ones(1, 1, 3, 3)
    >>> conv2d(x, kiln.ones(1, 1, 2, 2)).tolist()
    [[[[4.0, 4.0], [4.0, 4.0]]]]
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """1-D convolution over (N, C, L) or unbatched (C, L) input (``torch.nn.functional.conv1d``).

    >>> import kiln
    >>> conv1d(kiln.ones(1, 1, 4), kiln.ones(1, 1, 3), padding=1).tolist()
    [[[2.0, 3.0, 3.0, 2.0]]]
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,  # noqa: A002
                     groups=1, dilation=1):
    """Transposed 2-D convolution; weight (C_in, C_out / groups, kH, kW)
    (``torch.nn.functional.conv_transpose2d``).

    >>> import kiln
    >>> conv_transpose2d(kiln.ones(1, 1, 2, 2), kiln.ones(1, 1, 2, 2)).tolist()
    [[[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]]]
    """
    return _conv_t("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding,
                   groups, dilation)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,  # noqa: A002
                     groups=1, dilation=1):
    """Transposed 1-D convolution; weight (C_in, C_out / groups, kW)
    (``torch.nn.functional.conv_transpose1d``).

    >>> import kiln
    >>> conv_transpose1d(kiln.ones(1, 1, 2), kiln.ones(1, 1, 2), stride=2).tolist()
    [[[1.0, 1.0, 1.0, 1.0]]]
    """
    return _conv_t("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding,
                   groups, dilation)
