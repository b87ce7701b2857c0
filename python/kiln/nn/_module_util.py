"""Small helpers of kiln.nn.Module: repr indentation, state_dict value conversion, hook
handles and the (missing_keys, unexpected_keys) result of load_state_dict."""

from __future__ import annotations

import itertools
from collections import namedtuple

import numpy as np

from kiln.tensor import Tensor


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What load_state_dict returns; prints like PyTorch's when every key matched."""

    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(s: str, n: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


def _as_array(value, key: str) -> np.ndarray:
    """A state_dict value as a host array: kiln tensors, NumPy arrays, or anything with
    ``.detach().cpu().numpy()`` (a torch tensor) or ``__array__``."""
    if isinstance(value, Tensor):
        from kiln.device import to_host

        return to_host(value.data)
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - message path
        raise TypeError(f"load_state_dict: value for {key!r} is not an array ({exc})") from exc


class _HookHandle:
    _ids = itertools.count()

    def __init__(self, table: dict) -> None:
        self.table = table
        self.id = next(self._ids)

    def remove(self) -> None:
        self.table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
