"""nn.MultiheadAttention and nn.Embedding against torch with copied weights (state_dict):
outputs, attention weights and parameter gradients, train (dropout=0) and eval mode."""

import numpy as np
import pytest
import torch

import kiln
from kiln import nn

from helpers import assert_close


def _copy(km, tm):
    sd = {k: kiln.from_numpy(v.detach().numpy().copy()) for k, v in tm.state_dict().items()}
    assert set(sd) == set(km.state_dict()), (set(sd), set(km.state_dict()))
    km.load_state_dict(sd)


CASES = [
    dict(batch_first=True),
    dict(batch_first=False),
    dict(batch_first=True, kdim=6, vdim=10),
    dict(batch_first=False, bias=False),
]


@pytest.mark.parametrize("cfg", CASES)
@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "causal"])
@pytest.mark.parametrize("train", [True, False])
def test_multihead_attention(cfg, need_weights, average, masks, train):
    E, H, N, L, S = 16, 4, 3, 7, 9
    kw = dict(cfg)
    tm = torch.nn.MultiheadAttention(E, H, dropout=0.0, **kw)
    km = nn.MultiheadAttention(E, H, dropout=0.0, **kw)
    _copy(km, tm)
    km.train(train)
    tm.train(train)
    rng = np.random.default_rng(0)
    kd, vd = kw.get("kdim", E), kw.get("vdim", E)
    bf = kw["batch_first"]
    shp = (lambda n, t, e: (n, t, e)) if bf else (lambda n, t, e: (t, n, e))
    arrs = [rng.standard_normal(shp(N, L, E)), rng.standard_normal(shp(N, S, kd)),
            rng.standard_normal(shp(N, S, vd))]
    arrs = [a.astype(np.float32) for a in arrs]
    margs = {}
    if masks == "bool":
        kp = rng.random((N, S)) < 0.3
        kp[:, 0] = False
        am = rng.random((L, S)) < 0.2
        am[:, 1] = False
        margs = dict(key_padding_mask=kp, attn_mask=am)
    elif masks == "float":
        margs = dict(attn_mask=rng.standard_normal((N * H, L, S)).astype(np.float32))
    elif masks == "causal":
        margs = dict(attn_mask=np.triu(np.ones((L, S), bool), 1), is_causal=True)
    kin = [kiln.tensor(a, requires_grad=True) for a in arrs]
    tin = [torch.tensor(a, requires_grad=True) for a in arrs]
    ko, kwt = km(*kin, need_weights=need_weights, average_attn_weights=average,
                 **{k: kiln.from_numpy(v) if isinstance(v, np.ndarray) else v
                    for k, v in margs.items()})
    to, twt = tm(*tin, need_weights=need_weights, average_attn_weights=average,
                 **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                    for k, v in margs.items()})
    assert_close(ko, to, rtol=1e-5, what="out")
    if need_weights:
        assert_close(kwt, twt, rtol=1e-5, what="weights")
    else:
        assert kwt is None and twt is None
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    kp_ = dict(km.named_parameters())
    for name, p in tm.named_parameters():
        assert_close(kp_[name].grad, p.grad, rtol=1e-5, what=name)
    for a, b in zip(kin, tin):
        assert_close(a.grad, b.grad, rtol=1e-5, what="input grad")


def test_unbatched_and_errors():
    tm = torch.nn.MultiheadAttention(8, 2)
    km = nn.MultiheadAttention(8, 2)
    _copy(km, tm)
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    ko, kw = km(*[kiln.from_numpy(x)] * 3)
    to, tw = tm(*[torch.from_numpy(x)] * 3)
    assert_close(ko, to, rtol=1e-5)
    assert_close(kw, tw, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="MultiheadAttention"):
        km(kiln.randn(5, 2, 7), kiln.randn(5, 2, 8), kiln.randn(5, 2, 8))
    with pytest.raises(RuntimeError, match="is_causal"):
        km(*[kiln.randn(5, 2, 8)] * 3, is_causal=True)


def test_dropout_train_vs_eval():
    km = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = kiln.randn(2, 6, 8)
    km.eval()
    a, _ = km(x, x, x, need_weights=False)
    b, _ = km(x, x, x, need_weights=False)
    assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    km.train()
    c, _ = km(x, x, x, need_weights=False)
    assert not np.allclose(a.detach().numpy(), c.detach().numpy())


def test_embedding_module():
    te = torch.nn.Embedding(20, 6, padding_idx=3)
    ke = nn.Embedding(20, 6, padding_idx=3)
    _copy(ke, te)
    idx = np.random.default_rng(2).integers(0, 20, (4, 9))
    ko, to = ke(kiln.from_numpy(idx)), te(torch.from_numpy(idx))
    assert_close(ko, to)
    ko.sum().backward()
    to.sum().backward()
    assert_close(ke.weight.grad, te.weight.grad)
    assert (nn.Embedding(5, 2, padding_idx=-1).weight.detach().numpy()[4] == 0).all()
    w = kiln.randn(4, 3)
    f = nn.Embedding.from_pretrained(w)
    assert not f.weight.requires_grad and np.array_equal(f.weight.detach().numpy(), w.numpy())
    assert nn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad
    assert repr(ke) == repr(te)
