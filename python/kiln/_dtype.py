"""kiln's dtypes: float32, float64, int64, bool, each backed by a NumPy dtype."""

from __future__ import annotations

import numpy as np


class dtype:
    """A tensor element type (``kiln.float32``...); compares equal to itself only."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize")

    def __init__(self, name: str, np_dtype) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"kiln.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
int64 = dtype("int64", np.int64)
bool_ = dtype("bool", np.bool_)
float = float32  # noqa: A001 - PyTorch's aliases
double = float64
long = int64

_ALL = {"float32": float32, "float64": float64, "int64": int64, "bool": bool_}
# NumPy dtype -> kiln dtype, for the four dtypes kiln stores natively
_FROM_NP = {d.np: d for d in _ALL.values()}


def _by_name(name: str) -> dtype:
    return _ALL[name]


def to_np(d) -> np.dtype:
    """kiln dtype, NumPy dtype, Python type or name -> the NumPy dtype kiln stores."""
    if isinstance(d, dtype):
        return d.np
    if d is None:
        return float32.np
    if d is builtins_float:
        return float32.np
    if d is builtins_int:
        return int64.np
    if d is builtins_bool:
        return bool_.np
    try:
        nd = np.dtype(d)
    except TypeError:
        raise TypeError(
            f"unsupported dtype {d!r}; kiln has float32, float64, int64, bool"
        ) from None
    if nd in _FROM_NP:
        return nd
    raise TypeError(f"unsupported dtype {d!r}; kiln has float32, float64, int64, bool")


def from_np(nd: np.dtype) -> dtype:
    return _FROM_NP[nd]


def storable(nd: np.dtype) -> np.dtype:
    """The kiln dtype a NumPy array of dtype ``nd`` is converted to."""
    if nd in _FROM_NP:
        return nd
    k = nd.kind
    if k == "f":
        return float32.np  # float16 and friends widen to float32
    if k in "iu":
        return int64.np
    if k == "b":
        return bool_.np
    raise TypeError(f"cannot make a kiln tensor from NumPy dtype {nd}")


import builtins as _b  # noqa: E402

builtins_float, builtins_int, builtins_bool = _b.float, _b.int, _b.bool
