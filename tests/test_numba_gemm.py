"""matmul / matmul_naive on the Numba CUDA table against kiln._cpu (simulator-sized shapes)."""

import numpy as np
import pytest
from numba import cuda
from numba_helpers import compare, nc

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def operands(ba, bb, bo, m, n, k, trans_a, trans_b, dtype):
    """a, b, out with the given batch sizes (None: 2-D)."""
    sa = (k, m) if trans_a else (m, k)
    sb = (n, k) if trans_b else (k, n)
    a = rand(*((ba,) if ba else ()), *sa, dtype=dtype)
    b = rand(*((bb,) if bb else ()), *sb, dtype=dtype)
    out = np.full((*((bo,) if bo else ()), m, n), np.nan, dtype)  # every element must be written
    return a, b, out


@pytest.mark.parametrize("dtype,trans_a,trans_b", [
    (np.float32, False, False), (np.float32, True, False), (np.float32, False, True),
    (np.float32, True, True), (np.float64, True, False)])
def test_matmul_2d_transposes(dtype, trans_a, trans_b):
    # two ragged 32-wide tiles along M (or N), one ragged along the other; K = 19: a full and
    # a ragged K step
    m, n = (37, 21) if trans_a else (21, 37)
    a, b, out = operands(None, None, None, m, n, 19, trans_a, trans_b, dtype)
    compare("matmul", a, b, out, trans_a=trans_a, trans_b=trans_b, **tol(dtype))


@pytest.mark.parametrize("dtype,activation", [
    (np.float32, "none"), (np.float32, "relu"), (np.float32, "gelu"), (np.float32, "gelu_tanh"),
    (np.float64, "gelu"), (np.float64, "gelu_tanh")])
def test_matmul_bias_activation(dtype, activation):
    a, b, out = operands(None, None, None, 13, 7, 5, False, True, dtype)
    compare("matmul", a, b, out, trans_b=True, bias=rand(7, dtype=dtype), activation=activation,
            **tol(dtype))


@pytest.mark.parametrize("activation", ["relu", "gelu_tanh"])
def test_matmul_activation_without_bias(activation):
    a, b, out = operands(None, None, None, 9, 11, 6, False, False, np.float32)
    compare("matmul", a, b, out, activation=activation)


@pytest.mark.parametrize("dtype,ba,bb", [
    (np.float32, 3, 3), (np.float32, 3, None), (np.float32, None, 3), (np.float32, 1, 3),
    (np.float32, 3, 1), (np.float64, 3, None)])
def test_matmul_batched_and_broadcast(dtype, ba, bb):
    # a 3-D out with 2-D / batch-1 operands broadcast over it; trans on the batched operand
    a, b, out = operands(ba, bb, 3, 9, 6, 7, ba == 3, bb == 3, dtype)
    compare("matmul", a, b, out, trans_a=ba == 3, trans_b=bb == 3, bias=rand(6, dtype=dtype),
            activation="relu", **tol(dtype))


def test_matmul_k_zero_is_activated_bias():
    a, b, out = operands(2, None, 2, 5, 4, 0, False, False, np.float32)
    compare("matmul", a, b, out, bias=rand(4), activation="gelu")
    a, b, out = operands(None, None, None, 5, 4, 0, False, False, np.float64)
    cpu, nb = compare("matmul", a, b, out)
    assert (nb[2] == 0).all()


def test_matmul_empty_output_is_a_no_op():
    a, b, out = operands(None, None, None, 0, 4, 3, False, False, np.float32)
    compare("matmul", a, b, out)


def test_matmul_naive():
    for dtype in (np.float32, np.float64):
        a, b, out = operands(None, None, None, 13, 9, 17, False, False, dtype)
        compare("matmul_naive", a, b, out, **tol(dtype))


def d(x):
    return cuda.to_device(x)


def test_matmul_bad_input():
    a, b, out = d(rand(4, 3)), d(rand(3, 5)), d(rand(4, 5))
    with pytest.raises(TypeError, match="matmul: a of shape .* host"):
        nc.matmul(rand(4, 3), b, out)
    with pytest.raises(TypeError, match="matmul: dtype mismatch"):
        nc.matmul(a, d(rand(3, 5, dtype=np.float64)), out)
    with pytest.raises(TypeError, match="float32 or float64"):
        nc.matmul(d(np.zeros((4, 3), np.int32)), b, out)
    with pytest.raises(ValueError, match=r"inner dimensions differ.*\(4, 3\).*\(4, 5\)"):
        nc.matmul(a, d(rand(4, 5)), out)
    with pytest.raises(ValueError, match=r"inner dimensions differ.*trans_b=True"):
        nc.matmul(a, b, out, trans_b=True)
    with pytest.raises(ValueError, match=r"expected \(4, 5\)"):
        nc.matmul(a, b, d(rand(4, 6)))
    with pytest.raises(ValueError, match="must be 2-D or 3-D"):
        nc.matmul(d(rand(2, 2, 4, 3)), b, out)
    with pytest.raises(ValueError, match="batch dimensions"):
        nc.matmul(d(rand(2, 4, 3)), d(rand(3, 3, 5)), d(rand(3, 4, 5)))
    with pytest.raises(ValueError, match=r"bias of shape \(4,\) must be \(5,\)"):
        nc.matmul(a, b, out, bias=d(rand(4)))
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        nc.matmul(a, b, out, activation="tanh")
    with pytest.raises(ValueError, match="C-contiguous"):
        nc.matmul(d(rand(4, 6))[:, ::2], b, out)
    big = d(rand(5, 5))
    with pytest.raises(ValueError, match="overlaps an input"):
        nc.matmul(big[:, :], big, big)


def test_matmul_naive_bad_input():
    a, b = d(rand(4, 3)), d(rand(3, 5))
    with pytest.raises(ValueError, match="must be 2-D"):
        nc.matmul_naive(d(rand(1, 4, 3)), b, d(rand(4, 5)))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        nc.matmul_naive(a, d(rand(2, 5)), d(rand(4, 5)))
    with pytest.raises(ValueError, match=r"must be \(4, 5\)"):
        nc.matmul_naive(a, b, d(rand(5, 4)))
    with pytest.raises(TypeError, match="host"):
        nc.matmul_naive(a, b, rand(4, 5))


@pytest.mark.parametrize("dtype,trans_a,trans_b", [
    (np.float32, False, False), (np.float32, True, False), (np.float64, False, True)])
def test_matmul_relu_backward(dtype, trans_a, trans_b):
    a, b, out = operands(None, None, None, 9, 11, 13, trans_a, trans_b, dtype)
    x = rand(9, 11, dtype=dtype)
    x[0, :3] = [0.0, np.nan, -1.0]
    cpu, _ = compare("matmul_relu_backward", a, b, out, trans_a, trans_b, x, **tol(dtype))
    assert np.all(cpu[2][x <= 0] == 0.0)
    with pytest.raises(ValueError, match="matmul_relu_backward: x of shape"):
        nc.matmul_relu_backward(d(a), d(b), d(out), trans_a, trans_b, d(rand(11, 9, dtype=dtype)))
