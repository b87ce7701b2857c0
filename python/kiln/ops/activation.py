"""Activations, softmax and log_softmax through the compiled kernels.

Forward and backward each call one kernel (``relu`` / ``relu_backward``...). When a
second derivative is asked for (``create_graph=True``, i.e. grad mode is on inside
backward), the backward is instead composed from kiln ops -- the same formulas the
kernels implement, and their test oracle:
  relu' = [x>0]; leaky' = [x>0] + s[x<=0]; sigmoid' = y(1-y); tanh' = 1-y^2;
  gelu' = Phi(x) + x phi(x); silu' = s(x)(1 + x(1-s(x))); softplus' = s(beta x);
  elu' = [x>0] + (y + alpha)[x<=0]; softmax: gx = y (g - sum(g y));
  log_softmax: gx = g - exp(y) sum(g).
"""

from __future__ import annotations

import math

import numpy as np

from kiln.autograd import Function, is_grad_enabled
from kiln.ops import elementwise as ew
from kiln.ops._util import check_float, contig, kernels, wrap
from kiln.ops.reduce import sum as _sum
from kiln.tensor import Tensor, _norm_dim


class _Act(Function):
    """Pointwise activation: ``kernel(x, out, *params)`` and ``kernel_backward(g, s, gi, *params)``
    where s is x, or the output y for ops with ``uses_output``."""

    kernel = ""
    uses_output = False
    saves_output = True

    @classmethod
    def forward(cls, ctx, x, *params):
        x = contig(x)
        out = np.empty_like(x)
        getattr(kernels(x), cls.kernel)(x, out, *params)
        ctx.x = x
        ctx.y = out
        return out

    @classmethod
    def backward(cls, ctx, g):
        params = ctx.inputs[1:]
        if is_grad_enabled():  # create_graph: differentiable composite
            return (cls.composite_grad(g, ctx.inputs[0], *params),) + (None,) * len(params)
        gd = contig(g.data)
        gi = np.empty_like(gd)
        saved = ctx.y if cls.uses_output else ctx.x
        getattr(kernels(gd), cls.kernel + "_backward")(gd, saved, gi, *params)
        return (gi,) + (None,) * len(params)  # the engine wraps arrays only when needed


def _make(name, kernel, composite, uses_output=False):
    return type(name, (_Act,), {"kernel": kernel, "uses_output": uses_output,
                                "composite_grad": staticmethod(composite)})


def _mask(cond: np.ndarray, like: Tensor) -> Tensor:
    return wrap(cond.astype(like.data.dtype))


Relu = _make("Relu", "relu", lambda g, x: ew.mul(g, _mask(x.data > 0, x)))
LeakyRelu = _make("LeakyRelu", "leaky_relu", lambda g, x, s: ew.mul(
    g, _mask(x.data > 0, x) + _mask(x.data <= 0, x) * s))
Sigmoid = _make("Sigmoid", "sigmoid", lambda g, x: ew.mul(
    g, ew.mul(sigmoid(x), ew.sub(1.0, sigmoid(x)))), uses_output=True)
Tanh = _make("Tanh", "tanh", lambda g, x: ew.mul(
    g, ew.sub(1.0, ew.mul(tanh(x), tanh(x)))), uses_output=True)
Silu = _make("Silu", "silu", lambda g, x: ew.mul(
    g, ew.mul(sigmoid(x), ew.add(1.0, ew.mul(x, ew.sub(1.0, sigmoid(x)))))))
Softplus = _make("Softplus", "softplus", lambda g, x, beta, threshold: ew.mul(
    g, ew.where(wrap(x.data * beta > threshold), wrap(np.ones((), x.data.dtype)),
                sigmoid(ew.mul(x, beta)))))
Elu = _make("Elu", "elu", lambda g, x, alpha: ew.mul(
    g, ew.where(wrap(x.data > 0), wrap(np.ones((), x.data.dtype)), ew.mul(ew.exp(x), alpha))))


def _gelu_grad(g, x, approximate):
    if approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        inner = ew.mul(ew.add(x, ew.mul(ew.mul(ew.mul(x, x), x), 0.044715)), k)
        t = tanh(inner)
        dinner = ew.mul(ew.add(1.0, ew.mul(ew.mul(x, x), 3 * 0.044715)), k)
        d = ew.add(ew.mul(ew.add(1.0, t), 0.5),
                   ew.mul(ew.mul(ew.mul(x, 0.5), ew.sub(1.0, ew.mul(t, t))), dinner))
        return ew.mul(g, d)
    cdf = ew.mul(ew.add(1.0, _erf(ew.mul(x, 1 / math.sqrt(2.0)))), 0.5)
    pdf = ew.mul(ew.exp(ew.mul(ew.mul(x, x), -0.5)), 1 / math.sqrt(2 * math.pi))
    return ew.mul(g, ew.add(cdf, ew.mul(x, pdf)))


class Erf(Function):
    @staticmethod
    def forward(ctx, x):
        from math import erf

        return np.vectorize(erf, otypes=[x.dtype])(x) if x.size else x.copy()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return ew.mul(g, ew.mul(ew.exp(ew.neg(ew.mul(x, x))), 2 / math.sqrt(math.pi)))


def _erf(x):
    return Erf.apply(x)


Gelu = _make("Gelu", "gelu", _gelu_grad)


def _act(cls, x, op, *params):
    if type(x) is not Tensor:
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if x.data.dtype.kind != "f":
        check_float(x, op)
    return cls.apply(x, *params)


def relu(x):
    return _act(Relu, x, "relu")


def leaky_relu(x, negative_slope=0.01):
    return _act(LeakyRelu, x, "leaky_relu", float(negative_slope))


def sigmoid(x):
    return _act(Sigmoid, x, "sigmoid")


def tanh(x):
    return _act(Tanh, x, "tanh")


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _act(Gelu, x, "gelu", approximate)


def silu(x):
    return _act(Silu, x, "silu")


def softplus(x, beta=1.0, threshold=20.0):
    return _act(Softplus, x, "softplus", float(beta), float(threshold))


def elu(x, alpha=1.0):
    return _act(Elu, x, "elu", float(alpha))


class _SoftmaxBase(Function):
    kernel = ""
    saves_output = True

    @classmethod
    def forward(cls, ctx, x, dim):
        x = contig(x)
        out = np.empty_like(x)
        if x.size:
            getattr(kernels(x), cls.kernel)(x, out, dim)
        ctx.y = out
        return out

    @classmethod
    def backward(cls, ctx, g):
        dim = ctx.inputs[1]
        if is_grad_enabled():
            return cls.composite_grad(g, ctx.inputs[0], dim), None
        gd = contig(g.data)
        gi = np.empty_like(gd)
        if gd.size:
            getattr(kernels(gd), cls.kernel + "_backward")(gd, ctx.y, gi, dim)
        return gi, None


def _softmax_grad(g, x, dim):
    y = softmax(x, dim)
    return ew.mul(y, ew.sub(g, _sum(ew.mul(g, y), dim, keepdim=True)))


def _log_softmax_grad(g, x, dim):
    return ew.sub(g, ew.mul(softmax(x, dim), _sum(g, dim, keepdim=True)))


Softmax = type("Softmax", (_SoftmaxBase,), {"kernel": "softmax",
                                             "composite_grad": staticmethod(_softmax_grad)})
LogSoftmax = type("LogSoftmax", (_SoftmaxBase,), {
    "kernel": "log_softmax", "composite_grad": staticmethod(_log_softmax_grad)})


def _softmax_dim(x, dim, op):
    if dim is None:
        dim = 0 if x.data.ndim in (0, 1, 3) else 1  # PyTorch's legacy implicit choice
    return _norm_dim(dim, x.data.ndim, op) if x.data.ndim else 0


def softmax(x, dim=None, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, stable for large logits.

    >>> import kiln
    >>> softmax(kiln.tensor([0.0, 1e4]), 0)
    tensor([0., 1.])
    """
    if dtype is not None:
        x = x.to(dtype)
    check_float(x, "softmax")
    if x.data.ndim == 0:
        return ew.add(ew.mul(x, 0.0), 1.0)
    return Softmax.apply(x, _softmax_dim(x, dim, "softmax"))


def log_softmax(x, dim=None, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    check_float(x, "log_softmax")
    if x.data.ndim == 0:
        return ew.mul(x, 0.0)
    return LogSoftmax.apply(x, _softmax_dim(x, dim, "log_softmax"))
