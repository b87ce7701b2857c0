"""Tensor operators and methods, attached to ``Tensor`` as thin forwards to kiln.ops.

In-place ops (``add_``, ``x[i] = v``, ``+=``...) write into the tensor's own buffer and
bump its version counter, so a backward pass that needs the old values raises
instead of returning a wrong gradient. When the tensor takes part in a graph, the
in-place op is recorded like PyTorch does (the tensor's ``grad_fn`` becomes the op).
"""

from __future__ import annotations

import numpy as np

from kiln import _dtype
from kiln.autograd import _mode
from kiln.device import check_device
from kiln.ops import activation as act
from kiln.ops import elementwise as ew
from kiln.ops import indexing as ix
from kiln.ops import loss as _loss  # noqa: F401
from kiln.ops import matmul as mm
from kiln.ops import movement as mv
from kiln.ops import reduce as rd
from kiln.tensor import Tensor, _wrap


def _r(fn):
    return lambda self, other: fn(other, self)


def _inplace(self: Tensor, result_fn, *args):
    """Run ``result_fn(self, *args)`` and store the result in self's buffer."""
    needs_graph = _mode.grad and (
        self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args))
    if needs_graph and self.grad_fn is None and self.requires_grad:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation"
        )
    if not self.data.flags.writeable:
        raise RuntimeError(
            f"in-place operation on a read-only tensor of shape {tuple(self.shape)} (an expanded "
            "view or a read-only NumPy array); clone() it first"
        )
    if needs_graph:
        shadow = _wrap(self.data.copy())
        shadow.requires_grad, shadow.grad_fn = self.requires_grad, self.grad_fn
        res = result_fn(shadow, *args)
        self.grad_fn, self.requires_grad = res.grad_fn, True
    else:
        res = result_fn(self.detach(), *args)
    if res.data.shape != self.data.shape:
        raise RuntimeError(
            f"in-place result of shape {tuple(res.shape)} doesn't match the tensor's shape "
            f"{tuple(self.shape)}"
        )
    np.copyto(self.data, res.data, casting="same_kind")
    self._version += 1
    return self


def _matmul_op(self, other):
    if type(other) is not Tensor:
        return NotImplemented
    if not (_mode.grad and (self.requires_grad or other.requires_grad)) and not _mode.anomaly:
        # nothing to record: straight to the kernel (Function.apply costs ~1.8 us, more
        # than a 32^3 product; `kiln.matmul` takes the same shortcut)
        return _wrap(mm.matmul_arrays(self.data, other.data))
    return mm.Matmul.apply(self, other)


def _setitem(self, idx, value):
    if isinstance(value, Tensor) or _mode.grad and self.requires_grad:
        _inplace(self, lambda s, v: ix.index_put(s, idx, v), value)
        return
    if not self.data.flags.writeable:
        raise RuntimeError("__setitem__: tensor is read-only (an expanded view?); clone() it first")
    self.data[ix._convert_index(idx, self.data.shape)] = value
    self._version += 1


def _to(self, *args, **kwargs):
    dt = kwargs.get("dtype")
    dev = kwargs.get("device")
    for a in args:
        if isinstance(a, _dtype.dtype) or a in (float, int, bool):
            dt = a
        elif isinstance(a, str):
            dev = a
        elif isinstance(a, Tensor):
            dt = a.dtype
    if dev is not None:
        check_device(dev, "to")
    return mv.to_dtype(self, dt) if dt is not None else self


def _copy_from(s, v):
    if not isinstance(v, Tensor):
        v = _wrap(np.asarray(v, dtype=s.data.dtype))
    # a Clone node keeps the copied tensor's history (its gradient flows to src)
    return mv.clone(mv.expand(v, s.data.shape))


def _fill(self, v):
    self.data[...] = v.item() if isinstance(v, Tensor) else v
    self._version += 1
    return self


def _rand_fill(sample):
    def f(self, *args, **kwargs):
        from kiln.creation import default_generator

        g = kwargs.pop("generator", None) or default_generator()
        self.data[...] = sample(g, self.data.shape, *args, **kwargs)
        self._version += 1
        return self

    return f


def _max_like(fn):
    return lambda self, dim=None, keepdim=False: fn(self, dim, keepdim)


METHODS = {
    "__add__": ew.add, "__radd__": _r(ew.add), "__sub__": ew.sub, "__rsub__": _r(ew.sub),
    "__mul__": ew.mul, "__rmul__": _r(ew.mul), "__truediv__": ew.div,
    "__rtruediv__": _r(ew.div), "__pow__": ew.pow, "__rpow__": _r(ew.pow),
    "__matmul__": _matmul_op, "__rmatmul__": _r(mm.matmul), "__neg__": ew.neg,
    "__abs__": ew.abs, "__pos__": lambda self: self,
    "__eq__": ew.eq, "__ne__": ew.ne, "__lt__": ew.lt, "__le__": ew.le, "__gt__": ew.gt,
    "__ge__": ew.ge, "__and__": ew.logical_and, "__or__": ew.logical_or,
    "__xor__": ew.logical_xor, "__invert__": ew.logical_not,
    "__getitem__": ix.index, "__setitem__": _setitem,
    "__floordiv__": lambda a, b: ew.floor(ew.div(a, b)),
    "__mod__": lambda a, b: _wrap(np.asarray(np.mod(a.data, getattr(b, "data", b)))),
    "add": ew.add, "sub": ew.sub, "mul": ew.mul, "div": ew.div, "pow": ew.pow,
    "neg": ew.neg, "exp": ew.exp, "log": ew.log, "log1p": ew.log1p, "expm1": ew.expm1,
    "sqrt": ew.sqrt, "rsqrt": ew.rsqrt, "abs": ew.abs, "sin": ew.sin, "cos": ew.cos,
    "reciprocal": ew.reciprocal, "square": ew.square, "clamp": ew.clamp, "clip": ew.clamp,
    "maximum": ew.maximum, "minimum": ew.minimum, "sign": ew.sign, "floor": ew.floor,
    "ceil": ew.ceil, "round": ew.round, "isnan": ew.isnan, "isinf": ew.isinf,
    "isfinite": ew.isfinite, "eq": ew.eq, "ne": ew.ne, "lt": ew.lt, "le": ew.le,
    "gt": ew.gt, "ge": ew.ge, "logical_not": ew.logical_not, "equal": ew.equal,
    "allclose": ew.allclose, "where": lambda self, cond, other: ew.where(cond, self, other),
    "sum": rd.sum, "mean": rd.mean, "var": rd.var, "std": rd.std, "prod": rd.prod,
    "max": _max_like(rd.max), "min": _max_like(rd.min), "amax": rd.amax, "amin": rd.amin,
    "argmax": rd.argmax, "argmin": rd.argmin, "logsumexp": rd.logsumexp,
    "matmul": mm.matmul, "mm": mm.mm, "bmm": mm.bmm,
    "relu": act.relu, "sigmoid": act.sigmoid, "tanh": act.tanh, "softmax": act.softmax,
    "log_softmax": act.log_softmax,
    "reshape": mv.reshape, "view": mv.view, "transpose": mv.transpose, "permute": mv.permute,
    "expand": mv.expand, "expand_as": lambda self, o: mv.expand(self, o.data.shape),
    "view_as": lambda self, o: mv.view(self, o.data.shape),
    "reshape_as": lambda self, o: mv.reshape(self, o.data.shape),
    "unsqueeze": mv.unsqueeze, "squeeze": mv.squeeze, "flatten": mv.flatten,
    "unflatten": mv.unflatten, "split": mv.split, "chunk": mv.chunk, "narrow": mv.narrow,
    "flip": mv.flip, "t": mv.t, "contiguous": mv.contiguous, "clone": mv.clone,
    "to": _to, "float": lambda self: mv.to_dtype(self, _dtype.float32),
    "double": lambda self: mv.to_dtype(self, _dtype.float64),
    "long": lambda self: mv.to_dtype(self, _dtype.int64),
    "bool": lambda self: mv.to_dtype(self, _dtype.bool_),
    "type": lambda self, dt=None: self.dtype if dt is None else mv.to_dtype(self, dt),
    "cpu": lambda self: self,
    "add_": lambda self, o, alpha=1: _inplace(self, lambda s, v: ew.add(s, v, alpha=alpha), o),
    "sub_": lambda self, o, alpha=1: _inplace(self, lambda s, v: ew.sub(s, v, alpha=alpha), o),
    "mul_": lambda self, o: _inplace(self, ew.mul, o),
    "div_": lambda self, o: _inplace(self, ew.div, o),
    "clamp_": lambda self, min=None, max=None: _inplace(
        self, lambda s: ew.clamp(s, min, max)),
    "copy_": lambda self, src: _inplace(self, _copy_from, src),
    "zero_": lambda self: _fill(self, 0), "fill_": _fill,
    "normal_": _rand_fill(lambda g, s, mean=0.0, std=1.0: g.normal(mean, std, s)),
    "uniform_": _rand_fill(lambda g, s, a=0.0, b=1.0: g.uniform(a, b, s)),
}
for _aug, _op in (("__iadd__", "add_"), ("__isub__", "sub_"), ("__imul__", "mul_"),
                  ("__itruediv__", "div_")):
    METHODS[_aug] = METHODS[_op]

for _name, _fn in METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: mv.permute(self, *reversed(range(self.data.ndim))))
Tensor.mT = property(lambda self: mv.transpose(self, -2, -1))
