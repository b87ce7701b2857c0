"""PyTorch-style printing: ``tensor([[1.0000, 2.5000]], requires_grad=True)``."""

from __future__ import annotations

import numpy as np


def _formatter(arr: np.ndarray):
    kind = arr.dtype.kind
    if kind == "b":
        return {"bool": lambda v: "True" if v else "False"}
    if kind in "iu":
        return None
    finite = arr[np.isfinite(arr)] if arr.size else arr
    if finite.size == 0:
        return {"float_kind": lambda v: f"{v}".replace("nan", "nan").replace("inf", "inf")}
    amax = np.abs(finite).max()
    nz = np.abs(finite[finite != 0])
    amin = nz.min() if nz.size else 0.0
    if np.all(finite == np.round(finite)) and amax < 1e8:
        return {"float_kind": lambda v: f"{v:.0f}." if np.isfinite(v) else f"{v}"}
    if amax >= 1e8 or (amin and amin < 1e-4) or (amin and amax / amin > 1e3 and amax > 1e3):
        return {"float_kind": lambda v: f"{v:.4e}"}
    return {"float_kind": lambda v: f"{v:.4f}" if np.isfinite(v) else f"{v}"}


def _padded(arr, fmt):
    """Right-align every element to the widest one, as PyTorch prints."""
    if fmt is None or arr.size == 0:
        return fmt
    (kind, f), = fmt.items()
    width = 0
    for v in arr.reshape(-1)[:2000]:
        width = max(width, len(f(v)))
    return {kind: lambda v: f(v).rjust(width)}


def tensor_repr(t) -> str:
    from kiln.device import to_host

    arr = to_host(t.data)
    prefix = "tensor("
    body = np.array2string(
        arr, separator=", ", prefix=prefix, formatter=_padded(arr, _formatter(arr)),
        threshold=1000, edgeitems=3,
    )
    extras = []
    dev = t.device
    if dev != "cpu":
        extras.append(f"device='{dev}'")
    default = arr.dtype in (np.float32, np.int64, np.bool_)
    if not default or (arr.size == 0 and arr.dtype != np.float32):
        extras.append(f"dtype=kiln.{t.dtype.name}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    if arr.size == 0 and arr.ndim > 1:
        extras.insert(0, f"size={tuple(arr.shape)}")
    text = prefix + body + "".join(", " + e for e in extras) + ")"
    return "Parameter containing:\n" + text if getattr(t, "_param", False) else text
