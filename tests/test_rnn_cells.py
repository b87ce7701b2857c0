"""RNNCell / LSTMCell / GRUCell against torch's cells (values and every gradient), and the
rnn_forward / rnn_backward kernels' argument checks."""

import numpy as np
import pytest

import kiln
from kiln import _cpu, nn

from helpers import assert_close

torch = pytest.importorskip("torch")

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def make(kind, In, H, dtype, bias):
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        tm = torch.nn.RNNCell(In, H, bias=bias, nonlinearity=kind[4:])
        km = nn.RNNCell(In, H, bias=bias, nonlinearity=kind[4:])
    else:
        name = kind.upper() + "Cell"
        tm, km = getattr(torch.nn, name)(In, H, bias=bias), getattr(nn, name)(In, H, bias=bias)
    tm = tm.to(dtype)
    if dtype == torch.float64:
        km = km.double()
    km.load_state_dict({k: kiln.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    assert list(km.state_dict()) == list(tm.state_dict())
    return tm, km


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", ["batched", "unbatched", "no_hx", "batch17"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", CELLS)
def test_cell_vs_torch(kind, bias, shape, dtype):
    In, H = 5, 7
    B = {"batched": 3, "unbatched": None, "no_hx": 2, "batch17": 17}[shape]
    tm, km = make(kind, In, H, dtype, bias)
    lstm = kind == "lstm"
    g = torch.Generator().manual_seed(1)
    lead = () if B is None else (B,)
    x = torch.randn(*lead, In, generator=g, dtype=dtype, requires_grad=True)
    hs = [torch.randn(*lead, H, generator=g, dtype=dtype, requires_grad=True)
          for _ in range(2 if lstm else 1)]
    kx = kiln.tensor(x.detach().numpy(), requires_grad=True)
    khs = [kiln.tensor(h.detach().numpy(), requires_grad=True) for h in hs]
    if shape == "no_hx":
        tout, kout = tm(x), km(kx)
    else:
        tout = tm(x, tuple(hs) if lstm else hs[0])
        kout = km(kx, tuple(khs) if lstm else khs[0])
    touts = tout if lstm else (tout,)
    kouts = kout if lstm else (kout,)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    loss_t, loss_k = 0, 0
    for k, t in zip(kouts, touts):
        assert_close(k, t, rtol=tol, what="output")
        w = torch.randn(t.shape, generator=g, dtype=dtype)
        loss_t = loss_t + (t * w).sum()
        loss_k = loss_k + (k * kiln.tensor(w.numpy())).sum()
    loss_t.backward()
    loss_k.backward()
    assert_close(kx.grad, x.grad, rtol=tol, what="grad input")
    if shape != "no_hx":
        for k, t in zip(khs, hs):
            assert_close(k.grad, t.grad, rtol=tol, what="grad hx")
    for name, p in tm.named_parameters():
        assert_close(getattr(km, name).grad, p.grad, rtol=tol, what=f"grad {name}")


@pytest.mark.parametrize("kind", CELLS)
def test_cell_gradcheck(kind):
    km = make(kind, 3, 2, torch.float64, True)[1]
    x = kiln.randn(2, 3, dtype=kiln.float64, requires_grad=True)
    h = kiln.randn(2, 2, dtype=kiln.float64, requires_grad=True)
    c = kiln.randn(2, 2, dtype=kiln.float64, requires_grad=True)
    lstm = kind == "lstm"
    fn = (lambda x, h, c, *_: km(x, (h, c))) if lstm else (lambda x, h, c, *_: km(x, h))
    assert kiln.autograd.gradcheck(fn, [x, h, c, km.weight_ih, km.bias_hh], atol=1e-6)


def test_cell_errors():
    cell = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match="inconsistent input_size: got 5 expected 3"):
        cell(kiln.randn(2, 5))
    with pytest.raises(ValueError, match="1D or 2D, got 3D"):
        cell(kiln.randn(1, 2, 3))
    with pytest.raises(ValueError, match=r"hidden state of shape \(3, 4\) must be \(2, 4\)"):
        cell(kiln.randn(2, 3), (kiln.zeros(3, 4), kiln.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"cell state of shape \(2, 5\) must be \(2, 4\)"):
        cell(kiln.randn(2, 3), (kiln.zeros(2, 4), kiln.zeros(2, 5)))
    with pytest.raises(TypeError, match="dtype"):
        nn.GRUCell(3, 4)(kiln.randn(2, 3, dtype=kiln.float64))


# ---- kernel argument checks --------------------------------------------------------
def _fwd_args(mode="lstm", T=3, B=2, H=4, D=1, dtype=np.float32):
    G = {"lstm": 4, "gru": 3}.get(mode, 1)
    f = lambda *s: np.zeros(s, dtype)  # noqa: E731
    lstm = mode == "lstm"
    return dict(mode=mode, xg=f(T, B, G * H), w_hh=f(G * H, H), b_hh=f(G * H), h0=f(B, H),
                c0=f(B, H) if lstm else None, lengths=None, out=f(T, B, D * H), h_n=f(B, H),
                c_n=f(B, H) if lstm else None, gates=f(T, B, G * H),
                extra=f(T, B, H) if G > 1 else None, direction=0)


def test_kernel_forward_checks():
    _cpu.rnn_forward(**_fwd_args())
    bad = [
        (dict(mode="lstmx"), ValueError, "mode must be"),
        (dict(w_hh=np.zeros((12, 4), np.float32)), ValueError, r"w_hh of shape \(12, 4\)"),
        (dict(xg=np.zeros((3, 2, 15), np.float32)), ValueError, r"xg of shape \(3, 2, 15\)"),
        (dict(h0=np.zeros((3, 4), np.float32)), ValueError, r"h0 of shape \(3, 4\) must be"),
        (dict(c0=None), ValueError, "c0 is required"),
        (dict(out=np.zeros((3, 2, 6), np.float32)), ValueError, "out of shape"),
        (dict(direction=1), ValueError, "direction 1"),
        (dict(extra=None), ValueError, "extra is required"),
        (dict(h_n=np.zeros((2, 4))), TypeError, "dtype mismatch"),
        (dict(lengths=np.array([3, 4])), IndexError, r"lengths\[1\] = 4 is out of range"),
        (dict(lengths=np.array([3, 1], np.int32)), TypeError, "must be int64"),
        (dict(b_hh=np.zeros(5, np.float32)), ValueError, r"b_hh of shape \(5,\)"),
    ]
    for change, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            _cpu.rnn_forward(**{**_fwd_args(), **change})
    with pytest.raises(ValueError, match="c0 must be None for lstm only"):
        _cpu.rnn_forward(**{**_fwd_args("gru"), "c0": np.zeros((2, 4), np.float32)})
    with pytest.raises(TypeError, match="float32 or float64"):
        _cpu.rnn_forward(**{**_fwd_args(), "xg": np.zeros((3, 2, 16), np.int64)})


def test_kernel_backward_checks():
    a = _fwd_args("gru")
    f = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    args = dict(mode="gru", grad_out=f(3, 2, 4), grad_h_n=None, grad_c_n=None, w_hh=a["w_hh"],
                h0=a["h0"], c0=None, lengths=None, out=a["out"], gates=a["gates"],
                extra=a["extra"], grad_xg=f(3, 2, 12), grad_w_hh=f(12, 4), grad_b_ih=None,
                grad_b_hh=f(12), grad_h0=f(2, 4), grad_c0=None, direction=0)
    _cpu.rnn_backward(**args)
    assert not args["grad_w_hh"].any()
    with pytest.raises(ValueError, match=r"grad_w_hh of shape \(4, 12\) must be \(12, 4\)"):
        _cpu.rnn_backward(**{**args, "grad_w_hh": f(4, 12)})
    with pytest.raises(ValueError, match="gates of shape"):
        _cpu.rnn_backward(**{**args, "gates": f(3, 2, 4)})
    ro = f(2, 4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _cpu.rnn_backward(**{**args, "grad_h0": ro})
