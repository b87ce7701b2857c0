"""kiln._cpu.matmul_relu_backward: out = relu_backward(op(a) @ op(b), x), the mask applied in
the GEMM's write-back. Oracle: NumPy float64 product masked with x <= 0 -> 0 (the
relu_backward kernel's rule: a NaN x passes the product). Every instruction-set path."""

import numpy as np
import pytest

from kiln import _cpu

_RANK = {"scalar": 0, "avx2": 1, "avx512": 2}


@pytest.fixture(params=["avx512", "avx2", "scalar"])
def isa(request):
    if _RANK[request.param] > _RANK[_cpu.supported_isa()]:
        pytest.skip(f"CPU does not support {request.param}")
    before = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(before)


def _case(rng, m, k, n, trans_a, trans_b, dtype, batch=None):
    lead = (batch,) if batch else ()
    a = rng.standard_normal(lead + ((k, m) if trans_a else (m, k))).astype(dtype)
    b = rng.standard_normal(lead + ((n, k) if trans_b else (k, n))).astype(dtype)
    x = rng.standard_normal(lead + (m, n)).astype(dtype)
    x.flat[:: 7] = 0.0  # relu's subgradient at 0 is 0
    if x.size > 3:
        x.flat[3] = np.nan  # passes the product, like relu_backward
    return a, b, x


def _want(a, b, x, trans_a, trans_b):
    op_a = np.swapaxes(a, -1, -2) if trans_a else a
    op_b = np.swapaxes(b, -1, -2) if trans_b else b
    p = op_a.astype(np.float64) @ op_b.astype(np.float64)
    return np.where(x <= 0, 0.0, p), np.abs(op_a).astype(np.float64) @ np.abs(op_b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(128, 10, 128), (128, 128, 256), (37, 513, 29), (5, 7, 3),
                                   (300, 900, 200), (16, 16, 10), (1, 1, 1), (3, 0, 4)])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)])
def test_matches_masked_product(isa, dtype, shape, trans):
    rng = np.random.default_rng(sum(shape))
    a, b, x = _case(rng, *shape, *trans, dtype)
    out = np.full(x.shape, np.nan, dtype)  # every element must be written
    _cpu.matmul_relu_backward(a, b, out, *trans, x)
    want, scale = _want(a, b, x, *trans)
    tol = (1e-5 if dtype == np.float32 else 1e-13) * (scale + 1.0)
    assert np.all(np.abs(out - want) <= tol)
    assert np.all(out[x <= 0] == 0.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_and_threads_match_one_thread_bitwise(threads):
    rng = np.random.default_rng(3)
    a, b, x = _case(rng, 70, 96, 130, False, True, np.float32, batch=3)
    before = _cpu.get_num_threads()
    try:
        outs = []
        for t in (1, threads):
            _cpu.set_num_threads(t)
            out = np.empty(x.shape, np.float32)
            _cpu.matmul_relu_backward(a, b, out, False, True, x)
            outs.append(out)
    finally:
        _cpu.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    ref = np.empty(x.shape, np.float32)
    _cpu.matmul(a, b, ref, False, True)
    g = np.empty_like(ref)
    _cpu.relu_backward(ref, x, g)
    np.testing.assert_array_equal(outs[0], g)  # same GEMM, same mask: same bits


def _bad():
    f4 = np.float32
    a, b, out, x = np.ones((3, 4), f4), np.ones((4, 2), f4), np.zeros((3, 2), f4), np.ones((3, 2), f4)
    buf = np.zeros(12, f4)
    return [
        ("x shape", ValueError, (a, b, out, False, False, np.ones((2, 3), f4))),
        ("x dtype", TypeError, (a, b, out, False, False, x.astype(np.float64))),
        ("x non-contiguous", ValueError, (a, b, out, False, False, np.ones((2, 3), f4).T)),
        ("inner", ValueError, (a, np.ones((5, 2), f4), out, False, False, x)),
        ("out aliases x", ValueError, (a, b, buf[:6].reshape(3, 2), False, False,
                                        buf[3:9].reshape(3, 2))),
    ]


@pytest.mark.parametrize("case", _bad(), ids=lambda c: c[0])
def test_bad_inputs_raise(case):
    _, exc, args = case
    with pytest.raises(exc, match="matmul_relu_backward"):
        _cpu.matmul_relu_backward(*args)
