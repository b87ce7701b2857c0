"""The three kernel tables export the same kernels with the same arguments.

kiln._cpu and kiln._cuda are pybind11 modules whose signatures are read from their
docstrings; the Numba CUDA table is Python, read with ``inspect``. Names, argument
names, order and defaults must agree (DESIGN.md, the kernel contract)."""

from __future__ import annotations

import importlib.util
import inspect
import re

import pytest

from kiln import _cpu

HELPERS = {
    "get_isa", "set_isa", "supported_isa", "set_num_threads", "get_num_threads",
    "install_numpy_allocator", "allocator_stats", "empty_cache", "reset_peak_stats",
}  # fmt: skip


def pybind_signature(fn) -> list[tuple[str, str | None]]:
    """[(argument name, default repr or None)] from a pybind11 docstring's first line."""
    head = (fn.__doc__ or "").strip().split("\n")[0]
    inner = head[head.index("(") + 1: head.rindex(") ->")]
    out = []
    for part in re.split(r", (?=\w+: )", inner) if inner else []:
        name, _, rest = part.partition(": ")
        default = rest.split(" = ", 1)[1] if " = " in rest else None
        out.append((name, default))
    return out


def python_signature(fn) -> list[tuple[str, str | None]]:
    return [(p.name, None if p.default is inspect.Parameter.empty else repr(p.default))
            for p in inspect.signature(fn).parameters.values()]


CPU_KERNELS = sorted(n for n in dir(_cpu) if not n.startswith("_") and n not in HELPERS
                     and callable(getattr(_cpu, n)))


def test_cpu_table_is_not_empty():
    assert {"matmul", "relu", "attention_backward", "adam_step"} <= set(CPU_KERNELS)


needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="numba is not installed (pip install 'kiln[numba]')")


@needs_numba
def test_numba_table_lists_exactly_the_cpu_kernels():
    from kiln.backends import numba_cuda as nc

    assert sorted(nc.KERNELS) == CPU_KERNELS


@needs_numba
@pytest.mark.parametrize("name", CPU_KERNELS)
def test_numba_signature_matches_cpu(name):
    from kiln.backends import numba_cuda as nc

    try:
        fn = getattr(nc, name)
    except NotImplementedError:
        pytest.skip(f"{name} is not written on the Numba table yet")
    assert python_signature(fn) == pybind_signature(getattr(_cpu, name))


@pytest.mark.parametrize("name", CPU_KERNELS)
def test_cuda_signature_matches_cpu(name):
    cuda_mod = pytest.importorskip("kiln._cuda", reason="kiln._cuda is not built")
    assert pybind_signature(getattr(cuda_mod, name)) == pybind_signature(getattr(_cpu, name))


@needs_numba
@pytest.mark.parametrize("name", CPU_KERNELS)
def test_numba_kernel_is_written_and_tested(name):
    """Every kernel exists on the Numba table and a tests/test_numba_*.py file runs it
    (through compare/run_numba/nc.<name>) against the CPU table."""
    from pathlib import Path

    from kiln.backends import numba_cuda as nc

    assert callable(getattr(nc, name))  # NotImplementedError if missing
    sources = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_numba_*.py"))
    assert re.search(rf"""(["']){name}\1|nc\.{name}\(""", sources), (
        f"no tests/test_numba_*.py test runs the Numba kernel {name}")
