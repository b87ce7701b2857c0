"""conv1d / conv2d / conv_transpose1d / conv_transpose2d against PyTorch: values and the
gradients of input, weight and bias, over a seeded sweep of random configurations (stride
1-3, padding 0-3 or 'same' / 'valid', dilation 1-3, groups incl. depthwise, non-square
kernels, odd sizes, batch 1, output_padding), float32 to 1e-4 relative; float64
gradcheck on small cases."""

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F

from helpers import assert_close, to_torch, torch

TF = torch.nn.functional
# torch notes that it pads a copy for 'same' with an even kernel; not our concern
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")
N_CONFIGS = 240


def _config(i: int) -> dict:
    """One random configuration; seeded by its index so every run checks the same ones."""
    r = np.random.default_rng(1000 + i)
    kind = r.choice(["conv2d"] * 6 + ["conv1d"] * 2 + ["conv_transpose2d"] * 2 +
                    ["conv_transpose1d"])
    sp = 1 if kind.endswith("1d") else 2
    mode = r.choice(["plain", "plain", "grouped", "depthwise"])
    if mode == "depthwise":
        groups = int(r.integers(2, 7))
        cin, cout = groups, groups * int(r.integers(1, 3))
    elif mode == "grouped":
        groups = int(r.integers(2, 4))
        cin, cout = groups * int(r.integers(1, 4)), groups * int(r.integers(1, 4))
    else:
        groups, cin, cout = 1, int(r.integers(1, 6)), int(r.integers(1, 7))
    k = tuple(int(v) for v in r.integers(1, 5, sp))
    s = tuple(int(v) for v in r.integers(1, 4, sp))
    d = tuple(int(v) for v in r.integers(1, 4, sp))
    p = tuple(int(v) for v in r.integers(0, 4, sp))
    span = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    size = tuple(max(1, sp_ - 2 * pp) + int(r.integers(0, 7)) for sp_, pp in zip(span, p))
    cfg = {"kind": kind, "n": int(r.choice([1, 1, 2, 3])), "cin": cin, "cout": cout,
           "groups": groups, "k": k, "stride": s, "dilation": d, "padding": p, "size": size,
           "bias": bool(r.random() < 0.8)}
    if kind.startswith("conv_transpose"):
        cfg["output_padding"] = tuple(int(r.integers(0, max(ss, dd))) for ss, dd in zip(s, d))
        # input size with an output of at least one element
        cfg["size"] = tuple(
            1 + -(-max(0, 2 * pp - dd * (kk - 1) - oo) // ss) + int(r.integers(0, 6))
            for pp, dd, kk, oo, ss in zip(p, d, k, cfg["output_padding"], s))
    elif r.random() < 0.15:
        cfg["padding"] = "valid"
        cfg["size"] = tuple(sp_ + int(r.integers(0, 7)) for sp_ in span)
    elif r.random() < 0.2:
        cfg["padding"], cfg["stride"] = "same", 1
    return cfg


def _run(cfg: dict, dtype=np.float32, seed=0):
    """(kiln output, torch output, [(kiln grad, torch grad, name)])."""
    r = np.random.default_rng(seed)
    kind, g = cfg["kind"], cfg["groups"]
    transposed = kind.startswith("conv_transpose")
    x = r.standard_normal((cfg["n"], cfg["cin"]) + cfg["size"]).astype(dtype)
    wshape = ((cfg["cin"], cfg["cout"] // g) if transposed else (cfg["cout"], cfg["cin"] // g))
    w = r.standard_normal(wshape + cfg["k"]).astype(dtype)
    b = r.standard_normal(cfg["cout"]).astype(dtype) if cfg["bias"] else None
    kw = {"stride": cfg["stride"], "padding": cfg["padding"], "dilation": cfg["dilation"],
          "groups": g}
    if transposed:
        kw["output_padding"] = cfg["output_padding"]
    ks = [kiln.tensor(a, requires_grad=True) if a is not None else None for a in (x, w, b)]
    ts = [to_torch(a, requires_grad=True) if a is not None else None for a in (x, w, b)]
    ky = getattr(F, kind)(*ks, **kw)
    ty = getattr(TF, kind)(*ts, **kw)
    gy = r.standard_normal(tuple(ty.shape)).astype(dtype)
    ky.backward(kiln.tensor(gy))
    ty.backward(torch.from_numpy(gy))
    grads = [(k_.grad, t_.grad, name) for k_, t_, name in zip(ks, ts, ("input", "weight", "bias"))
             if k_ is not None]
    return ky, ty, grads


@pytest.mark.parametrize("i", range(N_CONFIGS))
def test_random_config_matches_torch(i):
    cfg = _config(i)
    ky, ty, grads = _run(cfg)
    assert_close(ky, ty, rtol=1e-4, what=f"{cfg} output")
    for kg, tg, name in grads:
        assert kg is not None, f"{cfg}: no gradient for {name}"
        assert_close(kg, tg, rtol=1e-4, what=f"{cfg} grad {name}")


def test_sweep_covers_the_space():
    cfgs = [_config(i) for i in range(N_CONFIGS)]
    kinds = {c["kind"] for c in cfgs}
    assert kinds == {"conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"}
    assert any(c["groups"] == c["cin"] > 1 for c in cfgs)  # depthwise
    assert any(c["padding"] == "same" for c in cfgs)
    assert any(c["n"] == 1 for c in cfgs)
    assert any(len(set(c["k"])) > 1 for c in cfgs)  # non-square
    assert {3} <= {s for c in cfgs if isinstance(c["stride"], tuple) for s in c["stride"]}
    assert any(max(c.get("output_padding", (0,))) > 0 for c in cfgs)


# Shapes big enough for the threaded paths (images split over threads, chunked im2col
# panels, GEMM threaded inside one image) and the 1x1 path.
BIG = [
    ("chunked panels", (4, 64, 40, 40), (32, 64, 3, 3), dict(padding=1)),
    ("batch 1 threaded gemm", (1, 32, 30, 30), (48, 32, 3, 3), dict(padding=(2, 1), stride=(1, 2))),
    ("1x1", (6, 64, 14, 14), (40, 64, 1, 1), {}),
    ("1x1 strided", (3, 16, 15, 15), (24, 16, 1, 1), dict(stride=2)),
    ("grouped", (5, 32, 20, 20), (32, 8, 3, 3), dict(groups=4, padding=1)),
    ("depthwise", (6, 32, 24, 24), (32, 1, 3, 3), dict(groups=32, padding=1)),
    ("depthwise x2 strided", (3, 16, 23, 21), (32, 1, 5, 3), dict(groups=16, padding=2, stride=2)),
    ("depthwise 5x5 same", (4, 24, 19, 19), (24, 1, 5, 5), dict(groups=24, padding="same")),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", BIG, ids=[c[0] for c in BIG])
def test_larger_shapes_all_paths(case, threads):
    _, xs, ws, kw = case
    before = kiln.get_num_threads()
    kiln.set_num_threads(threads)
    try:
        r = np.random.default_rng(7)
        x = r.standard_normal(xs).astype(np.float32)
        w = r.standard_normal(ws).astype(np.float32)
        b = r.standard_normal(ws[0]).astype(np.float32)
        ks = [kiln.tensor(a, requires_grad=True) for a in (x, w, b)]
        ts = [to_torch(a, requires_grad=True) for a in (x, w, b)]
        ky, ty = F.conv2d(*ks, **kw), TF.conv2d(*ts, **kw)
        assert_close(ky, ty, rtol=1e-4, what="output")
        gy = r.standard_normal(tuple(ty.shape)).astype(np.float32)
        ky.backward(kiln.tensor(gy))
        ty.backward(torch.from_numpy(gy))
        for k_, t_, name in zip(ks, ts, ("input", "weight", "bias")):
            assert_close(k_.grad, t_.grad, rtol=1e-4, what=f"grad {name}")
    finally:
        kiln.set_num_threads(before)


def test_thread_count_is_left_alone():
    """The kernels run one-thread GEMMs inside their own team; the caller's setting stays."""
    before = kiln.get_num_threads()
    kiln.set_num_threads(2)
    try:
        F.conv2d(kiln.randn(8, 16, 32, 32), kiln.randn(16, 16, 3, 3), padding=1)
        assert kiln.get_num_threads() == 2
    finally:
        kiln.set_num_threads(before)


def test_float64_matches_torch_tightly():
    for i in range(0, 40, 4):
        cfg = _config(i)
        ky, ty, grads = _run(cfg, np.float64)
        assert_close(ky, ty, rtol=1e-10, what=f"{cfg} output")
        for kg, tg, name in grads:
            assert_close(kg, tg, rtol=1e-10, what=f"{cfg} grad {name}")


GRADCHECK = [
    ("conv2d", (2, 4, 5, 6), (4, 2, 2, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2),
                                               groups=2)),
    ("conv2d", (1, 2, 5, 5), (3, 2, 2, 2), dict(padding="same", dilation=1)),
    ("conv2d", (2, 3, 4, 4), (6, 1, 3, 3), dict(padding=1, groups=3)),
    ("conv1d", (2, 2, 7), (3, 2, 3), dict(stride=2, padding=1)),
    ("conv_transpose2d", (1, 4, 3, 3), (4, 2, 3, 2), dict(stride=2, padding=1, output_padding=1,
                                                          groups=2)),
    ("conv_transpose1d", (2, 2, 4), (2, 3, 3), dict(stride=3, dilation=2, output_padding=2)),
]


@pytest.mark.parametrize("case", GRADCHECK, ids=[f"{c[0]}-{i}" for i, c in enumerate(GRADCHECK)])
def test_gradcheck_float64(case):
    kind, xs, ws, kw = case
    transposed = kind.startswith("conv_transpose")
    cout = ws[1] * kw.get("groups", 1) if transposed else ws[0]
    r = np.random.default_rng(3)
    x, w, b = (kiln.tensor(r.standard_normal(s), dtype=kiln.float64, requires_grad=True)
               for s in (xs, ws, (cout,)))
    fn = getattr(F, kind)
    assert kiln.autograd.gradcheck(lambda x_, w_, b_: fn(x_, w_, b_, **kw), [x, w, b])


def test_unbatched_input():
    r = np.random.default_rng(4)
    x = r.standard_normal((3, 7, 6)).astype(np.float32)
    w = r.standard_normal((5, 3, 3, 2)).astype(np.float32)
    k = F.conv2d(kiln.tensor(x), kiln.tensor(w), padding=1)
    t = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
    assert_close(k, t, rtol=1e-5)
    k1 = F.conv1d(kiln.tensor(x[0:2, 0]), kiln.tensor(w[:, :2, 0]))
    t1 = TF.conv1d(torch.from_numpy(x[0:2, 0]), torch.from_numpy(w[:, :2, 0]))
    assert_close(k1, t1, rtol=1e-5)


def test_empty_batch():
    w = kiln.randn(4, 3, 3, 3, requires_grad=True)
    b = kiln.randn(4, requires_grad=True)
    x = kiln.zeros(0, 3, 8, 8, requires_grad=True)
    y = F.conv2d(x, w, b, padding=1)
    assert tuple(y.shape) == (0, 4, 8, 8)
    y.sum().backward()
    assert tuple(x.grad.shape) == (0, 3, 8, 8)
    assert np.all(w.grad.numpy() == 0) and np.all(b.grad.numpy() == 0)
    yt = F.conv_transpose2d(kiln.zeros(0, 4, 5, 5), kiln.randn(4, 2, 3, 3), stride=2)
    assert tuple(yt.shape) == (0, 2, 11, 11)
