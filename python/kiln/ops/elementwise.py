"""Elementwise arithmetic with broadcasting (NumPy on the CPU), comparisons and
pointwise math, with gradients written in kiln ops so they work on every device
and are themselves differentiable (create_graph).

d(a+b) = g, g;  d(a*b) = g*b, g*a;  d(a/b) = g/b, -g*a/b^2;  d(a^p) = p a^(p-1) g,
d(p^a) = p^a ln p g;  d(exp a) = g exp a;  d(log a) = g/a;  d(sqrt a) = g/(2 sqrt a).
Gradients of broadcast inputs are summed back to the input's shape (sum_to).
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function
from kiln.ops._util import fix_float, raw, shape_of, sum_to, sum_to_array, wrap
from kiln.tensor import Tensor


def _data(x):
    return x.data if type(x) is Tensor else x


def _check_binary(a, b, op):
    if type(a) is np.ndarray and type(b) is np.ndarray and a.shape != b.shape:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together"
            ) from None


def _binary(ufunc, a, b, op):
    try:
        return fix_float(ufunc(a, b), a, b)
    except ValueError:
        _check_binary(a, b, op)
        raise
    except TypeError as e:
        raise TypeError(f"{op}: unsupported operand types: {e}") from None


class Add(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        return _binary(np.add, a, b, "add")

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return sum_to(g, sa), sum_to(g, sb)


class Sub(Function):
    needs_inputs = False

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        return _binary(np.subtract, a, b, "sub")

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        if sb is None:
            return sum_to(g, sa), None
        return sum_to(g, sa), sum_to(wrap(-g.data) if raw() else neg(g), sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        return _binary(np.multiply, a, b, "mul")

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        sa, sb = ctx.shapes
        if raw():
            gd = g.data
            ga = sum_to_array(gd * _data(b), sa) if sa is not None and a.requires_grad else None
            gb = sum_to_array(gd * _data(a), sb) if sb is not None and b.requires_grad else None
            return ga, gb
        ga = sum_to(mul(g, b), sa) if sa is not None and a.requires_grad else None
        gb = sum_to(mul(g, a), sb) if sb is not None and b.requires_grad else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.true_divide(a, b)
        return fix_float(out, a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        sa, sb = ctx.shapes
        ga = sum_to(div(g, b), sa) if sa is not None and a.requires_grad else None
        gb = None
        if sb is not None and b.requires_grad:
            gb = sum_to(neg(div(mul(g, a), mul(b, b))), sb)
        return ga, gb


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        with np.errstate(divide="ignore", invalid="ignore"):
            return _binary(np.power, a, b, "pow")

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        sa, sb = ctx.shapes
        ga = gb = None
        if sa is not None and a.requires_grad:
            if type(b) is Tensor:
                ga = mul(mul(g, b), pow(a, sub(b, 1)))
            elif b == 0:
                ga = mul(g, 0.0)
            else:
                ga = mul(mul(g, b), pow(a, b - 1))
            ga = sum_to(ga, sa)
        if sb is not None and b.requires_grad:
            out = pow(a, b)
            la = log(a) if type(a) is Tensor else float(np.log(a))
            gb = sum_to(mul(mul(g, out), la), sb)
        return ga, gb


def _unary(name, fn, grad):
    """Make a pointwise op class: ``fn`` on arrays, ``grad(g, x, y)`` in kiln ops."""

    def forward(ctx, x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fix_float(fn(x), x, None) if x.dtype.kind != "f" else fn(x)

    def backward(ctx, g):
        (x,) = ctx.inputs
        return grad(g, x)

    return type(name, (Function,), {"forward": staticmethod(forward),
                                    "backward": staticmethod(backward)})


Neg = _unary("Neg", np.negative, lambda g, x: neg(g))
Exp = _unary("Exp", np.exp, lambda g, x: mul(g, exp(x)))
Log = _unary("Log", np.log, lambda g, x: div(g, x))
Log1p = _unary("Log1p", np.log1p, lambda g, x: div(g, add(x, 1.0)))
Expm1 = _unary("Expm1", np.expm1, lambda g, x: mul(g, exp(x)))
Sqrt = _unary("Sqrt", np.sqrt, lambda g, x: div(g, mul(sqrt(x), 2.0)))
Rsqrt = _unary("Rsqrt", lambda x: 1.0 / np.sqrt(x), lambda g, x: mul(g, mul(pow(x, -1.5), -0.5)))
Abs = _unary("Abs", np.abs, lambda g, x: mul(g, sign(x)))
Sin = _unary("Sin", np.sin, lambda g, x: mul(g, cos(x)))
Cos = _unary("Cos", np.cos, lambda g, x: neg(mul(g, sin(x))))
Reciprocal = _unary("Reciprocal", np.reciprocal, lambda g, x: neg(div(g, mul(x, x))))


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        lo = _data(lo)
        hi = _data(hi)
        if lo is None and hi is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        x, lo, hi = ctx.inputs
        keep = np.ones(x.data.shape, dtype=bool)
        if lo is not None:
            keep &= x.data >= _data(lo)
        if hi is not None:
            keep &= x.data <= _data(hi)
        return mul(g, wrap(keep.astype(x.data.dtype))), None, None


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        if cond.dtype != np.bool_:
            raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
        ctx.shapes = (shape_of(a), shape_of(b))
        return fix_float(np.where(cond, a, b), a, b)

    @staticmethod
    def backward(ctx, g):
        cond, a, b = ctx.inputs
        sa, sb = ctx.shapes
        zero = wrap(np.zeros((), dtype=g.data.dtype))
        ga = sum_to(where(cond, g, zero), sa) if sa is not None else None
        gb = sum_to(where(cond, zero, g), sb) if sb is not None else None
        return None, ga, gb


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        # ties split the gradient evenly, as PyTorch does
        w = (a.data > b.data) + 0.5 * (a.data == b.data)
        w = wrap(w.astype(g.data.dtype))
        return sum_to(mul(g, w), ctx.shapes[0]), sum_to(mul(g, sub(1.0, w)), ctx.shapes[1])


class Minimum(Maximum):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        w = (a.data < b.data) + 0.5 * (a.data == b.data)
        w = wrap(w.astype(g.data.dtype))
        return sum_to(mul(g, w), ctx.shapes[0]), sum_to(mul(g, sub(1.0, w)), ctx.shapes[1])


# ---- functions ----------------------------------------------------------------
def add(a, b, alpha=1):
    if alpha != 1:
        b = mul(b, alpha)
    return Add.apply(a, b) if type(a) is Tensor else Add.apply(b, a)


def sub(a, b, alpha=1):
    if alpha != 1:
        b = mul(b, alpha)
    if type(a) is not Tensor:
        return Add.apply(neg(b), a)
    return Sub.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b) if type(a) is Tensor else Mul.apply(b, a)


def div(a, b):
    if type(a) is not Tensor:
        return mul(reciprocal(b), a)
    return Div.apply(a, b)


def pow(a, b):  # noqa: A001 - torch.pow
    return Pow.apply(a, b)


def neg(x):
    return Neg.apply(x)


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def log1p(x):
    return Log1p.apply(x)


def expm1(x):
    return Expm1.apply(x)


def sqrt(x):
    return Sqrt.apply(x)


def rsqrt(x):
    return Rsqrt.apply(x)


def abs(x):  # noqa: A001
    return Abs.apply(x)


def sin(x):
    return Sin.apply(x)


def cos(x):
    return Cos.apply(x)


def reciprocal(x):
    return Reciprocal.apply(x)


def square(x):
    return mul(x, x)


def clamp(x, min=None, max=None):  # noqa: A002
    return Clamp.apply(x, min, max)


clip = clamp


def where(condition, input, other):  # noqa: A002
    if type(condition) is not Tensor:
        condition = wrap(np.asarray(condition, dtype=bool))
    return Where.apply(condition, input, other)


def maximum(a, b):
    return Maximum.apply(a, b)


def minimum(a, b):
    return Minimum.apply(a, b)


def _nograd(ufunc):
    def f(a, b=None):
        if b is None:
            return wrap(ufunc(_data(a)))
        return wrap(ufunc(_data(a), _data(b)))

    f.__name__ = ufunc.__name__
    return f


def _cmp(ufunc, op):
    def f(a, b):
        a_, b_ = _data(a), _data(b)
        try:
            return wrap(np.asarray(ufunc(a_, b_)))
        except ValueError:
            _check_binary(np.asarray(a_), np.asarray(b_), op)
            raise

    f.__name__ = op
    return f


eq = _cmp(np.equal, "eq")
ne = _cmp(np.not_equal, "ne")
lt = _cmp(np.less, "lt")
le = _cmp(np.less_equal, "le")
gt = _cmp(np.greater, "gt")
ge = _cmp(np.greater_equal, "ge")
logical_and = _nograd(np.logical_and)
logical_or = _nograd(np.logical_or)
logical_not = _nograd(np.logical_not)
logical_xor = _nograd(np.logical_xor)
isnan = _nograd(np.isnan)
isinf = _nograd(np.isinf)
isfinite = _nograd(np.isfinite)
sign = _nograd(np.sign)
floor = _nograd(np.floor)
ceil = _nograd(np.ceil)
round = _nograd(np.round)  # noqa: A001
trunc = _nograd(np.trunc)


def equal(a, b) -> bool:
    return bool(_data(a).shape == _data(b).shape and np.array_equal(_data(a), _data(b)))


def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    return bool(np.allclose(_data(a), _data(b), rtol=rtol, atol=atol, equal_nan=equal_nan))
