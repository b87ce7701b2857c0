"""``kiln.nn.Parameter``: a tensor that a Module registers as a learnable parameter.

kiln's ops test ``type(x) is Tensor`` on their hot path (a subclass check would cost
every op), so a Parameter is not a subclass: ``Parameter(t)`` returns a plain kiln
Tensor that shares ``t``'s data, requires grad and carries the parameter mark.
``isinstance(p, Parameter)`` tests that mark, which is all ``Module`` needs to tell a
parameter from a plain tensor attribute, as in PyTorch.

Example:
    >>> import kiln
    >>> from kiln.nn import Parameter
    >>> w = Parameter(kiln.zeros(2))
    >>> isinstance(w, Parameter), isinstance(kiln.zeros(2), Parameter), w.requires_grad
    (True, False, True)
"""

from __future__ import annotations

import numpy as np

from kiln.tensor import Tensor, _wrap


class _ParameterMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Tensor) and getattr(obj, "_param", False)


class Parameter(metaclass=_ParameterMeta):
    """Mark a tensor as a module parameter: ``Parameter(data=None, requires_grad=True)``."""

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Tensor:
        if data is None:
            arr = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            arr = data.data
        else:
            raise TypeError(f"Parameter: expected a kiln Tensor, got {type(data).__name__}")
        p = _wrap(arr)
        p._param = True
        if requires_grad:
            p.requires_grad_(True)
        return p


def is_parameter(t) -> bool:
    return isinstance(t, Tensor) and getattr(t, "_param", False)
