"""Numba CUDA normalization kernels (simulator) against the CPU table: layer_norm,
batch_norm, group_norm, forward and backward, every optional argument, bad input."""

import numpy as np
import pytest
from numba import cuda
from numba_helpers import compare, nc

from kiln import _cpu

DTYPES = [np.float32, np.float64]
rng = np.random.default_rng(0)


def rand(*shape, dtype=np.float64, loc=0.0):
    return (rng.standard_normal(shape) + loc).astype(dtype)


def garbage(*shape, dtype=np.float64):
    return np.full(shape, 7.5, dtype)  # outputs start non-zero: unwritten entries show


# ---- layer_norm -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", ["wb", "w", "b", ""])
def test_layer_norm(dtype, affine):
    x = rand(2, 3, 37, dtype=dtype, loc=3.0)  # 6 rows of 37
    w = rand(37, dtype=dtype) if "w" in affine else None
    b = rand(37, dtype=dtype) if "b" in affine else None
    compare("layer_norm", x, w, b, garbage(2, 3, 37, dtype=dtype), garbage(6, dtype=dtype),
            garbage(6, dtype=dtype), 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outs,has_w", [("iwb", True), ("iwb", False), ("i", True), ("w", False),
                                         ("b", True)])
def test_layer_norm_backward(dtype, outs, has_w):
    R, D = 5, 13
    x = rand(R, D, dtype=dtype)
    w = rand(D, dtype=dtype) if has_w else None
    mean, rstd = np.empty(R, dtype), np.empty(R, dtype)
    _cpu.layer_norm(x, w, None, np.empty_like(x), mean, rstd, 1e-5)
    g = rand(R, D, dtype=dtype)
    gi = garbage(R, D, dtype=dtype) if "i" in outs else None
    gw = garbage(D, dtype=dtype) if "w" in outs else None
    gb = garbage(D, dtype=dtype) if "b" in outs else None
    compare("layer_norm_backward", g, x, mean, rstd, w, gi, gw, gb)


def test_layer_norm_empty_batch():
    x = np.empty((0, 5), np.float32)
    e = np.empty(0, np.float32)
    compare("layer_norm", x, None, None, x.copy(), e, e, 1e-5)
    compare("layer_norm_backward", x, x, e, e, None, x.copy(), e, e)


# ---- batch_norm -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9, 3), (3, 2, 2, 5)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("opts", ["wbrs", ""])
def test_batch_norm(dtype, shape, training, opts):
    C = shape[1]
    x = rand(*shape, dtype=dtype, loc=2.0)
    w = rand(C, dtype=dtype) if "w" in opts else None
    b = rand(C, dtype=dtype) if "b" in opts else None
    rm = rand(C, dtype=dtype) if "r" in opts or not training else None
    rv = (np.abs(rand(C, dtype=dtype)) + 0.5).astype(dtype) if "s" in opts or not training \
        else None
    compare("batch_norm", x, w, b, rm, rv, garbage(*shape, dtype=dtype), garbage(C, dtype=dtype),
            garbage(C, dtype=dtype), training, 0.3, 1e-5)


def test_batch_norm_updates_running_stats_like_torch():
    torch = pytest.importorskip("torch")
    x = rand(6, 3, 5)
    rm, rv = rand(3), np.abs(rand(3)) + 0.5
    _, nb = compare("batch_norm", x, None, None, rm, rv, garbage(6, 3, 5), garbage(3),
                    garbage(3), True, 0.1, 1e-5)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.1)
    np.testing.assert_allclose(nb[3], trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(nb[4], trv.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype,shape", [(np.float32, (9, 3)), (np.float64, (3, 2, 7))])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("outs,has_w", [("iwb", True), ("i", False), ("wb", True)])
def test_batch_norm_backward(dtype, shape, training, outs, has_w):
    C = shape[1]
    x = rand(*shape, dtype=dtype)
    w = rand(C, dtype=dtype) if has_w else None
    sm, si = np.empty(C, dtype), np.empty(C, dtype)
    _cpu.batch_norm(x, w, None, rand(C, dtype=dtype), np.ones(C, dtype), np.empty_like(x), sm, si,
                    training, 0.1, 1e-5)
    g = rand(*shape, dtype=dtype)
    gi = garbage(*shape, dtype=dtype) if "i" in outs else None
    gw = garbage(C, dtype=dtype) if "w" in outs else None
    gb = garbage(C, dtype=dtype) if "b" in outs else None
    compare("batch_norm_backward", g, x, w, sm, si, gi, gw, gb, training)


# ---- group_norm -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,G", [((2, 6, 7), 3), ((2, 4, 2, 3), 1), ((2, 5), 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(dtype, shape, G, affine):
    N, C = shape[:2]
    x = rand(*shape, dtype=dtype, loc=-1.0)
    w = rand(C, dtype=dtype) if affine else None
    b = rand(C, dtype=dtype) if affine else None
    compare("group_norm", x, w, b, garbage(*shape, dtype=dtype), garbage(N, G, dtype=dtype),
            garbage(N, G, dtype=dtype), G, 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outs,has_w", [("iwb", True), ("iwb", False), ("i", True), ("w", True),
                                         ("b", False)])
def test_group_norm_backward(dtype, outs, has_w):
    N, C, S, G = 2, 4, 5, 2
    x = rand(N, C, S, dtype=dtype)
    w = rand(C, dtype=dtype) if has_w else None
    mean, rstd = np.empty((N, G), dtype), np.empty((N, G), dtype)
    _cpu.group_norm(x, w, None, np.empty_like(x), mean, rstd, G, 1e-5)
    g = rand(N, C, S, dtype=dtype)
    gi = garbage(N, C, S, dtype=dtype) if "i" in outs else None
    gw = garbage(C, dtype=dtype) if "w" in outs else None
    gb = garbage(C, dtype=dtype) if "b" in outs else None
    compare("group_norm_backward", g, x, mean, rstd, w, gi, gw, gb, G)


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_norm_backward_empty_batch(dtype):
    # N == 0: grad_weight/grad_bias (C values) are sums over nothing, so zeros
    x = np.empty((0, 4, 3), dtype)
    e = np.empty((0, 2), dtype)
    _, nb = compare("group_norm_backward", x, x, e, e, rand(4, dtype=dtype), x.copy(),
                    garbage(4, dtype=dtype), garbage(4, dtype=dtype), 2)
    assert not nb[6].any() and not nb[7].any()


# ---- bad input --------------------------------------------------------------------------
def d(a):
    return cuda.to_device(a)


def test_host_array_is_a_type_error():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="layer_norm: x .* host"):
        nc.layer_norm(x, None, None, d(x), d(np.ones(2, np.float32)), d(np.ones(2, np.float32)),
                      1e-5)


def test_shape_and_dtype_mismatch():
    x = d(np.ones((2, 3), np.float32))
    m = d(np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(4,\).*must have shape"):
        nc.layer_norm(x, d(np.ones(4, np.float32)), None, d(np.ones((2, 3), np.float32)), m, m,
                      1e-5)
    with pytest.raises(TypeError, match="layer_norm: dtype mismatch"):
        nc.layer_norm(x, None, None, d(np.ones((2, 3), np.float64)), m, m, 1e-5)
    with pytest.raises(ValueError, match="does not split into 4 rows"):
        nc.layer_norm(x, None, None, x, d(np.ones(4, np.float32)), d(np.ones(4, np.float32)),
                      1e-5)
    with pytest.raises(TypeError, match="float32 or float64"):
        xi = d(np.ones((2, 3), np.int32))
        nc.layer_norm(xi, None, None, xi, m, m, 1e-5)


def test_batch_norm_bad_config():
    x = d(np.ones((4, 3), np.float32))
    c = d(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="running_mean and running_var must be given"):
        nc.batch_norm(x, None, None, None, None, x, c, c, False, 0.1, 1e-5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        x1 = d(np.ones((1, 3), np.float32))
        nc.batch_norm(x1, None, None, None, None, x1, c, c, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"save_mean of shape \(4,\) .* must have shape \(3,\)"):
        nc.batch_norm(x, None, None, None, None, x, d(np.ones(4, np.float32)), c, True, 0.1, 1e-5)


def test_group_norm_bad_groups():
    x = d(np.ones((2, 6, 3), np.float32))
    m = d(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="divisible by num_groups = 4"):
        nc.group_norm(x, None, None, x, m, m, 4, 1e-5)
    with pytest.raises(ValueError, match="num_groups = 4 does not divide"):
        nc.group_norm_backward(x, x, m, m, None, x, None, None, 4)
    with pytest.raises(ValueError, match=r"mean of shape \(2, 4\) .* must have shape \(2, 3\)"):
        nc.group_norm(x, None, None, x, m, m, 3, 1e-5)
