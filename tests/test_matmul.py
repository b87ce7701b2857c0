"""matmul through the public API against PyTorch: sizes 1, 3, 17, 1023, all four transpose
combinations (transposed views go to the kernel without copies), broadcast batches,
vectors, and gradients."""

import itertools

import numpy as np
import pytest
import torch

import kiln

from helpers import assert_close

SIZES = [1, 3, 17, 1023]


def _pair(m, k, n, ta, tb, dtype=np.float32):
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    ka, kb = kiln.from_numpy(a), kiln.from_numpy(b)
    if ta:
        ka = ka.T
    if tb:
        kb = kb.T
    return ka, kb, torch.from_numpy(a.T if ta else a), torch.from_numpy(b.T if tb else b)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 1), (17, 3, 1023), (1023, 17, 3),
                                   (1, 1023, 17), (17, 1023, 3), (3, 1, 17), (1023, 1023, 17)])
def test_matmul_sizes_and_transposes(m, k, n, ta, tb):
    ka, kb, a, b = _pair(m, k, n, ta, tb)
    assert ka.is_contiguous() == (not ta or m == 1 or k == 1)
    assert_close(ka @ kb, a @ b, rtol=1e-5, what=f"{m}x{k}x{n} ta={ta} tb={tb}")


def test_matmul_large_square_1023():
    ka, kb, a, b = _pair(1023, 1023, 1023, False, True)
    assert_close(ka @ kb, a @ b, rtol=1e-5)


@pytest.mark.parametrize("sa,sb", [((2, 3, 17, 5), (5, 4)), ((3, 5), (2, 5, 17)),
                                   ((2, 1, 3, 5), (4, 5, 6)), ((1, 3, 5), (7, 1, 5, 2)),
                                   ((5,), (2, 5, 3)), ((2, 3, 5), (5,)), ((5,), (5,)),
                                   ((4, 1, 17), (4, 17, 1))])
def test_matmul_broadcast_batches_with_grad(sa, sb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    ka = kiln.from_numpy(a).requires_grad_()
    kb = kiln.from_numpy(b).requires_grad_()
    ta = torch.from_numpy(a).requires_grad_()
    tb = torch.from_numpy(b).requires_grad_()
    ko, to = ka @ kb, ta @ tb
    assert_close(ko, to)
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(ka.grad, ta.grad, what="grad a")
    assert_close(kb.grad, tb.grad, what="grad b")


def test_matmul_float64_and_gradcheck():
    a = kiln.randn(4, 3, dtype=kiln.float64, requires_grad=True)
    b = kiln.randn(2, 3, 5, dtype=kiln.float64, requires_grad=True)
    assert kiln.autograd.gradcheck(lambda x, y: x @ y, [a, b])
    out = a @ b
    assert out.dtype == kiln.float64
    np.testing.assert_allclose(out.numpy(force=True), a.data @ b.data, rtol=1e-12)


def test_matmul_int64_falls_back_exactly():
    a = kiln.arange(6).reshape(2, 3)
    b = kiln.arange(3).reshape(3, 1)
    np.testing.assert_array_equal((a @ b).numpy(), np.arange(6).reshape(2, 3) @ np.arange(3).reshape(3, 1))


def test_matmul_zero_size():
    a = kiln.zeros(0, 3, requires_grad=True)
    b = kiln.randn(3, 4, requires_grad=True)
    out = a @ b
    assert out.shape == (0, 4)
    out.sum().backward()
    assert b.grad.shape == (3, 4) and not np.any(b.grad.numpy())
    c = kiln.zeros(2, 0) @ kiln.zeros(0, 5)
    np.testing.assert_array_equal(c.numpy(), np.zeros((2, 5), np.float32))


def test_matmul_double_backward():
    a = kiln.randn(3, 4, dtype=kiln.float64, requires_grad=True)
    b = kiln.randn(4, 2, dtype=kiln.float64, requires_grad=True)
    (ga,) = kiln.autograd.grad((a @ b).pow(2).sum(), [a], create_graph=True)
    ga.sum().backward()
    ta = torch.from_numpy(a.data.copy()).requires_grad_()
    tb = torch.from_numpy(b.data.copy()).requires_grad_()
    (tga,) = torch.autograd.grad((ta @ tb).pow(2).sum(), [ta], create_graph=True)
    tga.sum().backward()
    assert_close(b.grad, tb.grad, rtol=1e-10)


@pytest.mark.parametrize("act,ref", [("relu", torch.relu), ("gelu", torch.nn.functional.gelu),
                                     ("gelu_tanh", lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
                                     (None, lambda t: t)])
@pytest.mark.parametrize("shape", [(1, 3), (17, 33), (4, 5, 64)])
def test_linear_fused_epilogue_inference(act, ref, shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((19, shape[-1])).astype(np.float32)
    b = rng.standard_normal(19).astype(np.float32)
    with kiln.no_grad():
        out = kiln.nn.functional.linear(kiln.from_numpy(x), kiln.from_numpy(w), kiln.from_numpy(b),
                                        activation=act)
    expect = ref(torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)))
    assert_close(out, expect)


def test_no_graph_fast_path_matches_torch_and_records_nothing():
    """With nothing to differentiate, matmul skips the graph node: same values, no grad_fn;
    anomaly mode still checks the output."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((64, 64)).astype(np.float32), rng.standard_normal((64, 64))
    b = b.astype(np.float32)
    ka, kb = kiln.from_numpy(a), kiln.from_numpy(b)
    out = ka @ kb
    assert out.grad_fn is None and not out.requires_grad
    assert_close(out, torch.from_numpy(a) @ torch.from_numpy(b), rtol=1e-5)
    kw = kiln.from_numpy(b).requires_grad_()
    with kiln.no_grad():
        out = ka @ kw
    assert out.grad_fn is None and not out.requires_grad
    assert (ka @ kw).requires_grad  # and with grad enabled the node is recorded
    bad = kiln.from_numpy(np.full((2, 2), np.inf, np.float32))
    with kiln.autograd.detect_anomaly(), pytest.raises(RuntimeError, match="matmul"):
        bad @ bad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 64, 64, 64), (3, 1, 5, 2), (5, 17, 3, 33)])
def test_bmm_equal_batches(dtype, shape):
    """3-D operands with equal batches (the direct kernel call), contiguous and transposed."""
    bt, m, k, n = shape
    rng = np.random.default_rng(bt + m + k + n)
    a = rng.standard_normal((bt, m, k)).astype(dtype)
    b = rng.standard_normal((bt, k, n)).astype(dtype)
    ref = torch.from_numpy(a) @ torch.from_numpy(b)
    assert_close(kiln.bmm(kiln.from_numpy(a), kiln.from_numpy(b)), ref, rtol=1e-5)
    at = kiln.from_numpy(np.ascontiguousarray(np.swapaxes(a, 1, 2))).transpose(1, 2)
    assert_close(kiln.matmul(at, kiln.from_numpy(b)), ref, rtol=1e-5)
    with pytest.raises(TypeError, match="dtype"):
        other = np.float64 if dtype is np.float32 else np.float32
        kiln.matmul(kiln.from_numpy(a), kiln.from_numpy(b.astype(other)))
