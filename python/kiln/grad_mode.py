"""Grad mode and anomaly mode: thread-local switches read by every op.

``no_grad`` / ``enable_grad`` / ``set_grad_enabled`` decide whether ops record graph
nodes; ``detect_anomaly`` makes every forward output and backward gradient be checked
for NaN/Inf. Both are per thread, like PyTorch's.
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "detect_anomaly",
           "set_detect_anomaly", "is_anomaly_enabled"]


class _Mode(threading.local):
    def __init__(self) -> None:
        self.grad = True
        self.anomaly = False


_mode = _Mode()



def is_grad_enabled() -> bool:
    return _mode.grad


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager / decorator that turns graph recording on or off."""

    def __init__(self, mode: bool) -> None:
        self.prev = _mode.grad
        self.mode = bool(mode)
        _mode.grad = self.mode

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        _mode.grad = self.prev


class no_grad(contextlib.ContextDecorator):
    """Disable graph recording inside the block (``with kiln.no_grad(): ...``)."""

    def __enter__(self) -> None:
        self.prev = _mode.grad
        _mode.grad = False

    def __exit__(self, *exc) -> None:
        _mode.grad = self.prev


class enable_grad(contextlib.ContextDecorator):
    """Re-enable graph recording inside a ``no_grad`` block."""

    def __enter__(self) -> None:
        self.prev = _mode.grad
        _mode.grad = True

    def __exit__(self, *exc) -> None:
        _mode.grad = self.prev


def is_anomaly_enabled() -> bool:
    return _mode.anomaly


class set_detect_anomaly(contextlib.ContextDecorator):
    def __init__(self, mode: bool) -> None:
        self.prev = _mode.anomaly
        _mode.anomaly = bool(mode)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        _mode.anomaly = self.prev


class detect_anomaly(contextlib.ContextDecorator):
    """Check every op's forward output and every backward gradient for NaN/Inf.

    The first op that produces one raises ``RuntimeError`` naming the op, so the
    source of a NaN loss is found where it appears, not where it surfaces.
    """

    def __enter__(self) -> None:
        self.prev = _mode.anomaly
        _mode.anomaly = True

    def __exit__(self, *exc) -> None:
        _mode.anomaly = self.prev
