"""kiln._cpu activation and softmax kernels vs PyTorch: values and gradients.

Every kernel runs on every ISA path this CPU supports (forced with _cpu.set_isa), in
float32 and float64, on sizes that exercise the SIMD tails (0, 1, 7, 17, 1000, 100003) and
on special values (NaN, +-inf, +-0, +-1e4, denormal-producing inputs). Gradients are
compared with torch autograd. Bad arguments must raise with the kernel's name.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kiln import _cpu

ISAS = [i for i in ("avx512", "avx2", "scalar")
        if ["scalar", "avx2", "avx512"].index(i) <= ["scalar", "avx2", "avx512"].index(_cpu.supported_isa())]
SIZES = [0, 1, 7, 17, 1000, 100003]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e4, -1e4, 88.0, -88.0, 105.0, -105.0,
           1e-30, -1e-30, 0.3, -0.3, 0.625, -0.625, 0.5, -0.5, 14.0, -14.0]


@pytest.fixture(params=ISAS)
def isa(request):
    old = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(old)


def inputs(n, dtype, seed=0):
    rng = np.random.default_rng(seed + n)
    x = rng.uniform(-20, 20, n)
    x[: min(n, 200) // 2] *= 0.05  # denser near 0, where the polynomials switch branch
    return x.astype(dtype)


# name -> (kiln forward, kiln backward(g, x, y, gi), torch fn, backward takes y?)
def _act(name, fwd_kw=None, torch_fn=None, use_y=False):
    fwd_kw = fwd_kw or {}
    kf = getattr(_cpu, name)
    kb = getattr(_cpu, name + "_backward")

    def fwd(x, out):
        kf(x, out, **fwd_kw)

    def bwd(g, x, y, gi):
        kb(g, y if use_y else x, gi, **fwd_kw)

    return fwd, bwd, torch_fn


ACTS = {
    "relu": _act("relu", torch_fn=F.relu),
    "leaky_relu": _act("leaky_relu", {"negative_slope": 0.07}, lambda t: F.leaky_relu(t, 0.07)),
    "sigmoid": _act("sigmoid", torch_fn=torch.sigmoid, use_y=True),
    "tanh": _act("tanh", torch_fn=torch.tanh, use_y=True),
    "gelu": _act("gelu", {"approximate": "none"}, F.gelu),
    "gelu_tanh": _act("gelu", {"approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh")),
    "silu": _act("silu", torch_fn=F.silu),
    "softplus": _act("softplus", {"beta": 1.0, "threshold": 20.0}, F.softplus),
    "softplus_b2": _act("softplus", {"beta": 2.5, "threshold": 10.0},
                        lambda t: F.softplus(t, beta=2.5, threshold=10.0)),
    "elu": _act("elu", {"alpha": 1.0}, F.elu),
    "elu_a": _act("elu", {"alpha": 0.3}, lambda t: F.elu(t, alpha=0.3)),
}


def torch_ref(tfn, x, g):
    # The reference is torch in float64 on the same (float32-rounded) inputs: torch's own
    # float32 kernels are off by up to ~1e-3 relative in places (e.g. its vectorised erf gives
    # gelu(-3.4945703) = -0.00083067 vs the true -0.00082966), which would hide our errors.
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    y = tfn(xt)
    (gx,) = torch.autograd.grad(y, xt, torch.from_numpy(g.astype(np.float64)))
    return y.detach().numpy().astype(x.dtype), gx.numpy()


def check(kname, x, isa_name):
    dtype = x.dtype.type
    fwd, bwd, tfn = ACTS[kname]
    g = np.random.default_rng(1).uniform(-2, 2, x.shape).astype(dtype)
    y_ref, gx_ref = torch_ref(tfn, x, g)
    y = np.full_like(x, 123.0)
    fwd(x, y)
    gi = np.full_like(x, 123.0)
    bwd(g, x, y_ref, gi)  # sigmoid/tanh backward take torch's forward output
    if kname == "gelu":
        # erfc form: gelu(+inf) = +inf (PyTorch's 1 + erf(x) form gives inf * 1 -> NaN in torch's
        # vectorised path); everything else must agree.
        pinf = np.isposinf(x)
        assert np.all(np.isposinf(y[pinf]))
        y_ref = np.where(pinf, np.inf, y_ref)
    np.testing.assert_allclose(y, y_ref, equal_nan=True, err_msg=f"{kname} forward [{isa_name}]", **TOL[dtype])
    np.testing.assert_allclose(gi, gx_ref, equal_nan=True, err_msg=f"{kname} backward [{isa_name}]",
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kname", list(ACTS))
def test_activation_vs_torch(kname, n, dtype, isa):
    check(kname, inputs(n, dtype), isa)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kname", list(ACTS))
def test_activation_special_values(kname, dtype, isa):
    x = np.array(SPECIAL * 2, dtype=dtype)  # 42 entries: specials land in the masked tail too
    check(kname, x, isa)
    y = np.empty_like(x)
    ACTS[kname][0](x, y)
    assert np.all(np.isnan(y[np.isnan(x)])), f"{kname} must propagate NaN"


@pytest.mark.parametrize("kname", ["sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "softplus", "elu"])
def test_activation_float32_fine_grid(kname, isa):
    # Dense sweep of [-20, 20] (every branch boundary crossed many times) and a 2-D shape.
    x = np.linspace(-20, 20, 7 * 5715, dtype=np.float32).reshape(7, 5715)
    check(kname, x, isa)


def test_activation_threads_agree():
    x = inputs(300007, np.float32)
    outs = []
    for nt in (1, 2):
        _cpu.set_num_threads(nt)
        y = np.empty_like(x)
        _cpu.gelu(x, y, "none")
        outs.append(y)
    _cpu.set_num_threads(2)
    np.testing.assert_array_equal(outs[0], outs[1])


# ---------------------------------------------------------------- softmax / log_softmax

def softmax_check(x, dim, isa_name, log):
    dtype = x.dtype.type
    k, kb = (_cpu.log_softmax, _cpu.log_softmax_backward) if log else (_cpu.softmax, _cpu.softmax_backward)
    tf = torch.log_softmax if log else torch.softmax
    g = np.random.default_rng(2).uniform(-1, 1, x.shape).astype(dtype)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)  # float64 reference
    yt = tf(xt, dim)
    (gxt,) = torch.autograd.grad(yt, xt, torch.from_numpy(g.astype(np.float64)))
    y = np.full_like(x, 7.0)
    k(x, y, dim)
    tol = TOL[dtype]
    name = "log_softmax" if log else "softmax"
    np.testing.assert_allclose(y, yt.detach().numpy(), equal_nan=True, err_msg=f"{name} dim={dim} [{isa_name}]", **tol)
    gi = np.full_like(x, 7.0)
    kb(g, yt.detach().numpy().astype(dtype), gi, dim)
    np.testing.assert_allclose(gi, gxt.numpy(), equal_nan=True, err_msg=f"{name}_backward dim={dim} [{isa_name}]",
                               **tol)
    return y


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 17, 300), (2, 1, 7)])
def test_softmax_every_dim(shape, dtype, log, isa):
    x = np.random.default_rng(3).normal(0, 3, shape).astype(dtype)
    for dim in range(len(shape)):
        softmax_check(x, dim, isa, log)
    softmax_check(x, -1, isa, log)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 17, 1000, 100003])
def test_softmax_row_lengths(n, dtype, log, isa):
    rows = 3 if n < 100003 else 1
    x = np.random.default_rng(n).normal(0, 4, (rows, n)).astype(dtype)
    softmax_check(x, 1, isa, log)
    if n <= 1000:
        softmax_check(x, 0, isa, log)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_large_logits_and_special_rows(dtype, log, isa):
    x = np.array([[1e4, -1e4, 1e4 - 1.0, 0.0] * 5,
                  [-1e4] * 20,
                  [-np.inf] * 20,  # all -inf -> NaN, like PyTorch
                  [np.nan] + [0.0] * 19,
                  [np.inf] + [0.0] * 19,
                  [-np.inf] * 10 + [3.0] * 10], dtype=dtype)
    for dim in (0, 1):
        y = softmax_check(x, dim, isa, log)
    y = np.empty_like(x)
    (_cpu.log_softmax if log else _cpu.softmax)(x, y, 1)
    assert np.all(np.isfinite(y[0])) and np.all(np.isnan(y[2])) and np.all(np.isnan(y[3]))
    p = np.exp(y[0]) if log else y[0]
    np.testing.assert_allclose(p[:4], np.array([1, 0, np.exp(-1.0), 0]) / (5 * (1 + np.exp(-1.0))), rtol=1e-6)


@pytest.mark.parametrize("shape,dim", [((0,), 0), ((0, 5), 1), ((3, 0), 1), ((3, 0, 2), 0), ((), 0)])
def test_softmax_empty_and_scalar(shape, dim):
    x = np.ones(shape, np.float32)
    for k in (_cpu.softmax, _cpu.log_softmax):
        y = np.empty_like(x)
        k(x, y, dim)
        if x.size:
            assert y.reshape(-1)[0] == (1.0 if k is _cpu.softmax else 0.0)
        gi = np.empty_like(x)
        (_cpu.softmax_backward if k is _cpu.softmax else _cpu.log_softmax_backward)(x, y, gi, dim)


def test_softmax_threads_agree():
    x = np.random.default_rng(5).normal(0, 3, (64, 1000)).astype(np.float32)
    outs = []
    for nt in (1, 2):
        _cpu.set_num_threads(nt)
        for dim in (0, 1):
            y = np.empty_like(x)
            _cpu.softmax(x, y, dim)
            outs.append(y)
    _cpu.set_num_threads(2)
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[3])


# ---------------------------------------------------------------- bad arguments

def test_activation_bad_arguments():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match=r"relu.*float32 or float64"):
        _cpu.relu(np.ones(3, np.int32), np.ones(3, np.int32))
    with pytest.raises(TypeError, match=r"sigmoid.*dtype mismatch"):
        _cpu.sigmoid(x, np.ones((3, 4), np.float64))
    with pytest.raises(ValueError, match=r"tanh.*shape mismatch.*\(3, 4\).*\(4, 3\)"):
        _cpu.tanh(x, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"gelu.*C-contiguous"):
        _cpu.gelu(np.ones((4, 3), np.float32).T, np.ones((3, 4), np.float32))
    ro = np.ones((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"silu.*read-only"):
        _cpu.silu(x, ro)
    with pytest.raises(ValueError, match=r"gelu.*approximate"):
        _cpu.gelu(x, np.empty_like(x), "fast")
    with pytest.raises(ValueError, match=r"elu_backward.*shape mismatch"):
        _cpu.elu_backward(x, np.ones(12, np.float32), np.empty_like(x), 1.0)
    with pytest.raises(TypeError, match=r"softplus_backward.*dtype mismatch"):
        _cpu.softplus_backward(x, x.astype(np.float64), np.empty_like(x), 1.0, 20.0)
    with pytest.raises(IndexError, match=r"softmax.*dim 3.*\(3, 4\)"):
        _cpu.softmax(x, np.empty_like(x), 3)
    with pytest.raises(ValueError, match=r"log_softmax_backward.*shape mismatch"):
        _cpu.log_softmax_backward(np.ones((4, 3), np.float32), x, np.empty_like(x), 1)
    with pytest.raises(TypeError, match=r"softmax.*float32 or float64"):
        _cpu.softmax(np.ones(3, np.int64), np.ones(3, np.int64), 0)


def test_gelu_far_tails_flush_to_limits() -> None:
    """Beyond |x| = 12.5 the AVX-512 Phi flushes its tail (which would be float denormals,
    100x slower) to the exact limits; the error is below 5e-35 absolute."""
    import math

    from kiln import _cpu

    x = np.array([-40.0, -13.0, -12.4, -9.0, 9.0, 12.4, 13.0, 40.0] * 2, dtype=np.float32)
    out, gi = np.empty_like(x), np.empty_like(x)
    _cpu.gelu(x, out, "none")
    _cpu.gelu_backward(np.ones_like(x), x, gi, "none")
    ref = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    dref = np.array([0.5 * math.erfc(-v / math.sqrt(2)) + v * math.exp(-v * v / 2)
                     / math.sqrt(2 * math.pi) for v in x.astype(np.float64)])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=5e-35)
    np.testing.assert_allclose(gi, dref, rtol=1e-5, atol=5e-35)
    assert out[0] == 0 and out[7] == 40 and gi[0] == 0 and gi[7] == 1


def test_exp_based_kernels_at_extreme_inputs() -> None:
    """The AVX-512 exp flushes results below FLT_MIN to 0 (no denormals, which are slow);
    sigmoid/silu/softplus/tanh/elu at |x| up to 400 stay within 1e-36 of float64 (silu near
    x = -88 is x times a sub-FLT_MIN sigmoid)."""
    from kiln import _cpu

    x = np.linspace(-400, 400, 4001, dtype=np.float32)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        refs = {
            "sigmoid": 1 / (1 + np.exp(-x64)),
            "silu": x64 / (1 + np.exp(-x64)),
            "tanh": np.tanh(x64),
            "softplus": np.where(x64 > 20, x64, np.log1p(np.exp(x64))),
            "elu": np.where(x64 > 0, x64, np.expm1(x64)),
        }
    for name, ref in refs.items():
        out = np.empty_like(x)
        args = {"softplus": (1.0, 20.0), "elu": (1.0,)}.get(name, ())
        getattr(_cpu, name)(x, out, *args)
        np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-36, err_msg=name)
