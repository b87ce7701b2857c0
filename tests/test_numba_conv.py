"""conv2d / conv2d_dgrad / conv2d_wgrad on the Numba CUDA table against kiln._cpu.

Shapes stay tiny (N=2, C=3, H=W=7, 3x3 kernels): the simulator runs one Python thread per
CUDA thread."""

import numpy as np
import pytest
from numba import cuda
from numba_helpers import compare, nc

RNG = np.random.default_rng(0)

# (C, Co, H, W, kh, kw, stride, padding, dilation, groups, Ho, Wo)
CONFIGS = {
    "basic": (3, 4, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1), 1, 7, 7),
    "stride_dilation": (3, 2, 7, 6, 3, 2, (2, 1), (2, 0), (2, 2), 1, 4, 4),
    "groups": (4, 6, 5, 6, 3, 3, (2, 2), (1, 1), (1, 1), 2, 3, 3),
    "depthwise": (3, 6, 6, 5, 3, 3, (1, 2), (0, 1), (1, 1), 3, 4, 3),
    # 'same' with an even kernel: 1 row / column on top / left, 2 at the bottom / right
    "same_even_kernel": (2, 3, 5, 6, 4, 4, (1, 1), (1, 1), (1, 1), 1, 5, 6),
}


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def setup(name, dtype, n=2):
    C, Co, H, W, kh, kw, s, p, d, g, Ho, Wo = CONFIGS[name]
    x = rand(n, C, H, W, dtype=dtype)
    w = rand(Co, C // g, kh, kw, dtype=dtype)
    y = rand(n, Co, Ho, Wo, dtype=dtype)
    return x, w, y, (*s, *p, *d, g)


CASES = [("basic", np.float32), ("stride_dilation", np.float64), ("groups", np.float32),
         ("depthwise", np.float32), ("same_even_kernel", np.float32)]


@pytest.mark.parametrize("name,dtype", CASES)
def test_conv2d(name, dtype):
    x, w, y, cfg = setup(name, dtype)
    out = np.full_like(y, np.nan)  # every element must be written
    bias = rand(y.shape[1], dtype=dtype) if name != "stride_dilation" else None
    compare("conv2d", x, w, bias, out, *cfg, **tol(dtype))


@pytest.mark.parametrize("name,dtype", CASES)
def test_conv2d_dgrad(name, dtype):
    x, w, y, cfg = setup(name, dtype)
    compare("conv2d_dgrad", y, w, np.full_like(x, np.nan), *cfg, **tol(dtype))


@pytest.mark.parametrize("name,dtype", CASES)
def test_conv2d_wgrad(name, dtype):
    x, w, y, cfg = setup(name, dtype)
    gb = np.full(y.shape[1], np.nan, dtype) if name != "groups" else None
    compare("conv2d_wgrad", y, x, np.full_like(w, np.nan), gb, *cfg, **tol(dtype))


def test_conv2d_matches_its_adjoints():
    # <conv(x, w), g> = <x, dgrad(g, w)> = <w, wgrad(g, x)>: the three kernels agree
    # with each other, not only with the CPU table
    x, w, y, cfg = setup("stride_dilation", np.float64)
    dx, dw_, dy = cuda.to_device(x), cuda.to_device(w), cuda.to_device(y)
    out, gx, gw = (cuda.device_array_like(a) for a in (y, x, w))
    nc.conv2d(dx, dw_, None, out, *cfg)
    nc.conv2d_dgrad(dy, dw_, gx, *cfg)
    nc.conv2d_wgrad(dy, dx, gw, None, *cfg)
    lhs = (out.copy_to_host() * y).sum()
    np.testing.assert_allclose((x * gx.copy_to_host()).sum(), lhs, rtol=1e-12)
    np.testing.assert_allclose((w * gw.copy_to_host()).sum(), lhs, rtol=1e-12)


def test_conv_empty_batch():
    x, w, y, cfg = setup("basic", np.float32, n=0)
    compare("conv2d", x, w, None, np.empty_like(y), *cfg)
    compare("conv2d_dgrad", y, w, np.empty_like(x), *cfg)
    # an empty sum: zeros, written
    cpu, nb = compare("conv2d_wgrad", y, x, np.full_like(w, np.nan), np.full(4, np.nan, np.float32),
                      *cfg)
    assert (nb[2] == 0).all() and (nb[3] == 0).all()


def d(a):
    return cuda.to_device(a)


def test_conv_bad_input():
    x, w, y, cfg = setup("basic", np.float32)
    dx, dw_, dy = d(x), d(w), d(y)
    with pytest.raises(TypeError, match="conv2d: x of shape .* host"):
        nc.conv2d(x, dw_, None, dy, *cfg)
    with pytest.raises(TypeError, match="conv2d: dtype mismatch"):
        nc.conv2d(dx, d(w.astype(np.float64)), None, dy, *cfg)
    with pytest.raises(TypeError, match="conv2d: dtype mismatch.*bias"):
        nc.conv2d(dx, dw_, d(np.zeros(4)), dy, *cfg)
    with pytest.raises(ValueError, match=r"must be 4-D \(N, C, H, W\)"):
        nc.conv2d(d(x[0]), dw_, None, dy, *cfg)
    with pytest.raises(ValueError, match="invalid configuration"):
        nc.conv2d(dx, dw_, None, dy, 0, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="divisible by groups"):
        nc.conv2d(dx, dw_, None, dy, 1, 1, 1, 1, 1, 1, 2)
    with pytest.raises(ValueError, match=r"expected weight of shape \(4, 3, kH, kW\)"):
        nc.conv2d(dx, d(rand(4, 2, 3, 3)), None, dy, *cfg)
    with pytest.raises(ValueError, match=r"does not match .* expected \(2, 4, 7, 7\)"):
        nc.conv2d(dx, dw_, None, d(rand(2, 4, 5, 5)), *cfg)
    with pytest.raises(ValueError, match="larger than the padded input"):
        nc.conv2d(dx, d(rand(4, 3, 11, 11)), None, d(rand(2, 4, 1, 1)), 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="batch sizes differ"):
        nc.conv2d(dx, dw_, None, d(rand(3, 4, 7, 7)), *cfg)
    with pytest.raises(ValueError, match=r"bias of shape \(3,\)"):
        nc.conv2d(dx, dw_, d(rand(3)), dy, *cfg)
    with pytest.raises(ValueError, match="C-contiguous"):
        nc.conv2d(d(rand(2, 3, 7, 14))[:, :, :, ::2], dw_, None, dy, *cfg)
    with pytest.raises(ValueError, match="conv2d_dgrad: .*does not match"):
        nc.conv2d_dgrad(d(rand(2, 4, 6, 7)), dw_, dx, *cfg)
    with pytest.raises(ValueError, match="conv2d_dgrad: grad_input .* overlaps"):
        buf = d(rand(2 * 4 * 49))
        nc.conv2d_dgrad(buf.reshape(2, 4, 7, 7), dw_, buf[:2 * 3 * 49].reshape(2, 3, 7, 7), *cfg)
    with pytest.raises(ValueError, match=r"conv2d_wgrad: grad_bias of shape \(5,\)"):
        nc.conv2d_wgrad(dy, dx, d(np.empty_like(w)), d(rand(5)), *cfg)
    with pytest.raises(TypeError, match="conv2d_wgrad: grad_weight .* host"):
        nc.conv2d_wgrad(dy, dx, np.empty_like(w), None, *cfg)
