"""Shared by the Numba CUDA families: device-array intake, the CPU table's argument
checks (same exception types and messages, so errors read alike on every backend),
launch geometry and the jit decorator.

Importing this module imports numba (the family modules import it on first use).
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda


def jit(fn=None, **kwargs):
    """``cuda.jit`` with on-disk caching: ``@jit``, ``@jit(device=True)``."""
    kwargs.setdefault("cache", True)
    if fn is None:
        return cuda.jit(**kwargs)
    return cuda.jit(**kwargs)(fn)


SIMULATOR = bool(config.ENABLE_CUDASIM)
TPB = 256  # threads per block for 1-D elementwise launches


def _numba_array(a) -> bool:
    # DeviceNDArray on a GPU, FakeCUDAArray in the simulator
    return type(a).__module__.startswith("numba") and hasattr(a, "copy_to_host")


def dev(a, op: str, name: str, optional: bool = False):
    """``a`` as a numba device array (no copy); a host array is an error, not a transfer."""
    if _numba_array(a):
        return a
    if a is None:
        if optional:
            return None
        raise TypeError(f"{op}: {name} must be a CUDA device array, got None")
    if isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} of shape {a.shape} and dtype {a.dtype} is a host (NumPy) "
                        "array; the Numba CUDA table takes device arrays")
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)  # torch/CuPy/kiln._cuda memory, read in place
    raise TypeError(f"{op}: {name} must be a CUDA device array, got {type(a).__name__}")


def describe(a, name: str) -> str:
    return f"{name} of shape {tuple(a.shape)} and dtype {np.dtype(a.dtype).name}"


def check_float(a, op: str, name: str) -> None:
    if np.dtype(a.dtype) not in (np.float32, np.float64):
        raise TypeError(f"{op}: {describe(a, name)} must be float32 or float64")


def check_same_dtype(a, b, op: str, na: str, nb: str) -> None:
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        raise TypeError(f"{op}: dtype mismatch: {describe(a, na)} vs {describe(b, nb)}")


def check_same_shape(a, b, op: str, na: str, nb: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: shape mismatch: {describe(a, na)} vs {describe(b, nb)}")


def elementwise(op: str, **arrays):
    """Device arrays for an elementwise kernel: one float dtype and one shape for all.

    Returns them flattened to 1-D views (the arrays are C-contiguous by contract)."""
    items = [(n, dev(a, op, n)) for n, a in arrays.items()]
    n0, a0 = items[0]
    check_float(a0, op, n0)
    for n, a in items[1:]:
        check_same_dtype(a0, a, op, n0, n)
        check_same_shape(a0, a, op, n0, n)
    return [flat(a) for _, a in items]


def flat(a):
    """A 1-D view of a C-contiguous device array."""
    return a.reshape(a.size) if a.ndim != 1 else a


def grid1d(n: int, tpb: int = TPB) -> tuple[int, int]:
    """(blocks, threads) covering ``n`` elements, at least one block."""
    return max(1, math.ceil(n / tpb)), tpb
