"""Numba CUDA pooling kernels (simulator) against the CPU table: max_pool2d (indices,
dilation, ceil_mode output sizes, NaN), avg_pool2d (count_include_pad, divisor_override),
adaptive_avg_pool2d, forward and backward, and bad input."""

import numpy as np
import pytest
from numba import cuda
from numba_helpers import compare, nc

from kiln import _cpu

DTYPES = [np.float32, np.float64]
rng = np.random.default_rng(1)


def rand(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def out_size(n, k, s, p, d, ceil):
    """PyTorch's pooling output size."""
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


# (H, W, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    (7, 9, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (7, 9, (3, 3), (2, 2), (1, 1), (1, 1), True),
    (6, 8, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (7, 8, (3, 2), (1, 2), (1, 1), (2, 1), True),
    (2, 2, (2, 2), (1, 1), (1, 1), (3, 3), False),  # windows left empty by the dilation
]


def max_args(H, W, k, s, p, d, ceil, dtype, P=(2, 2)):
    OH, OW = (out_size(n, k[i], s[i], p[i], d[i], ceil) for i, n in enumerate((H, W)))
    x = rand(*P, H, W, dtype=dtype)
    x.flat[5] = np.nan  # a NaN wins its windows
    x.flat[-3] = x.flat[-4]  # a tie: the first max wins
    return x, (*P, OH, OW), (k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool2d(dtype, case):
    x, oshape, params = max_args(*case, dtype)
    compare("max_pool2d", x, np.zeros(oshape, dtype), np.full(oshape, 99, np.int64), *params)


def test_max_pool2d_without_indices():
    x, oshape, params = max_args(*MAX_CASES[0], np.float32)
    compare("max_pool2d", x, np.zeros(oshape, np.float32), None, *params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool2d_backward(dtype, case):
    x, oshape, params = max_args(*case, dtype)
    ind = np.empty(oshape, np.int64)
    _cpu.max_pool2d(x, np.empty(oshape, dtype), ind, *params)
    compare("max_pool2d_backward", rand(*oshape, dtype=dtype), ind, np.full(x.shape, 3.0, dtype))


# (H, W, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    (7, 9, (3, 3), (2, 2), (1, 1), False, True, 0),
    (7, 9, (3, 3), (2, 2), (1, 1), True, False, 0),
    (6, 7, (2, 3), (2, 1), (1, 0), True, True, 0),
    (5, 8, (3, 2), (1, 2), (0, 1), False, False, 5),
    (5, 5, (4, 4), (3, 3), (2, 2), True, True, 0),  # ceil_mode windows past H + pad
]


def avg_args(H, W, k, s, p, ceil, cip, div, dtype, P=(3,)):
    OH, OW = (out_size(n, k[i], s[i], p[i], 1, ceil) for i, n in enumerate((H, W)))
    return (*P, H, W), (*P, OH, OW), (k[0], k[1], s[0], s[1], p[0], p[1], cip, div)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool2d(dtype, case):
    ishape, oshape, params = avg_args(*case, dtype)
    compare("avg_pool2d", rand(*ishape, dtype=dtype), np.full(oshape, 9.0, dtype), *params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool2d_backward(dtype, case):
    ishape, oshape, params = avg_args(*case, dtype)
    compare("avg_pool2d_backward", rand(*oshape, dtype=dtype), np.full(ishape, 9.0, dtype),
            *params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw,ohw", [((7, 9), (3, 4)), ((5, 5), (1, 1)), ((4, 6), (5, 7)),
                                    ((6, 6), (6, 6))])
def test_adaptive_avg_pool2d(dtype, hw, ohw):
    compare("adaptive_avg_pool2d", rand(2, *hw, dtype=dtype), np.full((2, *ohw), 9.0, dtype))
    compare("adaptive_avg_pool2d_backward", rand(2, *ohw, dtype=dtype),
            np.full((2, *hw), 9.0, dtype))


def test_matches_torch_on_the_simulator():
    torch = pytest.importorskip("torch")
    x = rand(2, 3, 7, 9)
    oshape = (2, 3, 4, 5)
    _, nb = compare("max_pool2d", x, np.zeros(oshape), np.zeros(oshape, np.int64),
                    3, 3, 2, 2, 1, 1, 1, 1)
    ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_allclose(nb[1], ty.numpy(), equal_nan=True)
    np.testing.assert_array_equal(nb[2], ti.numpy())
    _, nb = compare("avg_pool2d", x, np.zeros((2, 3, 4, 5)), 3, 3, 2, 2, 1, 1, False, 0)
    ty = torch.nn.functional.avg_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True,
                                        count_include_pad=False)
    np.testing.assert_allclose(nb[1], ty.numpy(), rtol=1e-12)


# ---- bad input --------------------------------------------------------------------------
def d(a):
    return cuda.to_device(a)


def test_bad_input():
    x = d(np.ones((2, 6, 6), np.float32))
    out = d(np.ones((2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="max_pool2d: x .* host"):
        nc.max_pool2d(np.ones((2, 6, 6), np.float32), out, None, 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(TypeError, match="indices .* must be int64"):
        nc.max_pool2d(x, out, d(np.ones((2, 3, 3), np.int32)), 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="pad should be at most half"):
        nc.max_pool2d(x, out, None, 2, 2, 2, 2, 2, 0, 1, 1)
    with pytest.raises(ValueError, match="too large for input size"):
        nc.avg_pool2d(x, d(np.ones((2, 4, 3), np.float32)), 2, 2, 2, 2, 0, 0, True, 0)
    with pytest.raises(ValueError, match="leading dims"):
        nc.adaptive_avg_pool2d(x, d(np.ones((3, 3, 3), np.float32)))
    with pytest.raises(TypeError, match="dtype mismatch"):
        nc.avg_pool2d(x, d(np.ones((2, 3, 3), np.float64)), 2, 2, 2, 2, 0, 0, True, 0)
    with pytest.raises(ValueError, match="divisor_override must be positive"):
        nc.avg_pool2d_backward(out, x, 2, 2, 2, 2, 0, 0, True, -1)
    with pytest.raises(ValueError, match="shape mismatch"):
        nc.max_pool2d_backward(out, d(np.ones((2, 3, 4), np.int64)), x)
    with pytest.raises(ValueError, match="empty plane"):
        nc.adaptive_avg_pool2d(d(np.ones((2, 0, 3), np.float32)), out)
