"""Activations and their gradients on the Numba CUDA table (one thread per element).

The math is the CPU table's (csrc/cpu/activation.cpp).
"""

from __future__ import annotations

from numba import cuda

from kiln.backends.numba_cuda._common import elementwise, grid1d, jit


@jit
def _relu(x, out):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        out[i] = v if not v < 0 else v * 0  # NaN passes through, as on the CPU


def relu(x, out) -> None:
    x, out = elementwise("relu", x=x, out=out)
    _relu[grid1d(x.size)](x, out)
