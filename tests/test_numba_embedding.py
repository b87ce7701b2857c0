"""embedding / embedding_backward / embedding_renorm on the Numba CUDA table against kiln._cpu."""

import numpy as np
import pytest
from numba import cuda
from numba_helpers import compare, nc

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


# 2-D indices with repeats, a never-used row (9), row 0 and the last row (10)
IDX = np.array([[3, 0, 7, 3], [10, 3, 2, 0], [5, 7, 3, 1]], np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding(dtype):
    w = rand(11, 5, dtype=dtype)
    compare("embedding", w, IDX, np.full((IDX.size, 5), np.nan, dtype), rtol=0, atol=0)


@pytest.mark.parametrize("dtype,padding_idx,scale", [
    (np.float32, -1, False), (np.float32, 3, False), (np.float32, -1, True),
    (np.float64, 0, True)])
def test_embedding_backward(dtype, padding_idx, scale):
    # E = 70 > the 64 threads of a block: two column passes; N = 12 < 64 and below a 2nd chunk
    g = rand(IDX.size, 70, dtype=dtype)
    compare("embedding_backward", g, IDX, np.full((11, 70), np.nan, dtype), padding_idx, scale,
            **tol(dtype))


def test_embedding_backward_many_indices():
    # N = 150: three chunks of staged indices, the last ragged
    idx = RNG.integers(0, 6, size=150).astype(np.int64)
    compare("embedding_backward", rand(150, 3), idx, np.full((6, 3), np.nan, np.float32), 2, True)


@pytest.mark.parametrize("dtype,norm_type", [
    (np.float32, 2.0), (np.float64, 1.0), (np.float32, float("inf")), (np.float64, 3.0)])
def test_embedding_renorm(dtype, norm_type):
    # rows of growing norm: some are above max_norm, some below; E = 70 spans two strides
    w = rand(11, 70, dtype=dtype) * np.linspace(0.01, 0.3, 11, dtype=dtype)[:, None]
    max_norm = {1.0: 8.0, 2.0: 1.0, 3.0: 0.6, float("inf"): 0.4}[norm_type]
    cpu, nb = compare("embedding_renorm", w, IDX, max_norm, norm_type, **tol(dtype))
    changed = ~np.isclose(nb[0], w).all(axis=1)
    assert changed.any() and not changed.all()  # the test exercises both branches
    assert not changed[9]  # never indexed


def test_embedding_renorm_scales_a_repeated_row_once():
    w = np.full((4, 3), 2.0, np.float32)
    idx = np.array([1, 1, 1, 2, 1], np.int64)
    cpu, nb = compare("embedding_renorm", w, idx, 1.0, 2.0)
    np.testing.assert_allclose(np.linalg.norm(nb[0][1]), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(nb[0][0], w[0])


def test_embedding_empty_indices():
    idx = np.zeros((0,), np.int64)
    compare("embedding", rand(4, 3), idx, np.zeros((0, 3), np.float32))
    cpu, nb = compare("embedding_backward", rand(0, 3), idx, np.full((4, 3), np.nan, np.float32),
                      -1, True)
    assert (nb[2] == 0).all()


def d(a):
    return cuda.to_device(a)


def test_embedding_bad_input():
    w, idx = d(rand(11, 5)), d(IDX)
    out = d(rand(12, 5))
    with pytest.raises(IndexError, match="embedding: index 11 is out of range for a weight of "
                                         "11 rows"):
        nc.embedding(w, d(np.array([1, 11, -1], np.int64)), out)
    with pytest.raises(IndexError, match="embedding_backward: index -1 is out of range"):
        nc.embedding_backward(out, d(np.array([-1, 2, 40], np.int64)), w, -1, False)
    with pytest.raises(IndexError, match="embedding_renorm: index 11"):
        nc.embedding_renorm(w, d(np.array([11], np.int64)), 1.0, 2.0)
    with pytest.raises(TypeError, match=r"indices of shape \(3, 4\) and dtype int32 must be int64"):
        nc.embedding(w, d(IDX.astype(np.int32)), out)
    with pytest.raises(TypeError, match="embedding: indices .* host"):
        nc.embedding(w, IDX, out)
    with pytest.raises(TypeError, match="float32 or float64"):
        nc.embedding(d(np.zeros((11, 5), np.int64)), idx, out)
    with pytest.raises(TypeError, match="dtype mismatch"):
        nc.embedding(w, idx, d(rand(12, 5, dtype=np.float64)))
    with pytest.raises(ValueError, match=r"out of shape \(12, 4\) .* must have shape \(12, 5\)"):
        nc.embedding(w, idx, d(rand(12, 4)))
    with pytest.raises(ValueError, match="weight of shape .* must be 2-d"):
        nc.embedding(d(rand(11, 5, 1)), idx, out)
    with pytest.raises(ValueError, match=r"grad_out of shape \(11, 5\)"):
        nc.embedding_backward(d(rand(11, 5)), idx, w, -1, False)
