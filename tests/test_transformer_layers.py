"""nn.TransformerEncoderLayer / TransformerDecoderLayer / TransformerEncoder /
TransformerDecoder / Transformer against torch with weights copied through state_dict:
outputs, input gradients and every parameter's gradient (float32, 1e-5 relative), over
layouts, norm placement, activations, bias, masks and unbatched input; dropout statistics
and seeding; repr, deep copies, hooks and errors."""


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
