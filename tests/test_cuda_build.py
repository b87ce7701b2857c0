"""kiln._cuda: the build, the GPU-less behaviour and the kernel table's shape.

Runs everywhere:
- where kiln was built without nvcc, the whole module skips (kiln._cuda is absent);
- on a machine without a GPU or driver (CI), the module must import, say so, and
  turn every kernel call into a clear exception;
- on a GPU machine, relu / relu_backward / matmul / matmul_naive are checked
  against NumPy, with device arrays from torch, CuPy or Numba, whichever imports.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

try:
    from kiln import _cuda
except ImportError as exc:  # built without a CUDA compiler
    pytest.skip(f"kiln._cuda is not built ({exc})", allow_module_level=True)

from kiln import _cpu

# Module-level functions that are not kernels: each backend has its own.
CPU_HELPERS = {
    "get_isa", "set_isa", "supported_isa", "set_num_threads", "get_num_threads",
    "install_numpy_allocator", "allocator_stats", "empty_cache", "reset_peak_stats",
}  # fmt: skip
CUDA_HELPERS = {
    "device_count", "is_available", "status", "device_info", "compiled_architectures",
    "runtime_version",
}  # fmt: skip
IMPLEMENTED = {"relu", "relu_backward", "matmul", "matmul_naive", "matmul_relu_backward"}

HAS_GPU = _cuda.device_count() > 0
needs_no_gpu = pytest.mark.skipif(HAS_GPU, reason="a CUDA GPU is present")
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason=_cuda.status())


def kernel_names(mod, helpers: set[str]) -> set[str]:
    public = {n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))}
    assert helpers <= public, f"helpers missing from {mod.__name__}: {helpers - public}"
    return public - helpers


def parameters(fn) -> list[tuple[str, str, str | None]]:
    """[(name, type, default or None)] from pybind11's first docstring line `f(a: T = d) -> R`."""
    line = fn.__doc__.splitlines()[0]
    inner = line[line.index("(") + 1 : line.rindex(") ->")]
    params, depth, cur = [], 0, ""
    for ch in inner:  # split on top-level commas; types may hold commas inside [...]
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            params.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        params.append(cur)
    out = []
    for p in params:
        decl, _, default = p.partition(" = ")
        name, _, typ = decl.partition(":")
        out.append((name.strip(), typ.strip(), default.strip() or None))
    return out


def signature(fn) -> list[tuple[str, str | None]]:
    """Argument names and defaults; types differ by design (numpy.ndarray vs object)."""
    return [(name, default) for name, _, default in parameters(fn)]


def placeholder_args(fn) -> list:
    """Arguments pybind11 accepts for fn: None for arrays, 0 / 0.0 / "none" for scalars."""
    values = {"Float": 0.0, "Int": 0, "str": "none", "bool": False}
    return [next((v for k, v in values.items() if k in typ), None) for _, typ, _ in parameters(fn)]


class FakeCudaArray:
    """Claims to be a CUDA array; its pointer is never dereferenced."""

    def __init__(self, shape, typestr="<f4", ptr=0x7F0000000000, readonly=False, strides=None):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly),
            "strides": strides, "version": 3,
        }  # fmt: skip


def fakes(*shapes, typestr="<f4"):
    """Fake arrays at disjoint addresses (matmul rejects an out that overlaps an input)."""
    return [
        FakeCudaArray(s, typestr, ptr=0x7F0000000000 + i * (1 << 30)) for i, s in enumerate(shapes)
    ]


# ---- the build --------------------------------------------------------------------
def test_runtime_and_architectures():
    archs = _cuda.compiled_architectures()
    assert {"sm_80", "sm_90", "compute_90"} <= set(archs), archs
    major, minor = _cuda.runtime_version()
    assert major >= 11 and minor >= 0


def _elf_sections(data: bytes) -> dict[str, tuple[int, int]]:
    """{name: (file offset, size)} of an ELF64 little-endian file."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 24)[0]
    sections = {}
    for i in range(shnum):
        name, _, _, _, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        sections[data[strtab + name : data.index(b"\0", strtab + name)].decode()] = (off, size)
    return sections


def _module_elf() -> tuple[bytes, dict[str, tuple[int, int]]]:
    data = Path(_cuda.__file__).read_bytes()
    if data[:5] != b"\x7fELF\x02":
        pytest.skip("kiln._cuda is not an ELF64 binary")
    return data, _elf_sections(data)


def test_binary_holds_the_reported_architectures():
    """The fatbinary really holds sm_XY machine code / compute_XY PTX as reported."""
    data, sections = _module_elf()
    if ".nv_fatbin" not in sections:
        pytest.skip("no .nv_fatbin section in kiln._cuda")
    off, size = sections[".nv_fatbin"]
    images, p, end = set(), off, off + size
    while p + 16 <= end:  # one fatbin per translation unit, 8-byte aligned
        magic, _, header, fat = struct.unpack_from("<IHHQ", data, p)
        if magic != 0xBA55ED50:
            p += 8
            continue
        q = p + header
        while q < p + header + fat:  # entry: kind (1 PTX, 2 ELF), header size, payload size
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, q)
            arch = struct.unpack_from("<I", data, q + 28)[0]
            images.add(f"{'compute' if kind == 1 else 'sm'}_{arch}")
            q += entry_header + payload
        p += header + fat
    assert images == set(_cuda.compiled_architectures())


def test_no_dynamic_cuda_dependency():
    """cudart is linked statically and loads libcuda lazily: neither is DT_NEEDED."""
    data, sections = _module_elf()
    dyn_off, dyn_size = sections[".dynamic"]
    str_off = sections[".dynstr"][0]
    needed = []
    for p in range(dyn_off, dyn_off + dyn_size, 16):
        tag, val = struct.unpack_from("<qQ", data, p)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            needed.append(data[str_off + val : data.index(b"\0", str_off + val)].decode())
    assert needed, "no DT_NEEDED entries found: the parser is wrong"
    assert not [n for n in needed if n.startswith(("libcudart", "libcuda."))], needed


# ---- devices ------------------------------------------------------------------------
def test_device_queries_are_consistent():
    n = _cuda.device_count()
    assert isinstance(n, int) and n >= 0
    assert _cuda.is_available() is (n > 0)
    assert isinstance(_cuda.status(), str)


@needs_no_gpu
def test_no_gpu_is_reported_not_raised():
    assert _cuda.device_count() == 0
    assert _cuda.is_available() is False
    assert _cuda.status().startswith("no CUDA GPU")
    with pytest.raises(RuntimeError, match="no CUDA GPU available"):
        _cuda.device_info(0)


@needs_gpu
def test_gpu_is_described():
    assert _cuda.status().split(" ", 2)[1].startswith("GPU")
    info = _cuda.device_info(0)
    assert {"name", "compute_capability", "total_memory", "multiprocessor_count"} <= set(info)
    assert info["total_memory"] > 0 and info["multiprocessor_count"] > 0
    with pytest.raises(IndexError):
        _cuda.device_info(_cuda.device_count())


# ---- the kernel table ---------------------------------------------------------------
def test_same_kernel_names_as_cpu():
    assert kernel_names(_cuda, CUDA_HELPERS) == kernel_names(_cpu, CPU_HELPERS)


@pytest.mark.parametrize("name", sorted(kernel_names(_cpu, CPU_HELPERS)))
def test_same_arguments_and_defaults_as_cpu(name):
    assert signature(getattr(_cuda, name)) == signature(getattr(_cpu, name))


@pytest.mark.parametrize("name", sorted(kernel_names(_cpu, CPU_HELPERS) - IMPLEMENTED))
def test_unwritten_kernels_say_so(name):
    fn = getattr(_cuda, name)
    with pytest.raises(NotImplementedError, match=f"^{name}: not implemented yet on the cuda"):
        fn(*placeholder_args(fn))


# ---- argument checks (before any GPU is needed) -------------------------------------
def _relu_bw(arrays):
    a, b, out, x = arrays
    _cuda.matmul_relu_backward(a, b, out, False, False, x)



def test_numpy_arrays_are_rejected():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"relu: x must be a CUDA array .*got numpy\.ndarray"):
        _cuda.relu(x, np.empty_like(x))
    with pytest.raises(TypeError, match="matmul: a must be a CUDA array"):
        _cuda.matmul(x, x.T.copy(), np.empty((2, 2), np.float32))
    (out,) = fakes((2, 3))
    with pytest.raises(TypeError, match="relu_backward: grad must be a CUDA array"):
        _cuda.relu_backward(x, out, out)


def test_host_torch_tensor_is_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="relu: x must be a CUDA array"):
        _cuda.relu(torch.ones(3), torch.ones(3))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: _cuda.relu(*fakes((3,), (4,))), ValueError, r"shape mismatch.*\(3,\).*\(4,\)"),
        (
            lambda: _cuda.relu(*fakes((3,)), *fakes((3,), typestr="<f8")),
            TypeError,
            "dtype mismatch",
        ),
        (lambda: _cuda.relu(*fakes((3,), (3,), typestr="<i8")), TypeError, "float32 or float64"),
        (
            lambda: _cuda.relu(FakeCudaArray((3,)), FakeCudaArray((3,), readonly=True)),
            ValueError,
            "out .* is read-only",
        ),
        (
            lambda: _cuda.relu(FakeCudaArray((2, 3), strides=(4, 8)), FakeCudaArray((2, 3))),
            ValueError,
            "C-contiguous",
        ),
        (lambda: _cuda.matmul(*fakes((2, 3), (4, 5), (2, 5))), ValueError, r"inner dimensions"),
        (lambda: _cuda.matmul(*fakes((2, 3), (3, 5), (2, 4))), ValueError, r"out must be \(2, 5\)"),
        (
            lambda: _cuda.matmul(*fakes((2, 3), (3, 5), (2, 5)), activation="swish"),
            ValueError,
            "unknown activation",
        ),
        (lambda: _cuda.matmul_naive(*fakes((2, 3), (2, 3), (2, 3))), ValueError, "do not chain"),
        (
            lambda: _relu_bw(fakes((2, 3), (3, 5), (2, 5), (5, 2))),
            ValueError,
            r"matmul_relu_backward: shape mismatch",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@needs_no_gpu
@pytest.mark.parametrize(
    "call",
    [
        lambda: _cuda.relu(*fakes((2, 3), (2, 3))),
        lambda: _cuda.relu_backward(*fakes((4,), (4,), (4,), typestr="<f8")),
        lambda: _cuda.matmul(*fakes((2, 3), (3, 5), (2, 5))),
        lambda: _cuda.matmul_naive(*fakes((2, 3), (3, 5), (2, 5))),
        lambda: _relu_bw(fakes((2, 3), (3, 5), (2, 5), (2, 5))),
    ],
)
def test_valid_call_without_gpu_raises(call):
    with pytest.raises(RuntimeError, match=r"^\w+: no CUDA GPU available: "):
        call()


@needs_gpu
def test_host_pointer_is_rejected_on_gpu():
    x = np.ones(3, np.float32)  # a real host address, unknown to CUDA
    fake = FakeCudaArray((3,), ptr=x.ctypes.data)
    with pytest.raises(ValueError, match="GPU-accessible"):
        _cuda.relu(fake, FakeCudaArray((3,), ptr=x.ctypes.data + 4096))


# ---- numerics on a GPU (skipped here; numpy is the oracle) ------------------------
def _device_arrays():
    """(to_device, to_host) from the first of torch / CuPy / Numba that sees the GPU."""
    try:
        import torch

        if torch.cuda.is_available():

            def to_host(d):
                torch.cuda.synchronize()
                return d.cpu().numpy()

            return (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()), to_host
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:

            def to_host(d):
                cupy.cuda.Device().synchronize()
                return cupy.asnumpy(d)

            return (lambda a: cupy.asarray(np.ascontiguousarray(a))), to_host
    except (ImportError, RuntimeError):  # no CuPy, or one built for another CUDA
        pass
    try:
        import numba
        from numba import cuda

        if not numba.config.ENABLE_CUDASIM and cuda.is_available():

            def to_host(d):
                cuda.synchronize()
                return d.copy_to_host()

            return (lambda a: cuda.to_device(np.ascontiguousarray(a))), to_host
    except ImportError:
        pass
    pytest.skip("a GPU is present but none of torch (CUDA), cupy, numba imports to make arrays")


@pytest.fixture(scope="module")
def dev():
    return _device_arrays()


DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


def _tol(dtype, k: int) -> dict:
    """Tolerance for a k-term dot product in dtype against a float64 NumPy reference."""
    eps = 1e-5 if dtype == np.float32 else 1e-12
    return {"rtol": 10 * eps, "atol": eps * max(k, 1)}


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (37, 129), (3, 4, 1025)])
def test_relu_and_backward_match_numpy(dev, dtype, shape):
    to_device, to_host = dev
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = np.nan
    x.flat[-1] = 0.0
    g = rng.standard_normal(shape).astype(dtype)
    dx, dg = to_device(x), to_device(g)
    out, gi = to_device(np.full(shape, 7, dtype)), to_device(np.full(shape, 7, dtype))
    _cuda.relu(dx, out)
    _cuda.relu_backward(dg, dx, gi)
    np.testing.assert_array_equal(to_host(out), np.where(x < 0, 0, x))  # NaN stays NaN
    np.testing.assert_array_equal(to_host(gi), np.where(x <= 0, 0, g))
    _cuda.relu(dx, dx)  # in place
    np.testing.assert_array_equal(to_host(dx), np.where(x < 0, 0, x))


def _gelu(v, approximate):
    if approximate:
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
    from math import erf

    return 0.5 * v * (1 + np.vectorize(erf)(v / np.sqrt(2)))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (17, 33, 5), (64, 64, 64), (70, 3, 130)])
@pytest.mark.parametrize(
    "trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)]
)
def test_matmul_matches_numpy(dev, dtype, m, k, n, trans_a, trans_b):
    to_device, to_host = dev
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    out = to_device(np.zeros((m, n), dtype))
    _cuda.matmul(
        to_device(a.T if trans_a else a),
        to_device(b.T if trans_b else b),
        out,
        trans_a=trans_a,
        trans_b=trans_b,
    )
    np.testing.assert_allclose(to_host(out), a.astype(np.float64) @ b, **_tol(dtype, k))
    if not (trans_a or trans_b):
        naive = to_device(np.zeros((m, n), dtype))
        _cuda.matmul_naive(to_device(a), to_device(b), naive)
        np.testing.assert_allclose(to_host(naive), a.astype(np.float64) @ b, **_tol(dtype, k))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["none", "relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("a_batch, b_batch", [(3, 3), (1, 3), (3, 1)])
def test_batched_matmul_bias_activation(dev, dtype, activation, a_batch, b_batch):
    to_device, to_host = dev
    rng = np.random.default_rng(2)
    m, k, n, batch = 19, 40, 23, 3
    a = rng.standard_normal((a_batch, m, k)).astype(dtype)
    b = rng.standard_normal((b_batch, k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    out = to_device(np.zeros((batch, m, n), dtype))
    _cuda.matmul(to_device(a), to_device(b), out, bias=to_device(bias), activation=activation)
    ref = a.astype(np.float64) @ b + bias
    ref = {"none": ref, "relu": np.maximum(ref, 0), "gelu": _gelu(ref, False),
           "gelu_tanh": _gelu(ref, True)}[activation]  # fmt: skip
    np.testing.assert_allclose(to_host(out), ref, **_tol(dtype, k))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, True)])
def test_matmul_relu_backward_matches_numpy(dev, dtype, trans_a, trans_b):
    to_device, to_host = dev
    rng = np.random.default_rng(3)
    m, k, n = 33, 20, 17
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    x = rng.standard_normal((m, n)).astype(dtype)
    x[0, :2] = [0.0, np.nan]
    out = to_device(np.zeros((m, n), dtype))
    _cuda.matmul_relu_backward(to_device(a.T.copy() if trans_a else a),
                               to_device(b.T.copy() if trans_b else b), out, trans_a, trans_b,
                               to_device(x))
    ref = np.where(x <= 0, 0.0, a.astype(np.float64) @ b)
    np.testing.assert_allclose(to_host(out), ref, **_tol(dtype, k))
