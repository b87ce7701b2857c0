"""Numba CUDA dropout against the CPU table: the Philox masks must agree bit for bit."""

import numpy as np
import pytest
from numba_helpers import compare, cuda, nc, run_numba  # skips the module without numba

from kiln import _cpu

# The family module kiln.backends.numba_cuda.dropout shares the kernel's name: importing it
# first (through another kernel of the family or directly) would leave the package attribute
# `dropout` bound to the module; resolving the kernel first binds it to the function.
nc.dropout  # noqa: B018

DTYPES = [np.float32, np.float64]
MASK32 = 0xFFFFFFFF


def _philox_ref(seed: int, block: int) -> list[int]:
    """Philox4x32-10 in plain Python integers (csrc/common/philox.h)."""
    k0, k1 = seed & MASK32, seed >> 32
    c = [block & MASK32, block >> 32, 0, 0]
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & MASK32, (p0 >> 32) ^ c[3] ^ k1, p0 & MASK32]
    return c


def _exact(name, *args):
    """CPU and Numba outputs must be identical (same mask, same x * scale product)."""
    cpu = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    getattr(_cpu, name)(*cpu)
    nb, _ = run_numba(name, *[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    np.testing.assert_array_equal(nb[1], cpu[1], err_msg=f"{name}: masks differ")
    np.testing.assert_array_equal(nb[0], args[0])  # input unchanged
    return nb[1]


def test_philox_known_answer_and_high_counters():
    from kiln.backends.numba_cuda.dropout import _philox, _word

    # Random123's known-answer vector: counter 0, key 0
    assert _philox_ref(0, 0) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]

    @cuda.jit
    def k(out, k0, k1, blocks, idxs):
        i = cuda.grid(1)
        if i < blocks.size:
            w = _philox(k0, k1, blocks[i])
            for j in range(4):
                out[i, j] = w[j]
            out[i, 4] = _word(k0, k1, idxs[i])

    seed = 0x0123456789ABCDEF
    blocks = np.array([0, 1, 2**32 - 1, 2**32, 2**40 + 7, 2**62 + 3], np.uint64)
    idxs = np.array([0, 5, 2**34 + 6, 2**36 + 3, 2**60 + 1, 2**63 + 2], np.uint64)
    out = cuda.to_device(np.zeros((6, 5), np.uint64))
    k0, k1 = np.uint64(seed & MASK32), np.uint64(seed >> 32)
    k[1, 8](out, k0, k1, cuda.to_device(blocks), cuda.to_device(idxs))
    got = out.copy_to_host()
    for i in range(6):
        assert got[i, :4].tolist() == _philox_ref(seed, int(blocks[i]))
        idx = int(idxs[i])
        assert got[i, 4] == _philox_ref(seed, idx >> 2)[idx & 3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 6, 37, 203, 777])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_match_cpu(dtype, n, p):
    seed = 0xDEADBEEF12345 + n  # both key words non-zero
    x = np.ones(n, dtype)
    y = _exact("dropout", x, np.empty_like(x), seed, p)
    kept = y != 0
    assert 0 < kept.sum() < n or n < 40  # a real mask, not all or nothing
    # and it is the convention: kept when (word >> 8) >= ceil(p 2^24)
    thr = int(np.ceil(float(np.float32(p)) * 2**24))
    ref = np.array([(_philox_ref(seed, i >> 2)[i & 3] >> 8) >= thr for i in range(n)])
    np.testing.assert_array_equal(kept, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_and_backward(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 29)).astype(dtype)
    for p in (0.2, 0.7):
        _exact("dropout", x, np.empty_like(x), 1234567, p)
        _exact("dropout_backward", x, np.empty_like(x), 1234567, p)
    compare("dropout", x, np.empty_like(x), 99, 0.3, inner=1)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite(dtype):
    # Dropped elements are x * 0, PyTorch's semantics (NaN for inf/NaN input), on every
    # CPU path and on the Numba table.
    x = np.tile(np.array([np.inf, -np.inf, np.nan, -1.5], dtype), 30)
    cpu = np.empty_like(x)
    _cpu.dropout(x, cpu, 4242, 0.5)
    y = run_numba("dropout", x, np.empty_like(x), 4242, 0.5)[0][1]
    keep = np.array([(_philox_ref(4242, i >> 2)[i & 3] >> 8) >= 2**23 for i in range(x.size)])
    np.testing.assert_array_equal(y, np.where(keep, x * dtype(2), x * dtype(0)))
    np.testing.assert_array_equal(cpu, y)
    assert 0 < keep.sum() < x.size


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,inner", [((6, 5, 3), 3), ((4, 5, 40), 40), ((3, 70), 70),
                                         ((2, 3, 33), 99), ((12,), 12)])
@pytest.mark.parametrize("p", [0.25, 0.6])
def test_feature_dropout(dtype, shape, inner, p):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    y = _exact("dropout", x, np.empty_like(x), 2**40 + 17, p, inner)
    runs = (y.reshape(-1, inner) == 0)
    assert (runs.all(1) | ~runs.any(1)).all()  # whole runs kept or dropped
    _exact("dropout_backward", x, np.empty_like(x), 2**40 + 17, p, inner)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 1.0])
def test_p_zero_and_one(dtype, p):
    x = np.random.default_rng(2).standard_normal(45).astype(dtype)
    x[3] = np.inf  # p = 1: inf * 0 = NaN, as the CPU
    _exact("dropout", x, np.empty_like(x), 5, p)
    _exact("dropout_backward", x, np.empty_like(x), 5, p, 5)


def test_empty():
    x = np.ones((0, 3), np.float32)
    compare("dropout", x, np.empty_like(x), 1, 0.5)


def test_bad_input():
    x = cuda.to_device(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="dropout: dropout probability has to be between 0 and 1"
                                         ", but got 1.500000"):
        nc.dropout(x, x, 1, 1.5)
    with pytest.raises(ValueError, match=r"dropout_backward: inner = 4 must be >= 1 and divide "
                                         r"the size of grad of shape \(2, 3\)"):
        nc.dropout_backward(x, x, 1, 0.5, 4)
    with pytest.raises(ValueError, match="dropout: inner = 0"):
        nc.dropout(x, x, 1, 0.5, 0)
    with pytest.raises(TypeError, match="dropout: dtype mismatch"):
        nc.dropout(x, cuda.to_device(np.ones((2, 3))), 1, 0.5)
    with pytest.raises(ValueError, match="dropout: shape mismatch"):
        nc.dropout(x, cuda.to_device(np.ones(6, np.float32)), 1, 0.5)
    with pytest.raises(TypeError, match="dropout: x of shape .* int64 must be float32"):
        nc.dropout(cuda.to_device(np.ones(3, np.int64)), cuda.to_device(np.ones(3, np.int64)),
                   1, 0.5)
    with pytest.raises(TypeError, match="dropout_backward: grad .* host"):
        nc.dropout_backward(np.ones(3, np.float32), x, 1, 0.5)
    with pytest.raises(TypeError, match="dropout: seed"):
        nc.dropout(x, x, -1, 0.5)
