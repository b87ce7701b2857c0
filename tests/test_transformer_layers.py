"""nn.TransformerEncoderLayer / TransformerDecoderLayer / TransformerEncoder /
TransformerDecoder / Transformer against torch with weights copied through state_dict:
outputs, input gradients and every parameter's gradient (float32, 1e-5 relative), over
layouts, norm placement, activations, bias, masks and unbatched input; dropout statistics
and seeding; repr, deep copies, hooks and errors."""

import copy

import numpy as np
import pytest
import torch

import kiln
import kiln.nn.functional as KF
from kiln import nn

from helpers import assert_close

E, H, FF, N, L, S = 16, 4, 24, 3, 7, 5


def _copy(km, tm):
    sd = {k: kiln.from_numpy(v.detach().numpy().copy()) for k, v in tm.state_dict().items()}
    assert list(sd) == list(km.state_dict())
    km.load_state_dict(sd)


def _act(name):
    """(torch activation, kiln activation) for a config name."""
    return {
        "relu": ("relu", "relu"),
        "gelu": ("gelu", "gelu"),
        "gelu_fn": (torch.nn.functional.gelu, KF.gelu),
        "gelu_tanh_mod": (torch.nn.GELU(approximate="tanh"), nn.GELU(approximate="tanh")),
        "silu_fn": (torch.nn.functional.silu, KF.silu),
    }[name]


def _kwargs(cfg):
    cfg = dict(cfg)
    act = cfg.pop("act", "relu")
    ta, ka = _act(act)
    return {**cfg, "activation": ta}, {**cfg, "activation": ka}


def _shape(bf, n, t, unbatched=False):
    if unbatched:
        return (t, E)
    return (n, t, E) if bf else (t, n, E)


def _masks(kind, rng, lq, lk, unbatched=False, prefix="src"):
    """Masks in torch's convention for one attention: attn_mask (lq, lk) / 3-d, kpm."""
    m = {}
    if kind == "bool":
        am = rng.random((lq, lk)) < 0.3
        am[:, 0] = False
        m["mask"] = am
    elif kind == "float":
        m["mask"] = rng.standard_normal((lq, lk)).astype(np.float32)
    elif kind == "float3d":
        m["mask"] = rng.standard_normal((N * H, lq, lk)).astype(np.float32)
    elif kind == "causal":
        m["mask"] = np.triu(np.full((lq, lk), -np.inf, np.float32), 1)
        m["causal"] = True
    elif kind == "causal_bool":
        m["mask"] = np.triu(np.ones((lq, lk), bool), 1)
        m["causal"] = True
    if kind in ("kpm", "bool", "float"):
        kp = rng.random((lk,) if unbatched else (N, lk)) < 0.3
        kp[..., 0] = False
        m["kpm"] = kp
    return m


def _run_both(km, tm, arrays, call_k, call_t, train):
    """Forward + backward of sum(out * G) in both libraries; return (ko, to, kin, tin)."""
    km.train(train)
    tm.train(train)
    kin = [kiln.tensor(a, requires_grad=True) for a in arrays]
    tin = [torch.tensor(a, requires_grad=True) for a in arrays]
    ko, to = call_k(*kin), call_t(*tin)
    g = np.random.default_rng(7).standard_normal(tuple(to.shape)).astype(np.float32)
    (ko * kiln.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    return ko, to, kin, tin


def _check(km, tm, ko, to, kin, tin, rtol=1e-5):
    assert_close(ko, to, rtol=rtol, what="output")
    for i, (a, b) in enumerate(zip(kin, tin)):
        assert_close(a.grad, b.grad, rtol=rtol, what=f"input {i} grad")
    kp = dict(km.named_parameters())
    tp = dict(tm.named_parameters())
    assert list(kp) == list(tp)
    for name, p in tp.items():
        assert_close(kp[name].grad, p.grad, rtol=rtol, what=f"{name}.grad")


def _t(a):
    return None if a is None else torch.tensor(a)


def _k(a):
    return None if a is None else kiln.tensor(a)


ENC_CFGS = [
    dict(batch_first=True),
    dict(batch_first=False),
    dict(batch_first=True, norm_first=True),
    dict(batch_first=False, norm_first=True, act="gelu"),
    dict(batch_first=True, act="gelu"),
    dict(batch_first=True, act="gelu_fn", layer_norm_eps=1e-3),
    dict(batch_first=False, act="gelu_tanh_mod"),
    dict(batch_first=True, act="silu_fn", norm_first=True),
    dict(batch_first=True, bias=False),
    dict(batch_first=False, bias=False, norm_first=True),
]
MASKS = ["none", "bool", "float", "float3d", "kpm", "causal", "causal_bool"]


# train mode (dropout 0) over every mask kind; eval mode (dropout 0.1) over a subset
ENC_CASES = [(m, "train") for m in MASKS] + [("none", "eval"), ("bool", "eval")]
DEC_MASKS = [("none", "none"), ("causal", "none"), ("causal", "kpm"), ("bool", "bool"),
             ("float", "float"), ("kpm", "float3d"), ("float3d", "kpm")]
DEC_CASES = [(m, "train") for m in DEC_MASKS] + [(("causal", "kpm"), "eval"),
                                                 (("bool", "bool"), "eval")]


@pytest.mark.parametrize("cfg", ENC_CFGS)
@pytest.mark.parametrize("masks,mode", ENC_CASES)
def test_encoder_layer(cfg, masks, mode):
    tk, kk = _kwargs(cfg)
    drop = 0.0 if mode == "train" else 0.1
    torch.manual_seed(0)
    tm = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=drop, **tk)
    km = nn.TransformerEncoderLayer(E, H, FF, dropout=drop, **kk)
    _copy(km, tm)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(_shape(cfg["batch_first"], N, L)).astype(np.float32)
    m = _masks(masks, rng, L, L)
    causal = m.get("causal", False)
    ko, to, kin, tin = _run_both(
        km, tm, [x],
        lambda s: km(s, src_mask=_k(m.get("mask")), src_key_padding_mask=_k(m.get("kpm")),
                     is_causal=causal),
        lambda s: tm(s, src_mask=_t(m.get("mask")), src_key_padding_mask=_t(m.get("kpm")),
                     is_causal=causal),
        mode == "train")
    _check(km, tm, ko, to, kin, tin)


@pytest.mark.parametrize("cfg", [dict(batch_first=True), dict(batch_first=False, norm_first=True,
                                                             act="gelu")])
@pytest.mark.parametrize("masks", ["none", "kpm", "bool", "causal"])
def test_encoder_layer_unbatched(cfg, masks):
    tk, kk = _kwargs(cfg)
    tm = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, **tk)
    km = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, **kk)
    _copy(km, tm)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((L, E)).astype(np.float32)
    m = _masks(masks, rng, L, L, unbatched=True)
    c = m.get("causal", False)
    ko, to, kin, tin = _run_both(
        km, tm, [x],
        lambda s: km(s, _k(m.get("mask")), _k(m.get("kpm")), is_causal=c),
        lambda s: tm(s, _t(m.get("mask")), _t(m.get("kpm")), is_causal=c), True)
    assert tuple(ko.shape) == (L, E)
    _check(km, tm, ko, to, kin, tin)


def test_encoder_layer_inference_matches_torch_fast_path():
    """Eval + no_grad: torch takes its fused inference kernel, kiln its fused GEMM
    activation; both must still agree."""
    for act in ("relu", "gelu"):
        tm = torch.nn.TransformerEncoderLayer(E, H, FF, activation=act, batch_first=True).eval()
        km = nn.TransformerEncoderLayer(E, H, FF, activation=act, batch_first=True).eval()
        _copy(km, tm)
        x = np.random.default_rng(3).standard_normal((N, L, E)).astype(np.float32)
        with torch.no_grad():
            to = tm(torch.tensor(x))
        with kiln.no_grad():
            ko = km(kiln.tensor(x))
        assert_close(ko, to, rtol=1e-5, what=act)


DEC_CFGS = [
    dict(batch_first=True),
    dict(batch_first=False),
    dict(batch_first=True, norm_first=True, act="gelu"),
    dict(batch_first=False, norm_first=True),
    dict(batch_first=True, bias=False),
    dict(batch_first=False, act="silu_fn"),
]
@pytest.mark.parametrize("cfg", DEC_CFGS)
@pytest.mark.parametrize("masks,mode", DEC_CASES)
def test_decoder_layer(cfg, masks, mode):
    tk, kk = _kwargs(cfg)
    drop = 0.0 if mode == "train" else 0.1
    tm = torch.nn.TransformerDecoderLayer(E, H, FF, dropout=drop, **tk)
    km = nn.TransformerDecoderLayer(E, H, FF, dropout=drop, **kk)
    _copy(km, tm)
    rng = np.random.default_rng(4)
    bf = cfg["batch_first"]
    tgt = rng.standard_normal(_shape(bf, N, L)).astype(np.float32)
    mem = rng.standard_normal(_shape(bf, N, S)).astype(np.float32)
    mt = _masks(masks[0], rng, L, L)
    mm = _masks(masks[1], rng, L, S)

    def kw(conv):
        return dict(tgt_mask=conv(mt.get("mask")), memory_mask=conv(mm.get("mask")),
                    tgt_key_padding_mask=conv(mt.get("kpm")),
                    memory_key_padding_mask=conv(mm.get("kpm")),
                    tgt_is_causal=mt.get("causal", False))

    ko, to, kin, tin = _run_both(km, tm, [tgt, mem], lambda a, b: km(a, b, **kw(_k)),
                                 lambda a, b: tm(a, b, **kw(_t)), mode == "train")
    _check(km, tm, ko, to, kin, tin)


def test_decoder_layer_unbatched():
    tm = torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0.0)
    km = nn.TransformerDecoderLayer(E, H, FF, dropout=0.0)
    _copy(km, tm)
    rng = np.random.default_rng(5)
    tgt = rng.standard_normal((L, E)).astype(np.float32)
    mem = rng.standard_normal((S, E)).astype(np.float32)
    causal = np.triu(np.full((L, L), -np.inf, np.float32), 1)
    kpm = np.zeros(S, bool)
    kpm[-2:] = True
    ko, to, kin, tin = _run_both(
        km, tm, [tgt, mem],
        lambda a, b: km(a, b, tgt_mask=_k(causal), memory_key_padding_mask=_k(kpm),
                        tgt_is_causal=True),
        lambda a, b: tm(a, b, tgt_mask=_t(causal), memory_key_padding_mask=_t(kpm),
                        tgt_is_causal=True), True)
    assert tuple(ko.shape) == (L, E)
    _check(km, tm, ko, to, kin, tin)


@pytest.mark.parametrize("cfg", [dict(batch_first=True), dict(batch_first=False,
                                                             norm_first=True, act="gelu")])
@pytest.mark.parametrize("final_norm", [True, False])
@pytest.mark.parametrize("masks", ["none", "kpm", "causal", "bool"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_encoder_stack(cfg, final_norm, masks, mode):
    tk, kk = _kwargs(cfg)
    drop = 0.0 if mode == "train" else 0.1
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, FF, drop, **tk), 3,
                                     norm=torch.nn.LayerNorm(E) if final_norm else None,
                                     enable_nested_tensor=False)
    km = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF, drop, **kk), 3,
                               norm=nn.LayerNorm(E) if final_norm else None,
                               enable_nested_tensor=False)
    _copy(km, tm)
    rng = np.random.default_rng(6)
    x = rng.standard_normal(_shape(cfg["batch_first"], N, L)).astype(np.float32)
    m = _masks(masks, rng, L, L)
    # the causal case leaves is_causal=None so the stack detects the causal mask
    ko, to, kin, tin = _run_both(
        km, tm, [x], lambda s: km(s, mask=_k(m.get("mask")),
                                  src_key_padding_mask=_k(m.get("kpm"))),
        lambda s: tm(s, mask=_t(m.get("mask")), src_key_padding_mask=_t(m.get("kpm"))),
        mode == "train")
    _check(km, tm, ko, to, kin, tin)


@pytest.mark.parametrize("final_norm", [True, False])
@pytest.mark.parametrize("bf", [True, False])
def test_decoder_stack(final_norm, bf):
    tm = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(E, H, FF, 0.0, batch_first=bf), 2,
        norm=torch.nn.LayerNorm(E) if final_norm else None)
    km = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, FF, 0.0, batch_first=bf), 2,
                               norm=nn.LayerNorm(E) if final_norm else None)
    _copy(km, tm)
    rng = np.random.default_rng(8)
    tgt = rng.standard_normal(_shape(bf, N, L)).astype(np.float32)
    mem = rng.standard_normal(_shape(bf, N, S)).astype(np.float32)
    causal = np.triu(np.full((L, L), -np.inf, np.float32), 1)
    mmask = rng.random((L, S)) < 0.3
    mmask[:, 0] = False
    kw = lambda c: dict(tgt_mask=c(causal), memory_mask=c(mmask))  # noqa: E731
    ko, to, kin, tin = _run_both(km, tm, [tgt, mem], lambda a, b: km(a, b, **kw(_k)),
                                 lambda a, b: tm(a, b, **kw(_t)), True)
    _check(km, tm, ko, to, kin, tin)


@pytest.mark.parametrize("bf", [True, False])
def test_transformer(bf):
    cfg = dict(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2,
               dim_feedforward=FF, dropout=0.0, batch_first=bf)
    tm = torch.nn.Transformer(**cfg)
    km = nn.Transformer(**cfg)
    assert repr(km) == repr(tm)
    _copy(km, tm)
    rng = np.random.default_rng(9)
    src = rng.standard_normal(_shape(bf, N, S)).astype(np.float32)
    tgt = rng.standard_normal(_shape(bf, N, L)).astype(np.float32)
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    tcausal = torch.nn.Transformer.generate_square_subsequent_mask(L)
    np.testing.assert_array_equal(causal.numpy(), tcausal.numpy())
    skp = np.zeros((N, S), bool)
    skp[1, -2:] = True
    ko, to, kin, tin = _run_both(
        km, tm, [src, tgt],
        lambda a, b: km(a, b, tgt_mask=causal, src_key_padding_mask=_k(skp),
                        memory_key_padding_mask=_k(skp)),
        lambda a, b: tm(a, b, tgt_mask=tcausal, src_key_padding_mask=_t(skp),
                        memory_key_padding_mask=_t(skp)), True)
    _check(km, tm, ko, to, kin, tin)


def test_transformer_init_is_xavier():
    """Every 2-d weight is re-drawn xavier-uniform: bound sqrt(6 / (fan_in + fan_out))."""
    kiln.manual_seed(0)
    m = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                       dim_feedforward=64)
    for name, p in m.named_parameters():
        if p.dim() > 1:
            bound = np.sqrt(6.0 / (p.shape[0] + p.shape[1]))
            a = p.detach().numpy()
            assert np.abs(a).max() <= bound + 1e-7, name
            assert np.abs(a).max() > 0.8 * bound, name


def test_float64_gradcheck():
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, dtype=kiln.float64,
                                       batch_first=True, activation="gelu")
    dec = nn.TransformerDecoderLayer(4, 2, 6, dropout=0.0, dtype=kiln.float64, norm_first=True)
    assert all(p.dtype == kiln.float64 for p in layer.parameters())
    rng = np.random.default_rng(10)
    x = kiln.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    mem = kiln.tensor(rng.standard_normal((2, 2, 4)), requires_grad=True)
    mask = kiln.tensor(np.triu(np.ones((3, 3), bool), 1))
    assert kiln.autograd.gradcheck(lambda t: layer(t, src_mask=mask, is_causal=True), [x])
    assert kiln.autograd.gradcheck(lambda t, m: dec(t.transpose(0, 1), m), [x, mem])


# ---- repr, copies, hooks, dropout, errors -------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(bias=False, norm_first=True),
                                dict(act="gelu_tanh_mod", batch_first=True)])
def test_repr_and_state_dict_keys(kw):
    tk, kk = _kwargs(kw)
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, FF, **tk), 2,
                                     norm=torch.nn.LayerNorm(E), enable_nested_tensor=False)
    km = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF, **kk), 2,
                               norm=nn.LayerNorm(E))
    assert repr(km) == repr(tm)
    assert list(km.state_dict()) == list(tm.state_dict())
    td = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(E, H, FF, **tk), 2)
    kd = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, FF, **kk), 2)
    assert repr(kd) == repr(td)
    assert list(kd.state_dict()) == list(td.state_dict())


def test_stack_layers_are_independent_deep_copies():
    layer = nn.TransformerEncoderLayer(E, H, FF)
    enc = nn.TransformerEncoder(layer, 3)
    params = list(enc.parameters())
    assert len(params) == 3 * len(list(layer.parameters()))
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert len({id(p) for p in params}) == len(params)
    w0 = layer.linear1.weight.detach().numpy().copy()
    for lyr in enc.layers:
        np.testing.assert_array_equal(lyr.linear1.weight.detach().numpy(), w0)
    with kiln.no_grad():
        enc.layers[0].linear1.weight.mul_(0.0)
    np.testing.assert_array_equal(layer.linear1.weight.detach().numpy(), w0)
    np.testing.assert_array_equal(enc.layers[1].linear1.weight.detach().numpy(), w0)
    # copy.deepcopy of a whole stack keeps parameters parameters, too
    enc2 = copy.deepcopy(enc)
    assert all(isinstance(p, nn.Parameter) for p in enc2.parameters())
    assert len(list(enc2.parameters())) == len(params)
    # an optimizer over the stack trains every copy
    opt = kiln.optim.SGD(enc.parameters(), lr=0.1)
    enc(kiln.randn(L, N, E)).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    opt.step()


def _count_fused(monkeypatch):
    from kiln.nn import transformer as T

    seen = []
    real = T.linear

    def spy(x, w, b=None, activation=None):
        seen.append(activation)
        return real(x, w, b, activation=activation)

    monkeypatch.setattr(T, "linear", spy)
    return seen


@pytest.mark.parametrize("act,expect", [("relu", "relu"), ("gelu", "gelu"),
                                        ("gelu_tanh_mod", "gelu_tanh"), ("silu_fn", None)])
def test_fused_feed_forward_used(monkeypatch, act, expect):
    seen = _count_fused(monkeypatch)
    km = nn.TransformerEncoderLayer(E, H, FF, activation=_act(act)[1])
    km(kiln.randn(L, N, E))
    assert seen == ([expect] if expect else [])


def test_hook_on_linear1_disables_fusion_and_runs(monkeypatch):
    """A hook on linear1 must see linear1's own output, so the fused path steps aside."""
    seen = _count_fused(monkeypatch)
    tm = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0)
    km = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0)
    _copy(km, tm)
    calls = []

    def hook(mod, args, out):
        calls.append(tuple(out.shape))
        return out * 2.0

    tm.linear1.register_forward_hook(hook)
    km.linear1.register_forward_hook(hook)
    x = np.random.default_rng(11).standard_normal((L, N, E)).astype(np.float32)
    ko, to, kin, tin = _run_both(km, tm, [x], km, tm, True)
    _check(km, tm, ko, to, kin, tin)
    assert seen == [] and calls == [(L, N, FF), (L, N, FF)]


def test_dropout_train_statistics_and_seeding():
    p = 0.3
    km = nn.TransformerEncoderLayer(32, 4, 256, dropout=p, batch_first=True)
    got = {}
    km.dropout.register_forward_hook(lambda m, a, o: got.update(inp=a[0], out=o))
    x = kiln.randn(8, 16, 32)
    kiln.manual_seed(123)
    y1 = km(x).detach().numpy()
    inp, out = got["inp"].detach().numpy(), got["out"].detach().numpy()
    live = inp != 0  # relu zeros stay zero either way
    dropped = (out == 0) & live
    frac = dropped.sum() / live.sum()
    assert abs(frac - p) < 0.02, frac
    kept = live & ~dropped
    np.testing.assert_allclose(out[kept], inp[kept] / (1 - p), rtol=1e-6)
    kiln.manual_seed(123)
    y2 = km(x).detach().numpy()
    np.testing.assert_array_equal(y1, y2)
    kiln.manual_seed(124)
    y3 = km(x).detach().numpy()
    assert not np.array_equal(y1, y3)
    km.eval()
    ye1, ye2 = km(x).detach().numpy(), km(x).detach().numpy()
    np.testing.assert_array_equal(ye1, ye2)
    assert not np.array_equal(ye1, y1)


def test_detect_is_causal_mask():
    from kiln.nn.transformer import _detect_is_causal_mask

    causal = nn.Transformer.generate_square_subsequent_mask(4)
    assert _detect_is_causal_mask(causal, None, 4)
    assert _detect_is_causal_mask(np.triu(np.ones((4, 4), bool), 1), None, 4)
    assert not _detect_is_causal_mask(causal, None, 5)
    assert not _detect_is_causal_mask(kiln.zeros(4, 4), None, 4)
    assert not _detect_is_causal_mask(causal, False, 4)
    assert _detect_is_causal_mask(None, True, 4)
    assert not _detect_is_causal_mask(None, None, 4)


def test_errors_name_the_module():
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: d_model \(10\).*nhead \(3\)"):
        nn.TransformerEncoderLayer(10, 3)
    with pytest.raises(ValueError, match="TransformerDecoderLayer: d_model"):
        nn.TransformerDecoderLayer(10, 4)
    with pytest.raises(ValueError, match="TransformerEncoderLayer: nhead"):
        nn.TransformerEncoderLayer(8, 0)
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(TypeError, match="TransformerEncoderLayer: activation"):
        nn.TransformerEncoderLayer(8, 2, activation=3)
    with pytest.raises(ValueError, match="num_layers"):
        nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), -1)
    enc = nn.TransformerEncoderLayer(E, H, FF)
    x = kiln.randn(L, N, E)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer.self_attn: .*attn_mask"):
        enc(x, src_mask=kiln.zeros(L, L + 1))
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer.self_attn: .*key_padding"):
        enc(x, src_key_padding_mask=kiln.zeros(N + 1, L))
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: src .*\(7, 3, 8\)"):
        enc(kiln.randn(L, N, 8))
    with pytest.raises(ValueError, match="TransformerEncoderLayer: src"):
        enc(kiln.randn(E))
    with pytest.raises(RuntimeError, match="TransformerEncoderLayer.self_attn: .*is_causal"):
        enc(x, is_causal=True)
    dec = nn.TransformerDecoderLayer(E, H, FF)
    mem = kiln.randn(S, N, E)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer.multihead_attn: .*attn_mask"):
        dec(x, mem, memory_mask=kiln.zeros(L, L))
    with pytest.raises(ValueError, match="TransformerDecoderLayer: tgt .* and memory"):
        dec(x, kiln.randn(S, E))
    with pytest.raises(ValueError, match="TransformerDecoderLayer: memory"):
        dec(x, kiln.randn(S, N, E + 1))
    tr = nn.Transformer(E, H, 1, 1, FF)
    with pytest.raises(RuntimeError, match="Transformer: the batch number"):
        tr(kiln.randn(S, N, E), kiln.randn(L, N + 1, E))
    with pytest.raises(RuntimeError, match="Transformer: the feature number"):
        tr(kiln.randn(S, N, E), kiln.randn(L, N, E + 1))
