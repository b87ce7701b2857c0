"""Numba CUDA activations against the CPU table (simulator without a GPU)."""

import numpy as np
import pytest
from numba_helpers import compare, nc

from kiln.backends.numba_cuda._common import SIMULATOR  # noqa: F401

DTYPES = [np.float32, np.float64]


def _x(dtype, shape=(13, 17), scale=3.0, seed=0):
    """Odd-sized input over the interesting range, with a NaN, +-0 and the kink at 0."""
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    f = x.reshape(-1)
    f[3], f[5], f[8] = np.nan, 0.0, -0.0
    f[11], f[12] = 12.0, -12.0  # tails (softplus threshold, gelu/sigmoid saturation)
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu(dtype):
    x = np.random.default_rng(0).standard_normal(37).astype(dtype)
    x[3] = np.nan
    x[4] = -np.inf  # relu(-inf) = 0, not -inf * 0
    cpu, nb = compare("relu", x, np.empty_like(x))
    assert nb[1][4] == 0 and np.isnan(nb[1][3])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "silu"])
def test_unary_plain(name, dtype):
    x = _x(dtype, (7, 29))  # 203 elements: the simulator's 2 x 64 grid strides
    compare(name, x, np.empty_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu_backward", "silu_backward"])
def test_backward_of_x(name, dtype):
    x = _x(dtype, (7, 29))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    compare(name, g, x, np.empty_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fwd", [("sigmoid_backward", "sigmoid"),
                                      ("tanh_backward", "tanh")])
def test_backward_of_y(name, fwd, dtype):
    x = _x(dtype, (5, 9))
    y = np.tanh(x) if fwd == "tanh" else 1 / (1 + np.exp(-x))
    y = y.astype(dtype)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    compare(name, g, y, np.empty_like(y))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.01, -0.5, 2.0])
def test_leaky_relu(dtype, slope):
    x = _x(dtype, (5, 9))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    compare("leaky_relu", x, np.empty_like(x), slope)
    compare("leaky_relu_backward", g, x, np.empty_like(x), negative_slope=slope)


# the simulator computes exp in double and overflows casting exp(24) back to float32 (inf,
# as a GPU's expf gives)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(dtype, approximate):
    x = _x(dtype, (7, 11))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    compare("gelu", x, np.empty_like(x), approximate=approximate)
    compare("gelu_backward", g, x, np.empty_like(x), approximate)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_default_is_exact(dtype):
    x = _x(dtype, (3, 5))
    _, nb = compare("gelu", x, np.empty_like(x))
    _, nb_none = compare("gelu", x, np.empty_like(x), "none")
    np.testing.assert_array_equal(nb[1], nb_none[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 5.0), (0.5, 1.0)])
def test_softplus(dtype, beta, threshold):
    x = _x(dtype, (5, 9))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    compare("softplus", x, np.empty_like(x), beta, threshold)
    compare("softplus_backward", g, x, np.empty_like(x), beta, threshold)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
def test_elu(dtype, alpha):
    x = _x(dtype, (5, 9))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    compare("elu", x, np.empty_like(x), alpha)
    compare("elu_backward", g, x, np.empty_like(x), alpha=alpha)


@pytest.mark.parametrize("name,extra", [("relu", ()), ("gelu", ("tanh",)), ("elu", (1.0,))])
def test_empty_and_scalar(name, extra):
    for shape in [(0,), (3, 0), ()]:
        x = np.full(shape, 0.5, np.float32)
        compare(name, x, np.zeros_like(x), *extra)


def test_relu_rejects_host_arrays_and_mismatches():
    from numba import cuda

    x = cuda.to_device(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="relu: x of shape .* host"):
        nc.relu(np.ones(4, np.float32), x)
    with pytest.raises(ValueError, match="relu: shape mismatch"):
        nc.relu(x, cuda.device_array(5, np.float32))


def test_bad_input():
    from numba import cuda

    x32 = cuda.to_device(np.ones((2, 3), np.float32))
    x64 = cuda.to_device(np.ones((2, 3), np.float64))
    with pytest.raises(TypeError, match=r"sigmoid_backward: dtype mismatch: grad .* vs y"):
        nc.sigmoid_backward(x32, x64, x32)
    with pytest.raises(ValueError, match=r"elu_backward: shape mismatch: grad of shape \(2, 3\)"):
        nc.elu_backward(x32, cuda.to_device(np.ones(6, np.float32)), x32, 1.0)
    with pytest.raises(TypeError, match="tanh: x of shape .* int32 must be float32 or float64"):
        nc.tanh(cuda.to_device(np.ones(3, np.int32)), cuda.to_device(np.ones(3, np.int32)))
    with pytest.raises(ValueError, match="gelu_backward: approximate must be 'none' or 'tanh', "
                                         "got 'erf'"):
        nc.gelu_backward(x32, x32, x32, "erf")
    with pytest.raises(TypeError, match="silu_backward: grad_input .* host"):
        nc.silu_backward(x32, x32, np.ones((2, 3), np.float32))
