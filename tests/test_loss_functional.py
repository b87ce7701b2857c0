"""Losses of kiln.nn.functional against torch.nn.functional: values and gradients (of
input and target) for every reduction, weights, pos_weight, broadcasting (with
PyTorch's warning) and its errors, legacy size_average/reduce, float64 gradcheck,
and numerical edge cases (saturated probabilities, huge logits, empty inputs)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kiln
import kiln.nn.functional as F

from helpers import assert_close

REDS = ["none", "mean", "sum"]


def _pair(kx, tx, seed=0):
    """Backward through a random upstream gradient of the loss's shape."""
    g = np.random.default_rng(seed).standard_normal(tuple(tx.shape)).astype(
        np.float32 if tx.dtype == torch.float32 else np.float64)
    kx.backward(kiln.from_numpy(g))
    tx.backward(torch.from_numpy(g))


def _tensors(*arrays, grad=True):
    ks = [kiln.from_numpy(a.copy()).requires_grad_(grad) for a in arrays]
    ts = [torch.from_numpy(a.copy()).requires_grad_(grad) for a in arrays]
    return ks, ts


def _check(kfn, tfn, arrays, grad=True, rtol=1e-5):
    ks, ts = _tensors(*arrays, grad=grad)
    ko, to = kfn(*ks), tfn(*ts)
    assert_close(ko, to, rtol=rtol, what="loss")
    if grad:
        _pair(ko, to)
        for i, (k, t) in enumerate(zip(ks, ts)):
            assert_close(k.grad, t.grad, rtol=rtol, what=f"grad {i}")
    return ko


rng = np.random.default_rng(0)
X = (rng.standard_normal((6, 5)) * 2).astype(np.float32)
T = (rng.standard_normal((6, 5)) * 2).astype(np.float32)
T[0, :3] = X[0, :3]  # d == 0 exactly: sign(0) = 0 in every gradient


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("name,kw", [
    ("mse_loss", {}), ("l1_loss", {}),
    ("smooth_l1_loss", {}), ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0}),
    ("huber_loss", {}), ("huber_loss", {"delta": 2.5}),
])
def test_regression_losses(name, kw, reduction):
    _check(lambda a, b: getattr(F, name)(a, b, reduction=reduction, **kw),
           lambda a, b: getattr(TF, name)(a, b, reduction=reduction, **kw), [X, T])


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_regression_weight(name, reduction):
    w = rng.random((6, 5)).astype(np.float32)
    kw_, tw = kiln.from_numpy(w), torch.from_numpy(w)
    _check(lambda a, b: getattr(F, name)(a, b, reduction=reduction, weight=kw_),
           lambda a, b: getattr(TF, name)(a, b, reduction=reduction, weight=tw), [X, T])


def test_regression_weight_wrong_size():
    with pytest.raises(ValueError, match="mse_loss: Weights and input must have the same size"):
        F.mse_loss(kiln.ones(3, 2), kiln.ones(3, 2), weight=kiln.ones(2))


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
@pytest.mark.parametrize("si,st", [((4, 1), (4, 3)), ((4, 3), (3,)), ((1,), (2, 3))])
def test_regression_broadcast_warns_like_torch(name, si, st):
    a = rng.standard_normal(si).astype(np.float32)
    b = rng.standard_normal(st).astype(np.float32)
    with pytest.warns(UserWarning, match="different to the input size"):
        _check(lambda p, q: getattr(F, name)(p, q), lambda p, q: getattr(TF, name)(p, q), [a, b])


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div"])
def test_regression_not_broadcastable(name):
    with pytest.raises(RuntimeError):
        getattr(TF, name)(torch.ones(2, 3), torch.ones(4))
    with pytest.raises(ValueError, match=rf"{name}: input of shape \(2, 3\) and target of shape "
                                         r"\(4,\) cannot be broadcast"):
        getattr(F, name)(kiln.ones(2, 3), kiln.ones(4))


def test_regression_bad_args():
    with pytest.raises(ValueError, match="negative values for beta"):
        F.smooth_l1_loss(kiln.ones(2), kiln.ones(2), beta=-1.0)
    with pytest.raises(ValueError, match="non-positive values for delta"):
        F.huber_loss(kiln.ones(2), kiln.ones(2), delta=0.0)
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        F.mse_loss(kiln.ones(2), kiln.ones(2), reduction="avg")
    with pytest.raises(TypeError, match="l1_loss: target must be a floating point"):
        F.l1_loss(kiln.ones(2), kiln.tensor([1, 2]))
    with pytest.raises(TypeError, match="mse_loss: target must be a Tensor"):
        F.mse_loss(kiln.ones(2), [1.0, 2.0])
    with pytest.raises(TypeError, match="same dtype"):
        F.mse_loss(kiln.ones(2), kiln.ones(2, dtype=kiln.float64))


@pytest.mark.parametrize("size_average,reduce", [(False, None), (None, False), (True, True)])
def test_legacy_reduction_args(size_average, reduce):
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ko = F.mse_loss(kiln.from_numpy(X), kiln.from_numpy(T), size_average, reduce)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to = TF.mse_loss(torch.from_numpy(X), torch.from_numpy(T), size_average, reduce)
    assert_close(ko, to)


def test_empty_mean_is_nan():
    e = kiln.zeros(0)
    assert np.isnan(F.mse_loss(e, e).item()) and F.l1_loss(e, e, reduction="sum").item() == 0
    assert np.isnan(F.binary_cross_entropy(e, e).item())
    assert np.isnan(F.binary_cross_entropy_with_logits(e, e).item())


# ---- binary cross-entropy ------------------------------------------------------
P = rng.uniform(0.02, 0.98, (6, 5)).astype(np.float32)
Y = rng.random((6, 5)).astype(np.float32)  # soft labels; gradients of the target too


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("wshape", [None, (6, 5), (5,), (6, 1)])
def test_bce(reduction, wshape):
    w = None if wshape is None else rng.random(wshape).astype(np.float32) + 0.5
    kw_ = None if w is None else kiln.from_numpy(w)
    tw = None if w is None else torch.from_numpy(w)
    _check(lambda a, b: F.binary_cross_entropy(a, b, kw_, reduction=reduction),
           lambda a, b: TF.binary_cross_entropy(a, b, tw, reduction=reduction), [P, Y])


def test_bce_saturated_probabilities_clamp_log_like_torch():
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.3], np.float32)
    kx, tx = kiln.from_numpy(p.copy()).requires_grad_(), torch.from_numpy(p.copy()).requires_grad_()
    ko = F.binary_cross_entropy(kx, kiln.from_numpy(y), reduction="none")
    to = TF.binary_cross_entropy(tx, torch.from_numpy(y), reduction="none")
    assert_close(ko, to)
    assert ko.data[2] == 100.0  # log(0) clamped to -100
    ko.sum().backward()
    to.sum().backward()
    assert_close(kx.grad, tx.grad, rtol=1e-5)
    assert np.isfinite(kx.grad.data).all()


def test_bce_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(kiln.tensor([0.5, 1.5]), kiln.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(kiln.tensor([0.5, float("nan")]), kiln.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target size \(2, 1\) must be the same as input size"):
        F.binary_cross_entropy(kiln.ones(2) * 0.5, kiln.ones(2, 1))
    with pytest.raises(ValueError, match=r"weight of shape \(3,\) cannot be broadcast"):
        F.binary_cross_entropy(kiln.ones(2) * 0.5, kiln.ones(2), kiln.ones(3))
    w = kiln.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        F.binary_cross_entropy(kiln.ones(2) * 0.5, kiln.ones(2), w)


L = (rng.standard_normal((6, 5)) * 4).astype(np.float32)


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("wshape,pshape", [(None, None), ((6, 5), None), (None, (5,)),
                                           ((5,), (5,)), ((6, 1), (1, 5)), (None, ())])
def test_bce_with_logits(reduction, wshape, pshape):
    w = None if wshape is None else rng.random(wshape).astype(np.float32) + 0.5
    p = None if pshape is None else np.asarray(rng.random(pshape) * 3, np.float32)
    kw = dict(weight=None if w is None else kiln.from_numpy(w),
              pos_weight=None if p is None else kiln.from_numpy(p))
    tw = dict(weight=None if w is None else torch.from_numpy(w),
              pos_weight=None if p is None else torch.from_numpy(p))
    _check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw),
           lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction=reduction, **tw),
           [L, Y])


def test_bce_with_logits_pos_weight_broadcasts_over_last_dim():
    """pos_weight (C,) against (N, H, C): one weight per class, as in PyTorch."""
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    y = (rng.random((3, 4, 5)) > 0.5).astype(np.float32)
    p = np.arange(1, 6, dtype=np.float32)
    _check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=kiln.from_numpy(p)),
           lambda a, b: TF.binary_cross_entropy_with_logits(a, b, pos_weight=torch.from_numpy(p)),
           [x, y])
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\) cannot be broadcast to "
                                         r"the input's shape \(3, 4, 5\)"):
        F.binary_cross_entropy_with_logits(kiln.from_numpy(x), kiln.from_numpy(y),
                                           pos_weight=kiln.ones(4))


def test_bce_with_logits_huge_logits_are_stable():
    x = np.array([1e4, -1e4, 80.0, -80.0, 0.0], np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5], np.float32)
    p = np.array([2.0], np.float32)
    for kw, tw in [({}, {}), ({"pos_weight": kiln.from_numpy(p)},
                             {"pos_weight": torch.from_numpy(p)})]:
        ko = _check(lambda a, b, kw=kw: F.binary_cross_entropy_with_logits(
                        a, b, reduction="none", **kw),
                    lambda a, b, tw=tw: TF.binary_cross_entropy_with_logits(
                        a, b, reduction="none", **tw),
                    [x, y])
        assert np.isfinite(ko.data).all()


def test_bce_with_logits_errors():
    with pytest.raises(ValueError, match=r"target size \(3,\) must be the same as input size "
                                         r"\(3, 1\)"):
        F.binary_cross_entropy_with_logits(kiln.ones(3, 1), kiln.ones(3))
    pw = kiln.ones(1, requires_grad=True)
    with pytest.raises(RuntimeError, match="argument 'pos_weight'"):
        F.binary_cross_entropy_with_logits(kiln.ones(3), kiln.ones(3), pos_weight=pw)


# ---- kl_div, cosine_embedding_loss, nll_loss -------------------------------------
@pytest.mark.parametrize("reduction", REDS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    logp = np.log(rng.dirichlet(np.ones(5), 6)).astype(np.float32)
    q = rng.dirichlet(np.ones(5), 6).astype(np.float32)
    q[0, 1] = 0.0  # 0 log 0 = 0
    tgt = np.log(q + 1e-3).astype(np.float32) if log_target else q
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'mean' warns in both
        ks, ts = _tensors(logp, tgt)
        ks[1].requires_grad_(log_target)  # torch's target grad at q == 0 is NaN
        ts[1].requires_grad_(log_target)
        ko = F.kl_div(ks[0], ks[1], reduction=reduction, log_target=log_target)
        to = TF.kl_div(ts[0], ts[1], reduction=reduction, log_target=log_target)
    assert_close(ko, to)
    _pair(ko, to)
    assert_close(ks[0].grad, ts[0].grad)
    if log_target:
        assert_close(ks[1].grad, ts[1].grad)


def test_kl_div_mean_warns_and_broadcasts():
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(kiln.zeros(2, 3), kiln.ones(2, 3))
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.random(3).astype(np.float32)
    _check(lambda p, q: F.kl_div(p, q, reduction="sum"), lambda p, q: TF.kl_div(p, q, reduction="sum"),
           [a, b])
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.kl_div(kiln.zeros(2), kiln.zeros(2), reduction="batch")


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
def test_cosine_embedding(reduction, margin):
    a = rng.standard_normal((7, 4)).astype(np.float32)
    b = rng.standard_normal((7, 4)).astype(np.float32)
    b[2] = 0.0  # zero vector: the 1e-12 eps keeps it finite
    y = np.array([1, -1, 1, -1, -1, 1, 0])
    ky, ty = kiln.from_numpy(y), torch.from_numpy(y)
    _check(lambda p, q: F.cosine_embedding_loss(p, q, ky, margin=margin, reduction=reduction),
           lambda p, q: TF.cosine_embedding_loss(p, q, ty, margin=margin, reduction=reduction),
           [a, b], rtol=1e-4)
    # 0-d target with 1-D inputs
    _check(lambda p, q: F.cosine_embedding_loss(p, q, kiln.tensor(-1), margin=margin),
           lambda p, q: TF.cosine_embedding_loss(p, q, torch.tensor(-1), margin=margin),
           [a[0], b[0]], rtol=1e-4)


def test_cosine_embedding_errors():
    with pytest.raises(ValueError, match="1D target tensor expects 2D input tensors"):
        F.cosine_embedding_loss(kiln.ones(3), kiln.ones(3), kiln.ones(3))
    with pytest.raises(ValueError, match="multi-target not supported"):
        F.cosine_embedding_loss(kiln.ones(3, 2), kiln.ones(3, 2), kiln.ones(3, 1))
    with pytest.raises(ValueError, match="sizes do not match"):
        F.cosine_embedding_loss(kiln.ones(3, 2), kiln.ones(3, 4), kiln.ones(3))


@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 5), (2, 4, 3, 2), (4,)])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(reduction, shape, weighted):
    C = shape[1] if len(shape) > 1 else shape[0]
    logp = np.log(rng.dirichlet(np.ones(C), int(np.prod(shape)) // C)).astype(np.float32)
    logp = np.moveaxis(logp.reshape((shape[0],) + shape[2:] + (C,)), -1, 1) if len(shape) > 1 \
        else logp.reshape(C)
    logp = np.ascontiguousarray(logp)
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    t = rng.integers(0, C, tshape).astype(np.int64)
    if t.ndim:
        t.reshape(-1)[::4] = 2  # ignore_index
    w = np.linspace(0.5, 2, C).astype(np.float32) if weighted else None
    kw = dict(reduction=reduction, ignore_index=2,
              weight=None if w is None else kiln.from_numpy(w))
    tw = dict(reduction=reduction, ignore_index=2,
              weight=None if w is None else torch.from_numpy(w))
    kt, tt = kiln.from_numpy(t), torch.from_numpy(t)
    _check(lambda a: F.nll_loss(a, kt, **kw), lambda a: TF.nll_loss(a, tt, **tw), [logp])


def test_nll_loss_errors():
    with pytest.raises(ValueError, match=r"nll_loss: expected target of shape \(3,\)"):
        F.nll_loss(kiln.zeros(3, 4), kiln.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"weight must be a tensor of shape \(4,\)"):
        F.nll_loss(kiln.zeros(3, 4), kiln.tensor([0, 1, 2]), kiln.ones(3))
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes"):
        F.nll_loss(kiln.zeros(3, 4), kiln.tensor([0, 1, 4]))
    with pytest.raises(TypeError, match="int64 class indices"):
        F.nll_loss(kiln.zeros(3, 4), kiln.zeros(3))


# ---- float64 gradchecks ------------------------------------------------------------
def _f64(*shape, lo=None, hi=None, grad=True):
    if lo is not None:
        a = rng.uniform(lo, hi, shape)
    else:
        a = rng.standard_normal(shape)
    return kiln.from_numpy(a).requires_grad_(grad)


@pytest.mark.parametrize("fn", [
    lambda a, b: F.mse_loss(a, b),
    lambda a, b: F.l1_loss(a, b, reduction="sum"),
    lambda a, b: F.smooth_l1_loss(a, b, beta=0.7, reduction="none"),
    lambda a, b: F.huber_loss(a, b, delta=0.6),
    lambda a, b: F.mse_loss(a, b, weight=kiln.from_numpy(np.linspace(0.1, 1, 12).reshape(3, 4))),
    lambda a, b: F.kl_div(a, b.exp(), reduction="batchmean"),
    lambda a, b: F.kl_div(a, b, reduction="sum", log_target=True),
    lambda a, b: F.binary_cross_entropy_with_logits(
        a, b.sigmoid(), pos_weight=kiln.tensor([1.0, 2.0, 0.5, 3.0], dtype=kiln.float64)),
    lambda a, b: F.binary_cross_entropy(a.sigmoid(), b.sigmoid(),
                                        kiln.tensor([1.0, 2.0, 0.5, 3.0], dtype=kiln.float64)),
    lambda a, b: F.cosine_embedding_loss(a, b, kiln.tensor([1, -1, 1]), margin=-0.5),
])
def test_gradcheck(fn):
    a, b = _f64(3, 4), _f64(3, 4)
    assert kiln.autograd.gradcheck(fn, [a, b])


def test_second_derivative_through_losses():
    """create_graph: the backward formulas are kiln ops, so they differentiate again."""
    for fn, tfn in [(F.mse_loss, TF.mse_loss), (F.binary_cross_entropy_with_logits,
                                                TF.binary_cross_entropy_with_logits),
                    (F.smooth_l1_loss, TF.smooth_l1_loss)]:
        a = rng.standard_normal((3, 4))
        b = rng.random((3, 4))
        ka, ta = kiln.from_numpy(a.copy()).requires_grad_(), torch.from_numpy(a.copy()).requires_grad_()
        (kg,) = kiln.autograd.grad(fn(ka * ka, kiln.from_numpy(b)), [ka], create_graph=True)
        (tg,) = torch.autograd.grad(tfn(ta * ta, torch.from_numpy(b)), [ta], create_graph=True)
        (kg * kg).sum().backward()
        (tg * tg).sum().backward()
        assert_close(ka.grad, ta.grad, rtol=1e-6)

