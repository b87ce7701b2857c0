"""Helpers shared by the op families: argument conversion, dtype rules, gradient
reduction over broadcast dimensions, and the kernel table for an array."""

from __future__ import annotations

import numpy as np

from kiln import _cpu
from kiln.autograd import _mode
from kiln.tensor import Tensor, _wrap

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)


def kernels(arr):
    """The kernel table serving ``arr``'s device (kiln._cpu for NumPy arrays)."""
    if type(arr) is np.ndarray:
        return _cpu
    raise RuntimeError(f"no kernel table for arrays of type {type(arr).__name__}")


def contig(arr: np.ndarray) -> np.ndarray:
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def shape_str(x) -> str:
    if isinstance(x, Tensor):
        x = x.data
    return str(tuple(np.shape(x)))


def as_tensor_arg(x, op: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float, bool, np.ndarray, np.generic, list, tuple)):
        from kiln.creation import tensor

        return tensor(x)
    raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")


def check_float(x: Tensor, op: str, name: str = "input") -> None:
    if x.data.dtype.kind != "f":
        raise TypeError(
            f"{op}: {name} must be a floating point tensor (float32 or float64), got "
            f"{x.dtype} of shape {tuple(x.data.shape)}"
        )


def fix_float(out, a, b):
    """PyTorch's promotion: a float64 result only when a float64 tensor took part.

    NumPy widens int64 / Python-float and int / int to float64; PyTorch gives the
    default float32 there.
    """
    if type(out) is np.ndarray and out.dtype == F64:
        if not (type(a) is np.ndarray and a.dtype == F64) and not (
            type(b) is np.ndarray and b.dtype == F64
        ):
            return out.astype(F32)
    return out


def shape_of(x):
    return x.shape if type(x) is np.ndarray else None


def sum_to(g: Tensor, shape):
    """Reduce a gradient over the dimensions that broadcasting expanded to reach ``shape``."""
    if shape is None:
        return None
    gs = g.data.shape
    if gs == shape:
        return g
    lead = len(gs) - len(shape)
    dims = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and gs[i + lead] != 1
    )
    if not _mode.grad:  # plain backward: reduce the array directly
        return _wrap(g.data.sum(axis=dims, keepdims=True).reshape(shape))
    from kiln.ops.reduce import sum as _sum

    out = _sum(g, dims, keepdim=True) if dims else g
    if out.data.shape != shape:
        from kiln.ops.movement import reshape

        out = reshape(out, shape)
    return out


def wrap(arr) -> Tensor:
    return _wrap(arr)


def raw() -> bool:
    """True inside a plain backward pass (no create_graph): formulas may use NumPy
    directly instead of recording kiln ops."""
    return not _mode.grad


def sum_to_array(g: np.ndarray, shape):
    """``sum_to`` on a raw array (plain backward): reduce broadcast dims back to ``shape``."""
    if shape is None:
        return None
    gs = g.shape
    if gs == shape:
        return g
    lead = len(gs) - len(shape)
    dims = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and gs[i + lead] != 1
    )
    return g.sum(axis=dims, keepdims=True).reshape(shape)
