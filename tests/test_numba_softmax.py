"""Numba CUDA softmax / log_softmax (forward and backward, any dim) against the CPU table."""

import numpy as np
import pytest
from numba_helpers import compare, cuda, nc

# The family module kiln.backends.numba_cuda.softmax shares the kernel's name: resolve the
# kernel first so the package attribute `softmax` is the function, not the module.
nc.softmax  # noqa: B018

DTYPES = [np.float32, np.float64]
FORWARD = ["softmax", "log_softmax"]


def _data(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _y(name, x, dim):
    """The forward output the backward is given (computed by the CPU table)."""
    from kiln import _cpu

    y = np.empty_like(x)
    getattr(_cpu, name)(x, y, dim)
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("shape,dim", [((3, 37), -1), ((3, 3), 1), ((1, 70), 1), ((37,), 0),
                                       ((4, 7, 5), 1), ((4, 7, 5), 0), ((2, 3, 5, 6), 2),
                                       ((1, 13, 1), 1), ((3, 1), 1), ((6, 1), 0)])
def test_forward_and_backward(dtype, name, shape, dim):
    x = _data(shape, dtype)
    compare(name, x, np.empty_like(x), dim)
    y = _y(name, x, dim)
    g = _data(shape, dtype, seed=1, scale=1.0)
    compare(name + "_backward", g, y, np.empty_like(y), dim)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("dim", [0, 1])
def test_large_logits_and_non_finite(dtype, name, dim):
    base = _data((5, 6), dtype, scale=1e4)  # max subtraction: no overflow (row 4)
    base[0, :] = -np.inf  # all -inf: a NaN row (PyTorch)
    base[1, 1] = np.nan
    base[2, 0] = np.inf
    base[3, :] = -np.inf  # one finite entry among -inf: exactly 1 and 0
    base[3, 2] = 1.0
    x = base if dim == 1 else np.ascontiguousarray(base.T)  # rows / columns kernel
    _, nb = compare(name, x, np.empty_like(x), dim)
    assert np.isnan(nb[1]).any() and np.isfinite(nb[1]).any()


@pytest.mark.parametrize("name", FORWARD)
def test_zero_dim_and_empty(name):
    x = np.array(0.7, np.float32)
    compare(name, x, np.empty_like(x), 0)
    compare(name, x, np.empty_like(x), -1)
    for shape, dim in [((0, 4), 1), ((3, 0), 1), ((3, 0), 0)]:
        e = np.ones(shape, np.float64)
        compare(name, e, np.empty_like(e), dim)
        compare(name + "_backward", e, e.copy(), np.empty_like(e), dim)


def test_bad_input():
    x = cuda.to_device(np.ones((2, 3), np.float32))
    with pytest.raises(IndexError, match=r"softmax: dim 2 is out of range for x of shape \(2, 3\)"):
        nc.softmax(x, cuda.device_array((2, 3), np.float32), 2)
    with pytest.raises(IndexError, match="log_softmax_backward: dim -3 is out of range for y"):
        nc.log_softmax_backward(x, x, cuda.device_array((2, 3), np.float32), -3)
    with pytest.raises(TypeError, match="softmax_backward: dtype mismatch: grad .* vs y"):
        nc.softmax_backward(cuda.to_device(np.ones((2, 3))), x, x, 1)
    with pytest.raises(ValueError, match="log_softmax: shape mismatch: x .* vs out"):
        nc.log_softmax(x, cuda.device_array((3, 2), np.float32), 1)
    with pytest.raises(TypeError, match="softmax: x of shape .* int64 must be float32"):
        nc.softmax(cuda.to_device(np.ones(3, np.int64)), cuda.to_device(np.ones(3, np.int64)), 0)
    with pytest.raises(TypeError, match="softmax: out .* host"):
        nc.softmax(x, np.ones((2, 3), np.float32), 1)
    with pytest.raises(ValueError, match="softmax: x .* must be C-contiguous"):
        nc.softmax(cuda.to_device(np.ones((3, 2), np.float32)).T, x, 1)
