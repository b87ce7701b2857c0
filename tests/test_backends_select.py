"""Which kernel table serves "cuda": kiln._cuda when it sees a GPU, else the Numba table;
KILN_CUDA_BACKEND=native|numba forces one; kiln.info() and kiln.backends say which and why."""

import importlib.util

import pytest

import kiln
from kiln import backends
from kiln.device import cuda_status

HAS_NUMBA = importlib.util.find_spec("numba") is not None


def _native_gpu() -> bool:
    try:
        from kiln import _cuda
    except ImportError:
        return False
    return _cuda.is_available()


def test_cpu_table():
    assert backends.which("relu", "cpu") == "kiln._cpu"
    assert backends.table("cpu") is kiln._cpu
    with pytest.raises(ValueError, match="not a kernel of kiln._cpu"):
        backends.which("no_such_kernel", "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backends.which("relu", "tpu")


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_numba_serves_cuda_without_a_native_gpu(monkeypatch):
    from kiln.backends import numba_cuda as nc

    monkeypatch.delenv("KILN_CUDA_BACKEND", raising=False)
    table, why = cuda_status()
    if _native_gpu():
        assert table == "kiln._cuda"
        return
    # no GPU for kiln._cuda here: the Numba table serves (on a GPU, or in the simulator)
    assert nc.is_available() and table == nc.NAME, why
    assert kiln.info()["cuda"] == {"table": nc.NAME, "reason": why}
    assert backends.which("attention_backward") == nc.NAME
    assert backends.table("cuda") is nc


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_forcing_a_table(monkeypatch):
    from kiln.backends import numba_cuda as nc

    monkeypatch.setenv("KILN_CUDA_BACKEND", "numba")
    assert cuda_status()[0] == nc.NAME
    monkeypatch.setenv("KILN_CUDA_BACKEND", "native")
    table, why = cuda_status()
    if not _native_gpu():
        assert table is None and "kiln._cuda" in why and "Numba" not in why
        with pytest.raises(RuntimeError, match="no kernel table serves 'cuda'"):
            backends.which("relu")
    monkeypatch.setenv("KILN_CUDA_BACKEND", "opencl")
    table, why = cuda_status()
    assert table is None and "native|numba" in why
