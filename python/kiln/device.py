"""Devices and the kernel tables that serve them.

"cpu" is served by ``kiln._cpu`` (always built). "cuda" is served by
``kiln._cuda`` when it imported and sees a GPU, else by the Numba CUDA kernels,
else it is unavailable with a reason (DESIGN.md, devices). ``kiln.info()``
reports all of it.
"""

from __future__ import annotations

import os
import platform

import numpy as np

from kiln import _cpu


def device_of(arr) -> str:
    if type(arr) is np.ndarray:
        return "cpu"
    if hasattr(arr, "__cuda_array_interface__"):
        return "cuda"
    return "cpu"


def to_host(arr) -> np.ndarray:
    if type(arr) is np.ndarray:
        return arr
    if hasattr(arr, "copy_to_host"):
        return arr.copy_to_host()
    return np.asarray(arr)


def check_device(device, op: str = "tensor") -> str:
    """Normalise a device argument; only "cpu" holds tensors until the CUDA backend lands."""
    if device is None:
        return "cpu"
    name = str(device)
    base = name.split(":")[0]
    if base == "cpu":
        return "cpu"
    if base == "cuda":
        why = cuda_status()[1]
        raise RuntimeError(f"{op}: CUDA tensors are not supported yet by this kiln build ({why})")
    raise ValueError(f"{op}: unknown device {name!r} (expected 'cpu' or 'cuda')")


def cuda_status() -> tuple[str | None, str]:
    """(table name or None, reason) for the "cuda" device."""
    forced = os.environ.get("KILN_CUDA_BACKEND", "").strip().lower()
    reasons = []
    if forced in ("", "native"):
        try:
            from kiln import _cuda  # noqa: PLC0415
        except ImportError as e:
            reasons.append(f"kiln._cuda not built ({e})")
        else:
            if _cuda.is_available():
                return "kiln._cuda", _cuda.status()
            reasons.append(f"kiln._cuda: {_cuda.status()}")
    if forced in ("", "numba"):
        from kiln.backends import numba_cuda  # noqa: PLC0415  (imports no numba itself)

        ok, why = numba_cuda.status()
        if ok:
            return numba_cuda.NAME, why
        reasons.append(f"Numba CUDA: {why}")
    return None, "; ".join(reasons) or f"KILN_CUDA_BACKEND={forced!r} is not native|numba"


def info() -> dict:
    """What serves each device, the CPU instruction set, threads and the allocator."""
    from kiln import __version__

    table, why = cuda_status()
    return {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": {
            "table": "kiln._cpu",
            "isa": _cpu.get_isa(),
            "isa_supported": _cpu.supported_isa(),
            "threads": _cpu.get_num_threads(),
            "allocator": _cpu.allocator_stats(),
        },
        "cuda": {"table": table, "reason": why},
    }
