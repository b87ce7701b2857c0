"""The conv2d / conv2d_dgrad / conv2d_wgrad kernels (kiln._cpu) on every instruction-set
path (forced with _cpu.set_isa) and thread count, against PyTorch's convolution and its
backward in float64; and the errors bad arguments raise, from the kernels and from the
functional ops."""

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln import _cpu

from helpers import assert_close, torch

ISAS = ["avx512", "avx2", "scalar"]
_RANK = {"scalar": 0, "avx2": 1, "avx512": 2}


@pytest.fixture(params=ISAS)
def isa(request):
    name = request.param
    if _RANK[name] > _RANK[_cpu.supported_isa()]:
        pytest.skip(f"CPU does not support {name}")
    before = _cpu.get_isa()
    _cpu.set_isa(name)
    yield name
    _cpu.set_isa(before)


@pytest.fixture(params=[1, 2])
def threads(request):
    before = _cpu.get_num_threads()
    _cpu.set_num_threads(request.param)
    yield request.param
    _cpu.set_num_threads(before)


# (x shape, weight shape, stride, padding, dilation, groups); padding = top/left, the
# output size is PyTorch's for symmetric padding
CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 2), (1, 1), (1, 0), (1, 1), 1),
    ((3, 4, 11, 10), (6, 2, 3, 3), (2, 3), (2, 1), (2, 1), 2),
    ((5, 16, 24, 24), (32, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),   # batch-parallel, 2 threads
    ((1, 16, 33, 31), (24, 16, 3, 3), (1, 2), (1, 1), (1, 1), 1),   # batch 1: threaded GEMM
    ((2, 96, 48, 48), (16, 96, 3, 3), (1, 1), (1, 1), (1, 1), 1),   # chunked im2col panels
    ((4, 32, 14, 14), (40, 32, 1, 1), (1, 1), (0, 0), (1, 1), 1),   # 1x1: plain GEMM
    ((4, 8, 16, 16), (8, 1, 3, 3), (1, 1), (1, 1), (1, 1), 8),      # depthwise 3x3
    ((3, 6, 17, 13), (12, 1, 5, 3), (2, 1), (2, 1), (1, 2), 6),     # depthwise x2, strided
    ((8, 32, 20, 20), (32, 1, 3, 3), (1, 1), (1, 1), (1, 1), 32),   # depthwise, threaded
]


def _out_hw(xs, ws, s, p, d):
    return tuple((xs[2 + i] + 2 * p[i] - d[i] * (ws[2 + i] - 1) - 1) // s[i] + 1 for i in (0, 1))


def _reference(x, w, b, gy, s, p, d, g):
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    y = torch.ops.aten.convolution(tx, tw, tb, list(s), list(p), list(d), False, [0, 0], g)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        torch.from_numpy(gy), tx, tw, [w.shape[0]], list(s), list(p), list(d), False, [0, 0], g,
        [True, True, True])
    return y, gx, gw, gb


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}*{c[1]}g{c[5]}" for c in CASES])
def test_kernels_every_isa(isa, threads, dtype, case):
    xs, ws, s, p, d, g = case
    r = np.random.default_rng(11)
    x, w, b = (r.standard_normal(sh).astype(dtype) for sh in (xs, ws, (ws[0],)))
    ys = (xs[0], ws[0]) + _out_hw(xs, ws, s, p, d)
    gy = r.standard_normal(ys).astype(dtype)
    args = (*s, *p, *d, g)
    out = np.empty(ys, dtype)
    _cpu.conv2d(x, w, b, out, *args)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    _cpu.conv2d_dgrad(gy, w, gx, *args)
    _cpu.conv2d_wgrad(gy, x, gw, gb, *args)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for got, want, name in zip((out, gx, gw, gb), _reference(x, w, b, gy, s, p, d, g),
                               ("out", "grad_input", "grad_weight", "grad_bias")):
        assert_close(got, want, rtol=rtol, what=f"{isa} {name}")
    # without bias / grad_bias
    out2 = np.empty(ys, dtype)
    _cpu.conv2d(x, w, None, out2, *args)
    assert_close(out2 + b.reshape(1, -1, 1, 1), out, rtol=rtol, what="no bias")
    gw2 = np.empty_like(w)
    _cpu.conv2d_wgrad(gy, x, gw2, None, *args)
    assert_close(gw2, gw, rtol=rtol, what="wgrad without bias")


def test_repeated_calls_reuse_workspace_and_agree():
    """Workspaces are reused across calls of different sizes; results stay identical."""
    r = np.random.default_rng(5)
    x = r.standard_normal((4, 32, 40, 40)).astype(np.float32)
    w = r.standard_normal((16, 32, 3, 3)).astype(np.float32)
    small = r.standard_normal((2, 32, 8, 8)).astype(np.float32)
    a1, a2 = (np.empty((4, 16, 40, 40), np.float32) for _ in range(2))
    s1 = np.empty((2, 16, 8, 8), np.float32)
    _cpu.conv2d(x, w, None, a1, 1, 1, 1, 1, 1, 1, 1)
    _cpu.conv2d(small, w, None, s1, 1, 1, 1, 1, 1, 1, 1)
    _cpu.conv2d(x, w, None, a2, 1, 1, 1, 1, 1, 1, 1)
    assert np.array_equal(a1, a2)


# ---- errors -------------------------------------------------------------------------
def _arrays(xs=(2, 4, 8, 8), ws=(6, 4, 3, 3), ys=(2, 6, 6, 6), dtype=np.float32):
    return np.zeros(xs, dtype), np.zeros(ws, dtype), np.zeros(ys, dtype)


def test_kernel_rejects_wrong_output_shape():
    for rows in (4, 8):  # one extra row at the bottom (7) is 'same'-style padding: allowed
        x, w, y = _arrays(ys=(2, 6, rows, 6))
        with pytest.raises(ValueError, match=rf"conv2d: out of shape \(2, 6, {rows}, 6\).*"
                                             r"expected \(2, 6, 6, 6\)"):
            _cpu.conv2d(x, w, None, y, 1, 1, 0, 0, 1, 1, 1)


def test_kernel_rejects_bad_arguments():
    x, w, y = _arrays()
    with pytest.raises(ValueError, match="conv2d: .*divisible by groups"):
        _cpu.conv2d(x, w, None, y, 1, 1, 0, 0, 1, 1, 3)
    with pytest.raises(ValueError, match=r"conv2d: expected weight of shape \(6, 4, kH, kW\)"):
        _cpu.conv2d(x, np.zeros((6, 3, 3, 3), np.float32), None, y, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d: .*must be 4-D"):
        _cpu.conv2d(x[0], w, None, y, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d: invalid configuration"):
        _cpu.conv2d(x, w, None, y, 0, 1, 0, 0, 1, 1, 1)
    with pytest.raises(TypeError, match="conv2d: dtype mismatch"):
        _cpu.conv2d(x, w.astype(np.float64), None, y, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(TypeError, match="conv2d: .*float32 or float64"):
        _cpu.conv2d(x.astype(np.int64), w.astype(np.int64), None, y.astype(np.int64),
                    1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d: .*C-contiguous"):
        _cpu.conv2d(np.asfortranarray(x), w, None, y, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match=r"conv2d: bias of shape \(5,\)"):
        _cpu.conv2d(x, w, np.zeros(5, np.float32), y, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d: .*larger than the padded input"):
        _cpu.conv2d(np.zeros((1, 4, 1, 1), np.float32), w, None,
                    np.zeros((1, 6, 1, 1), np.float32), 1, 1, 0, 0, 1, 1, 1)
    buf = np.zeros(2 * 6 * 6 * 6 + 100, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        _cpu.conv2d(buf[:2 * 4 * 8 * 8].reshape(2, 4, 8, 8), w, None,
                    buf[:2 * 6 * 6 * 6].reshape(2, 6, 6, 6), 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d_dgrad: .*grad_input"):
        _cpu.conv2d_dgrad(y, w, np.zeros((2, 4, 9, 9), np.float32), 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d_wgrad: .*grad_bias"):
        _cpu.conv2d_wgrad(y, x, np.zeros_like(w), np.zeros(2, np.float32), 1, 1, 0, 0, 1, 1, 1)


@pytest.mark.parametrize("fn, args, exc, pattern", [
    ("conv2d", ((1, 1, 3, 3), (1, 1, 5, 5)), ValueError, r"conv2d: kernel size .*larger than the "
     r"padded input.*input of shape \(1, 1, 3, 3\), weight of shape \(1, 1, 5, 5\)"),
    ("conv2d", ((1, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}), ValueError,
     r"conv2d: in_channels \(4\) and out_channels \(3\) must be divisible by groups \(2\)"),
    ("conv2d", ((1, 4, 5, 5), (3, 3, 3, 3)), ValueError,
     r"conv2d: expected weight of shape \(3, 4, \.\.\.\).*weight of shape \(3, 3, 3, 3\)"),
    ("conv2d", ((4, 5), (3, 4, 3, 3)), ValueError, r"conv2d: expected a 3-D \(unbatched\) or "
     r"4-D \(batched\) input, got input of shape \(4, 5\)"),
    ("conv2d", ((1, 4, 5, 5, 5), (3, 4, 3, 3)), ValueError, "conv2d: expected a 3-D"),
    ("conv2d", ((1, 4, 5, 5), (3, 4, 3)), ValueError, r"conv2d: expected a 4-D weight"),
    ("conv2d", ((1, 4, 5, 5), (3, 4, 3, 3), {"stride": 2, "padding": "same"}), ValueError,
     "conv2d: padding='same' is not supported for strided"),
    ("conv2d", ((1, 4, 5, 5), (3, 4, 3, 3), {"padding": "full"}), ValueError,
     "conv2d: padding must be 'valid', 'same'"),
    ("conv2d", ((1, 4, 5, 5), (3, 4, 3, 3), {"stride": 0}), ValueError, "conv2d: stride"),
    ("conv2d", ((1, 4, 5, 5), (3, 4, 3, 3), {"padding": -1}), ValueError, "conv2d: padding"),
    ("conv1d", ((1, 4, 5), (3, 4, 3, 3)), ValueError, "conv1d: expected a 3-D weight"),
    ("conv_transpose2d", ((1, 4, 5, 5), (4, 2, 3, 3), {"stride": 2, "output_padding": 2}),
     ValueError, "conv_transpose2d: output_padding"),
    ("conv_transpose2d", ((1, 4, 5, 5), (3, 2, 3, 3)), ValueError,
     r"conv_transpose2d: expected weight of shape \(4, "),
])
def test_functional_errors(fn, args, exc, pattern):
    x = kiln.zeros(*args[0])
    w = kiln.zeros(*args[1])
    kw = args[2] if len(args) > 2 else {}
    with pytest.raises(exc, match=pattern):
        getattr(F, fn)(x, w, **kw)


def test_functional_dtype_errors():
    x = kiln.zeros(1, 4, 5, 5)
    with pytest.raises(TypeError, match=r"conv2d: dtype mismatch: input is .*float32.* but "
                                        r"weight is .*float64"):
        F.conv2d(x, kiln.zeros(3, 4, 3, 3, dtype=kiln.float64))
    with pytest.raises(TypeError, match="conv2d: input must be float32 or float64"):
        F.conv2d(kiln.zeros(1, 4, 5, 5, dtype=kiln.int64), kiln.zeros(3, 4, 3, 3))
    with pytest.raises(TypeError, match="conv2d: dtype mismatch: .* bias is"):
        F.conv2d(x, kiln.zeros(3, 4, 3, 3), kiln.zeros(3, dtype=kiln.float64))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(3,\)"):
        F.conv2d(x, kiln.zeros(3, 4, 3, 3), kiln.zeros(4))
    with pytest.raises(TypeError, match="conv2d: input must be a Tensor"):
        F.conv2d(np.zeros((1, 4, 5, 5), np.float32), kiln.zeros(3, 4, 3, 3))


def test_double_backward_is_refused():
    x = kiln.randn(1, 2, 5, 5, requires_grad=True)
    w = kiln.randn(3, 2, 3, 3, requires_grad=True)
    y = F.conv2d(x, w).sum()
    with pytest.raises(RuntimeError, match="double backward"):
        kiln.autograd.grad(y, [x], create_graph=True)


def test_wgrad_with_no_input_channels_still_sums_grad_bias(isa):
    # C == 0: the weight gradient is an empty sum, but the bias gradient is not
    gy = np.random.default_rng(3).standard_normal((2, 3, 4, 5)).astype(np.float32)
    x = np.empty((2, 0, 4, 5), np.float32)
    gw, gb = np.empty((3, 0, 1, 1), np.float32), np.full(3, np.nan, np.float32)
    _cpu.conv2d_wgrad(gy, x, gw, gb, 1, 1, 0, 0, 1, 1, 1)
    np.testing.assert_allclose(gb, gy.sum((0, 2, 3)), rtol=1e-5)
