"""cross_entropy (fused kernel) against torch.nn.functional.cross_entropy over its whole
option matrix -- class indices and probabilities, ignore_index, class weights, label
smoothing, every reduction, (N, C, d) inputs -- values and gradients; gradcheck in
float64; stability for logits of +-1e4."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F

from helpers import assert_close

CASES = list(itertools.product(["none", "mean", "sum"], [False, True], [0.0, 0.1], [None, 1]))


def _data(shape, C, seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    tshape = (shape[0],) + tuple(shape[2:]) if len(shape) > 1 else ()
    target = rng.integers(0, C, size=tshape).astype(np.int64)
    if ignore is not None and target.ndim:
        target.reshape(-1)[::3] = ignore
    return logits, target


@pytest.mark.parametrize("reduction,weighted,smoothing,ignore", CASES)
@pytest.mark.parametrize("shape", [(7, 5), (4, 3, 6), (5,)])
def test_class_indices(reduction, weighted, smoothing, ignore, shape):
    C = shape[1] if len(shape) > 1 else shape[0]
    logits, target = _data(shape, C, ignore=ignore)
    w = np.linspace(0.5, 2.0, C).astype(np.float32) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing,
              ignore_index=ignore if ignore is not None else -100)
    kx = kiln.from_numpy(logits).requires_grad_()
    tx = torch.from_numpy(logits.copy()).requires_grad_()
    ko = F.cross_entropy(kx, kiln.from_numpy(target), None if w is None else kiln.from_numpy(w), **kw)
    to = TF.cross_entropy(tx, torch.from_numpy(target), None if w is None else torch.from_numpy(w), **kw)
    assert_close(ko, to, what="loss")
    g = np.random.default_rng(1).standard_normal(tuple(to.shape)).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(kx.grad, tx.grad, what="grad")


@pytest.mark.parametrize("reduction,weighted,smoothing", [c[:3] for c in CASES if c[3] is None])
def test_probability_targets(reduction, weighted, smoothing):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    probs = rng.random((6, 4)).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    w = np.array([1.0, 0.5, 2.0, 1.5], np.float32) if weighted else None
    kx = kiln.from_numpy(logits).requires_grad_()
    tx = torch.from_numpy(logits.copy()).requires_grad_()
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    ko = F.cross_entropy(kx, kiln.from_numpy(probs), None if w is None else kiln.from_numpy(w), **kw)
    to = TF.cross_entropy(tx, torch.from_numpy(probs), None if w is None else torch.from_numpy(w), **kw)
    assert_close(ko, to)
    ko.sum().backward()
    to.sum().backward()
    assert_close(kx.grad, tx.grad)


def test_gradcheck_float64():
    x = kiln.randn(4, 5, dtype=kiln.float64, requires_grad=True)
    t = kiln.tensor([0, 3, -100, 1])
    w = kiln.tensor([1.0, 2.0, 0.5, 1.0, 1.0], dtype=kiln.float64)
    assert kiln.autograd.gradcheck(
        lambda a: F.cross_entropy(a, t, w, label_smoothing=0.2), [x])
    assert kiln.autograd.gradcheck(lambda a: F.cross_entropy(a, t, reduction="none"), [x])


def test_huge_logits_are_stable():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
    target = np.array([1, 2])
    ko = F.cross_entropy(kiln.from_numpy(logits), kiln.from_numpy(target), reduction="none")
    to = TF.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), reduction="none")
    assert np.isfinite(ko.numpy()).all()
    assert_close(ko, to)


def test_all_ignored_mean_is_nan_like_torch():
    x = kiln.randn(3, 4)
    t = kiln.tensor([-100, -100, -100])
    assert np.isnan(F.cross_entropy(x, t).item())
    assert np.isnan(TF.cross_entropy(torch.randn(3, 4), torch.tensor([-100] * 3)).item())


def test_nll_loss_matches_torch():
    rng = np.random.default_rng(3)
    logp = np.log(rng.dirichlet(np.ones(5), size=6)).astype(np.float32)
    t = np.array([0, 4, 2, 2, -100, 1])
    kx = kiln.from_numpy(logp).requires_grad_()
    tx = torch.from_numpy(logp.copy()).requires_grad_()
    ko = F.nll_loss(kx, kiln.from_numpy(t))
    to = TF.nll_loss(tx, torch.from_numpy(t))
    assert_close(ko, to)
    ko.backward()
    to.backward()
    assert_close(kx.grad, tx.grad)
