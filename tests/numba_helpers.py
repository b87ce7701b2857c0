"""Run one kernel on the CPU table and on the Numba CUDA table and compare every array.

Kernels write into the arrays they are given (DESIGN.md, the kernel contract), so the
comparison is generic: the same host arguments are copied, ``kiln._cpu.<name>`` runs on
one copy and ``kiln.backends.numba_cuda.<name>`` on device copies of the other, and then
every array argument (inputs, which must be unchanged, and outputs) must agree.
Lists/tuples of arrays (the multi-tensor optimizer kernels) are compared element-wise.

Under the simulator (tests/conftest.py) kernels run on the CPU, one Python thread per
CUDA thread, so shapes here stay small.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'kiln[numba]')")

from numba import cuda  # noqa: E402

from kiln import _cpu  # noqa: E402
from kiln.backends import numba_cuda as nc  # noqa: E402


def _host_copy(a):
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], np.ndarray):
        return type(a)(x.copy() for x in a)
    return a


def _to_device(a):
    if isinstance(a, np.ndarray):
        return cuda.to_device(a)
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], np.ndarray):
        return type(a)(cuda.to_device(x) for x in a)
    return a


def _to_host(a):
    if isinstance(a, (list, tuple)):
        return type(a)(_to_host(x) for x in a)
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return a


def run_numba(name: str, *args, **kwargs):
    """Run the Numba kernel on device copies of ``args``; return the host copies after."""
    dargs = [_to_device(a) for a in args]
    dkw = {k: _to_device(v) for k, v in kwargs.items()}
    getattr(nc, name)(*dargs, **dkw)
    return [_to_host(a) for a in dargs], {k: _to_host(v) for k, v in dkw.items()}


def compare(name: str, *args, rtol: float = 1e-4, atol: float = 1e-5, skip=(), **kwargs):
    """Assert that the CPU and Numba tables leave identical results in every array argument.

    ``skip``: positions (ints) or keyword names whose contents are not compared (scratch
    buffers whose contents are backend-specific). Returns (cpu_args, numba_args)."""
    cpu_args = [_host_copy(a) for a in args]
    cpu_kw = {k: _host_copy(v) for k, v in kwargs.items()}
    getattr(_cpu, name)(*cpu_args, **cpu_kw)
    nb_args, nb_kw = run_numba(name, *[_host_copy(a) for a in args],
                               **{k: _host_copy(v) for k, v in kwargs.items()})
    pairs = [(i, c, g) for i, (c, g) in enumerate(zip(cpu_args, nb_args))]
    pairs += [(k, cpu_kw[k], nb_kw[k]) for k in cpu_kw]
    for key, c, g in pairs:
        if key in skip:
            continue
        cs = c if isinstance(c, (list, tuple)) else [c]
        gs = g if isinstance(g, (list, tuple)) else [g]
        for j, (cc, gg) in enumerate(zip(cs, gs)):
            if not isinstance(cc, np.ndarray):
                continue
            np.testing.assert_allclose(
                gg, cc, rtol=rtol, atol=atol, equal_nan=True,
                err_msg=f"{name}: argument {key}" + (f"[{j}]" if len(cs) > 1 else "")
                + " differs between kiln._cpu and the Numba CUDA table")
    return cpu_args, nb_args
