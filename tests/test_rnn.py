"""RNN / LSTM / GRU layers against torch.nn with the same weights: outputs, h_n, c_n and
the gradients of the input, the initial states and every parameter, over layer counts,
directions, batch_first, bias, odd sizes, T = 1, B = 1, float32 and float64; variable
lengths against pack_padded_sequence; float64 gradchecks."""

import numpy as np
import pytest

import kiln
from kiln import nn

from helpers import assert_close

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def make(kind, input_size, hidden_size, dtype=torch.float32, **kw):
    """(torch module, kiln module) with the torch module's weights."""
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        tm = torch.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **kw)
        km = nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    else:
        tm = getattr(torch.nn, kind.upper())(input_size, hidden_size, **kw)
        km = getattr(nn, kind.upper())(input_size, hidden_size, **kw)
    tm = tm.to(dtype)
    if dtype == torch.float64:
        km = km.double()
    km.load_state_dict({k: kiln.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, km


def kt(t, grad=True):
    return kiln.tensor(t.detach().numpy().copy(), requires_grad=grad)


def compare(tm, km, x, hx, lstm, lengths=None, batch_first=False, tol=1e-5):
    """Run both with the same inputs and random output weights; compare everything."""
    kx = kt(x)
    khx = None if hx is None else (tuple(kt(h) for h in hx) if lstm else kt(hx))
    x = x.detach().clone().requires_grad_(True)
    if hx is not None:
        hx = tuple(h.detach().clone().requires_grad_(True) for h in hx) if lstm else \
            hx.detach().clone().requires_grad_(True)
    if lengths is None:
        out, hn = tm(x, hx)
    else:
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        pout, hn = tm(packed, hx)
        T = x.shape[1] if batch_first else x.shape[0]
        out, _ = pad_packed_sequence(pout, batch_first=batch_first, total_length=T)
    kout, khn = km(kx, khx, lengths=lengths)
    pairs = [(kout, out, "output")]
    if lstm:
        pairs += [(khn[0], hn[0], "h_n"), (khn[1], hn[1], "c_n")]
    else:
        pairs += [(khn, hn, "h_n")]
    gen = torch.Generator().manual_seed(1)
    loss_t, loss_k = 0, 0
    for k, t, what in pairs:
        assert_close(k, t, rtol=tol, what=what)
        w = torch.randn(t.shape, generator=gen, dtype=t.dtype)
        loss_t = loss_t + (t * w).sum()
        loss_k = loss_k + (k * kiln.tensor(w.numpy())).sum()
    loss_t.backward()
    loss_k.backward()
    assert_close(kx.grad, x.grad, rtol=tol, what="grad input")
    if hx is not None:
        for k, t, what in zip(khx if lstm else (khx,), hx if lstm else (hx,), ("h0", "c0")):
            assert_close(k.grad, t.grad, rtol=tol, what=f"grad {what}")
    for name, p in tm.named_parameters():
        assert_close(getattr(km, name).grad, p.grad, rtol=tol, what=f"grad {name}")


CONFIGS = [  # num_layers, bidirectional, batch_first, bias, T, B, I, H
    (1, False, False, True, 7, 3, 5, 9),
    (2, True, False, True, 5, 4, 3, 7),
    (3, False, True, False, 4, 2, 6, 5),
    (2, True, True, True, 1, 1, 4, 3),
    (1, True, False, False, 6, 1, 2, 11),
    (3, True, False, True, 3, 17, 4, 6),  # 17 rows: the batch is split over threads
    (1, True, False, True, 4, 3, 5, 37),  # H = 2 x 16 + 5: full vectors and a tail per gate
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "L{}{}{}{}_T{}B{}I{}H{}".format(
    c[0], "bi" if c[1] else "", "bf" if c[2] else "", "" if c[3] else "nobias", *c[4:]))
@pytest.mark.parametrize("kind", KINDS)
def test_layer_vs_torch(kind, cfg, dtype):
    L, bi, bf, bias, T, B, In, H = cfg
    tm, km = make(kind, In, H, dtype, num_layers=L, bidirectional=bi, batch_first=bf, bias=bias)
    D = 2 if bi else 1
    g = torch.Generator().manual_seed(2)
    x = torch.randn((B, T, In) if bf else (T, B, In), generator=g, dtype=dtype)
    h0 = torch.randn(L * D, B, H, generator=g, dtype=dtype)
    hx = (h0, torch.randn(L * D, B, H, generator=g, dtype=dtype)) if kind == "lstm" else h0
    compare(tm, km, x, hx, kind == "lstm", tol=TOL[dtype])


@pytest.mark.parametrize("kind", KINDS)
def test_inference_forward_matches_training_forward(kind):
    # Without grad the cell writes its gate activations over the step's GEMM output instead
    # of into saved gates; the outputs must be the same.
    tm, km = make(kind, 6, 37, num_layers=2, bidirectional=True)
    x = kiln.from_numpy(np.random.default_rng(3).standard_normal((5, 4, 6)).astype(np.float32))
    out, _ = km(x)
    with kiln.no_grad():
        out_ng, _ = km(x)
    np.testing.assert_array_equal(out.detach().numpy(), out_ng.numpy())
    with torch.no_grad():
        ref, _ = tm(torch.from_numpy(x.numpy()))
    np.testing.assert_allclose(out_ng.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_no_initial_state_and_unbatched(kind):
    tm, km = make(kind, 4, 5, num_layers=2, bidirectional=True)
    x = torch.randn(6, 3, 4)
    compare(tm, km, x, None, kind == "lstm")
    compare(tm, km, torch.randn(6, 4), None, kind == "lstm")  # unbatched (T, I)
    h = torch.randn(4, 5)
    compare(tm, km, torch.randn(6, 4), (h, torch.randn(4, 5)) if kind == "lstm" else h,
            kind == "lstm")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bf", [False, True], ids=["tb", "bt"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_packed_sequence(kind, bf, dtype):
    L, H, In, T = 2, 6, 3, 7
    lengths = [7, 2, 5, 1, 7, 4, 3, 6, 5, 2, 7, 1, 3, 4, 6, 5, 2]  # 17 rows, unsorted
    B = len(lengths)
    tm, km = make(kind, In, H, dtype, num_layers=L, bidirectional=True, batch_first=bf)
    g = torch.Generator().manual_seed(3)
    x = torch.randn((B, T, In) if bf else (T, B, In), generator=g, dtype=dtype)
    h0 = torch.randn(2 * L, B, H, generator=g, dtype=dtype)
    hx = (h0, torch.randn(2 * L, B, H, generator=g, dtype=dtype)) if kind == "lstm" else h0
    compare(tm, km, x, hx, kind == "lstm", lengths=lengths, batch_first=bf, tol=TOL[dtype])


def test_lengths_padded_outputs_zero_and_input_grads_zero():
    km = nn.LSTM(3, 4, bidirectional=True)
    x = kiln.randn(5, 2, 3, requires_grad=True)
    out, _ = km(x, lengths=kiln.tensor([5, 2]))
    assert np.all(out.data[2:, 1] == 0) and np.any(out.data[2:, 0] != 0)
    out.sum().backward()
    assert np.all(x.grad.data[2:, 1] == 0) and np.any(x.grad.data[:2, 1] != 0)


@pytest.mark.parametrize("kind", KINDS)
def test_no_grad_forward_matches(kind):
    tm, km = make(kind, 3, 5, num_layers=2, bidirectional=True)
    x = torch.randn(4, 3, 3)
    with torch.no_grad():
        out, _ = tm(x)
    with kiln.no_grad():
        kout, _ = km(kiln.tensor(x.numpy()))
    assert_close(kout, out, what="output")
    assert not kout.requires_grad


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_other_isa_levels(isa):
    from kiln import _cpu

    if isa not in ("avx2", "scalar") or _cpu.supported_isa() == "scalar" and isa == "avx2":
        pytest.skip(f"{isa} not supported here")
    before = _cpu.get_isa()
    _cpu.set_isa(isa)
    try:
        for kind in KINDS:
            tm, km = make(kind, 3, 5, bidirectional=True)
            compare(tm, km, torch.randn(4, 17, 3), None, kind == "lstm")
    finally:
        _cpu.set_isa(before)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind):
    km = make(kind, 2, 3, torch.float64, num_layers=2, bidirectional=True)[1]
    x = kiln.randn(4, 2, 2, dtype=kiln.float64, requires_grad=True)
    h0 = kiln.randn(4, 2, 3, dtype=kiln.float64, requires_grad=True)
    c0 = kiln.randn(4, 2, 3, dtype=kiln.float64, requires_grad=True)
    lstm = kind == "lstm"
    params = [km.weight_hh_l0, km.bias_ih_l0_reverse, km.weight_ih_l1]

    def fn(x, h0, c0, *_):
        out, hn = km(x, (h0, c0) if lstm else h0, lengths=[4, 3])
        return (out, *hn) if lstm else (out, hn)

    assert kiln.autograd.gradcheck(fn, [x, h0, c0, *params], atol=1e-6, rtol=1e-5)


def test_state_dict_keys_shapes_and_init_match_torch():
    for kind in KINDS:
        tm, _ = make(kind, 5, 7, num_layers=2, bidirectional=True, bias=False)
        km = nn.GRU(5, 7, 2, False, bidirectional=True) if kind == "gru" else (
            nn.LSTM(5, 7, 2, False, bidirectional=True) if kind == "lstm" else
            nn.RNN(5, 7, 2, kind[4:], False, bidirectional=True))
        ksd, tsd = km.state_dict(), tm.state_dict()
        assert list(ksd) == list(tsd)
        for k in tsd:
            assert tuple(ksd[k].shape) == tuple(tsd[k].shape), k
            assert np.abs(ksd[k].data).max() <= 1 / np.sqrt(7) + 1e-7
            assert ksd[k].data.std() > 0.1  # uniform(-0.378, 0.378): std 0.218
    assert "weight_hh_l0" in dict(nn.LSTM(2, 3).named_parameters())
    assert repr(nn.LSTM(2, 3, num_layers=2, batch_first=True)) == \
        "LSTM(2, 3, num_layers=2, batch_first=True)"


def test_dropout_between_layers():
    from kiln.nn import functional as F

    tm, km = make("lstm", 3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3)
    tm.eval()
    km.eval()  # eval: no dropout, same numbers as torch
    compare(tm, km, x, None, True)
    km.train()  # train: layer 2 reads dropout(layer 1's output), one Philox seed per call
    xk = kiln.tensor(x.numpy(), requires_grad=True)
    kiln.manual_seed(11)
    out, (h, c) = km(xk)
    out.sum().backward()
    assert xk.grad is not None and km.weight_ih_l0.grad is not None
    l1 = nn.LSTM(3, 4)
    l2 = nn.LSTM(4, 4)
    sd = km.state_dict()
    l1.load_state_dict({k.replace("_l0", "_l0"): v for k, v in sd.items() if k.endswith("_l0")})
    l2.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if k.endswith("_l1")})
    kiln.manual_seed(11)
    o1, _ = l1(kiln.tensor(x.numpy()))
    o2, (h2, _) = l2(F.dropout(o1, 0.5, True))
    np.testing.assert_allclose(out.detach().numpy(), o2.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(h[1].detach().numpy(), h2[0].detach().numpy(), rtol=1e-6)
    km.eval()
    assert not np.allclose(km(kiln.tensor(x.numpy()))[0].detach().numpy(),
                           out.detach().numpy())
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.2)


def test_errors():
    lstm = nn.LSTM(3, 4, num_layers=2)
    x = kiln.randn(5, 2, 3)
    with pytest.raises(ValueError, match="input_size. Expected 3, got 6"):
        lstm(kiln.randn(5, 2, 6))
    with pytest.raises(ValueError, match="2D or 3D, got 4D"):
        lstm(kiln.randn(5, 2, 3, 1))
    with pytest.raises(ValueError, match=r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"):
        lstm(x, (kiln.zeros(1, 2, 4), kiln.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match=r"Expected cell size \(2, 2, 4\)"):
        lstm(x, (kiln.zeros(2, 2, 4), kiln.zeros(2, 3, 4)))
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\)"):
        lstm(x, kiln.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="hx should also be 2-D"):
        nn.GRU(3, 4)(kiln.randn(5, 3), kiln.zeros(1, 1, 4))
    with pytest.raises(ValueError, match=r"lengths must be in \[0, 5\].*got 6"):
        lstm(x, lengths=[6, 2])
    with pytest.raises(ValueError, match=r"lengths must be in \[0, 5\].*got -1"):
        lstm(x, lengths=[-1, 2])
    with pytest.raises(ValueError, match=r"lengths of shape \(3,\) must be \(2,\)"):
        lstm(x, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths must hold integers"):
        lstm(x, lengths=[1.5, 2.0])
    with pytest.raises(TypeError, match="dtype"):
        lstm(kiln.randn(5, 2, 3, dtype=kiln.float64))
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="only supported for LSTM"):
        nn.RNNBase("gru", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="dropout should be a number"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be an integer >= 1"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
