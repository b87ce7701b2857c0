"""Loss modules against torch.nn's: constructor arguments, values and gradients,
weight / pos_weight buffers in state_dict, repr, legacy reduction arguments."""

import warnings

import numpy as np
import pytest
import torch

import kiln
from kiln import nn

from helpers import assert_close

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 4)).astype(np.float32)
Y = rng.standard_normal((6, 4)).astype(np.float32)
P = rng.uniform(0.05, 0.95, (6, 4)).astype(np.float32)
B = rng.random((6, 4)).astype(np.float32)
C = rng.integers(0, 4, 6)
W = np.array([1.0, 0.5, 2.0, 1.5], np.float32)
LOGP = np.log(rng.dirichlet(np.ones(4), 6)).astype(np.float32)
Q = rng.dirichlet(np.ones(4), 6).astype(np.float32)


def _k(a):
    return kiln.from_numpy(a.copy())


def _t(a):
    return torch.from_numpy(a.copy())


CASES = [
    ("MSELoss", {}, X, Y), ("MSELoss", {"reduction": "sum"}, X, Y),
    ("L1Loss", {"reduction": "none"}, X, Y),
    ("SmoothL1Loss", {"beta": 0.3}, X, Y), ("HuberLoss", {"delta": 0.4, "reduction": "sum"}, X, Y),
    ("BCELoss", {}, P, B), ("BCELoss", {"weight": W}, P, B),
    ("BCEWithLogitsLoss", {"pos_weight": W}, X, B),
    ("BCEWithLogitsLoss", {"weight": W, "reduction": "none"}, X, B),
    ("CrossEntropyLoss", {}, X, C), ("CrossEntropyLoss", {"weight": W, "label_smoothing": 0.1}, X, C),
    ("CrossEntropyLoss", {"ignore_index": 1, "reduction": "sum"}, X, C),
    ("CrossEntropyLoss", {}, X, Q),  # class probabilities
    ("NLLLoss", {"weight": W}, LOGP, C), ("NLLLoss", {"ignore_index": 2}, LOGP, C),
    ("KLDivLoss", {"reduction": "batchmean"}, LOGP, Q),
    ("KLDivLoss", {"reduction": "sum", "log_target": True}, LOGP, np.log(Q)),
]


@pytest.mark.parametrize("name,kw,x,y", CASES)
def test_loss_module_matches_torch(name, kw, x, y):
    kkw = {k: (_k(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    tkw = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    km, tm = getattr(nn, name)(**kkw), getattr(torch.nn, name)(**tkw)
    assert repr(km) == repr(tm)
    assert list(km.state_dict()) == list(tm.state_dict())
    kx, tx = _k(x).requires_grad_(), _t(x).requires_grad_()
    ko, to = km(kx, _k(y)), tm(tx, _t(y))
    assert_close(ko, to)
    ko.sum().backward()
    to.sum().backward()
    assert_close(kx.grad, tx.grad)


def test_cosine_embedding_module():
    km, tm = nn.CosineEmbeddingLoss(margin=0.2), torch.nn.CosineEmbeddingLoss(margin=0.2)
    y = np.array([1, -1, 1, -1, -1, 1])
    k1, k2 = _k(X).requires_grad_(), _k(Y).requires_grad_()
    t1, t2 = _t(X).requires_grad_(), _t(Y).requires_grad_()
    ko, to = km(k1, k2, _k(y)), tm(t1, t2, _t(y))
    assert_close(ko, to)
    ko.backward()
    to.backward()
    assert_close(k1.grad, t1.grad, rtol=1e-4)
    assert_close(k2.grad, t2.grad, rtol=1e-4)
    assert km.margin == 0.2 and km.reduction == "mean"


def test_weight_buffers_follow_the_module():
    m = nn.BCEWithLogitsLoss(pos_weight=kiln.tensor([2.0, 3.0]))
    assert list(m.state_dict()) == ["pos_weight"]
    m.double()
    assert m.pos_weight.dtype == kiln.float64
    assert m.weight is None
    ce = nn.CrossEntropyLoss(weight=kiln.ones(3))
    assert list(dict(ce.named_buffers())) == ["weight"]


def test_legacy_reduction_in_constructor():
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        m = nn.MSELoss(size_average=False)
    assert m.reduction == "sum"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert nn.L1Loss(reduce=False).reduction == torch.nn.L1Loss(reduce=False).reduction
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.MSELoss(reduction="average")(kiln.ones(2), kiln.ones(2))


def test_training_with_loss_module_lowers_loss():
    """Linear regression with nn.Linear + nn.MSELoss and plain gradient steps."""
    kiln.manual_seed(0)
    model, loss_fn = nn.Linear(3, 1), nn.MSELoss()
    x = kiln.randn(64, 3)
    y = x @ kiln.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    losses = []
    for _ in range(50):
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        losses.append(loss.item())
        with kiln.no_grad():
            for p in model.parameters():
                p.data -= 0.1 * p.grad.data
    assert losses[-1] < 0.01 * losses[0]
