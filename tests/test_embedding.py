"""embedding (compiled kernels) against torch.nn.functional.embedding: values and weight
gradients with duplicate indices, padding_idx (also negative), scale_grad_by_freq,
max_norm (in-place renorm, every norm_type), any index shape, float64 gradcheck, threads,
bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F

from helpers import assert_close


def _compare(idx, V=11, E=7, dtype=np.float32, **kw):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((V, E)).astype(dtype)
    kw_ = kiln.tensor(w, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ko = F.embedding(kiln.from_numpy(idx), kw_, **kw)
    to = TF.embedding(torch.from_numpy(idx), tw, **kw)
    assert_close(ko, to, rtol=1e-6)
    g = rng.standard_normal(tuple(to.shape)).astype(dtype)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(kw_.grad, tw.grad, rtol=1e-6)
    return kw_, tw


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (0,)])
def test_values_and_grads(shape):
    idx = np.random.default_rng(1).integers(0, 11, shape).astype(np.int64)
    _compare(idx)


def test_duplicates_accumulate():
    idx = np.array([[3, 3, 3, 1], [1, 3, 0, 3]], np.int64)
    kw, tw = _compare(idx)
    assert np.abs(kw.grad.numpy()[3]).sum() > 0


@pytest.mark.parametrize("padding_idx", [0, 3, -8])
@pytest.mark.parametrize("freq", [False, True])
def test_padding_and_freq(padding_idx, freq):
    idx = np.array([[3, 3, 0, 1], [1, 3, 0, 5]], np.int64)
    kw, _ = _compare(idx, padding_idx=padding_idx, scale_grad_by_freq=freq)
    assert (kw.grad.numpy()[padding_idx] == 0).all()


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, float("inf")])
def test_max_norm(norm_type):
    idx = np.array([0, 2, 2, 5], np.int64)
    kw, tw = _compare(idx, max_norm=1.0, norm_type=norm_type)
    assert_close(kw.detach(), tw.detach(), rtol=1e-6)  # weights renormalised in place alike


def test_large_threaded():
    kiln.set_num_threads(2)
    idx = np.random.default_rng(2).integers(0, 1000, (64, 512)).astype(np.int64)
    _compare(idx, V=1000, E=64)


def test_gradcheck_float64():
    w = kiln.tensor(np.random.default_rng(3).standard_normal((6, 3)), requires_grad=True)
    idx = kiln.tensor([[1, 4, 1], [0, 5, 5]])
    assert kiln.autograd.gradcheck(lambda a: F.embedding(idx, a), [w])  # padding_idx / freq: not true derivatives


def test_bad_input():
    w = kiln.randn(5, 3)
    with pytest.raises(IndexError, match="embedding.*out of range"):
        F.embedding(kiln.tensor([1, 5]), w)
    with pytest.raises(IndexError, match="embedding.*out of range"):
        F.embedding(kiln.tensor([-1]), w)
    with pytest.raises(TypeError, match="embedding.*integer"):
        F.embedding(kiln.tensor([1.0]), w)
    with pytest.raises(ValueError, match="embedding.*2-d"):
        F.embedding(kiln.tensor([1]), kiln.randn(5))
    with pytest.raises(ValueError, match="padding_idx"):
        F.embedding(kiln.tensor([1]), w, padding_idx=5)
    with pytest.raises(NotImplementedError, match="sparse"):
        F.embedding(kiln.tensor([1]), w, sparse=True)
