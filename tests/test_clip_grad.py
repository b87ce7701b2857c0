"""kiln.nn.utils.clip_grad_norm_ / clip_grad_value_ / get_total_norm against torch.nn.utils."""

import math

import numpy as np
import pytest

import kiln
from kiln.nn.utils import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from tests.helpers import torch

SHAPES = [(6, 5), (7,), (), (40000,)]  # the last one crosses the kernels' threading grain


def pair(dtype, scale=1.0, seed=0, none_at=()):
    rng = np.random.default_rng(seed)
    kp, tp = [], []
    for i, s in enumerate(SHAPES):
        k = kiln.zeros(*s, dtype=kiln.float64 if dtype == np.float64 else kiln.float32,
                       requires_grad=True)
        t = torch.zeros(s, dtype=torch.float64 if dtype == np.float64 else torch.float32,
                        requires_grad=True)
        if i not in none_at:
            g = np.asarray(rng.standard_normal(s) * scale, dtype=dtype)
            k.grad, t.grad = kiln.tensor(g), torch.tensor(g)
        kp.append(k)
        tp.append(t)
    return kp, tp


def check_grads(kp, tp, rtol):
    for i, (k, t) in enumerate(zip(kp, tp, strict=True)):
        if t.grad is None:
            assert k.grad is None
            continue
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=1e-12,
                                   err_msg=f"grad {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf, -math.inf, 0.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e9])  # clipping, and a no-op (coefficient 1)
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype):
    kp, tp = pair(dtype, none_at=(1,))
    kn = clip_grad_norm_(kp, max_norm, norm_type=norm_type)
    tn = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type, foreach=False)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert kn.shape == () and kn.dtype == (kiln.float32 if dtype == np.float32 else kiln.float64)
    np.testing.assert_allclose(kn.item(), tn.item(), rtol=rtol)
    check_grads(kp, tp, rtol)


def test_single_tensor_empty_and_versions():
    w = kiln.zeros(3, requires_grad=True)
    w.grad = kiln.tensor([3.0, 0.0, 4.0])
    v = w.grad._version
    total = clip_grad_norm_(w, 1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(w.grad.numpy(), [0.6, 0.0, 0.8], rtol=1e-6)
    assert w.grad._version == v + 1
    empty = kiln.zeros(2, requires_grad=True)
    assert clip_grad_norm_([empty], 1.0).item() == 0.0  # no gradients: norm 0, nothing to do
    assert get_total_norm([]).item() == 0.0


def test_non_finite_norm():
    kp, tp = pair(np.float32)
    kp[0].grad.data[0, 0] = np.nan
    tp[0].grad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(kp, 1.0, error_if_nonfinite=True)
    kn = clip_grad_norm_(kp, 1.0)
    tn = torch.nn.utils.clip_grad_norm_(tp, 1.0, foreach=False)
    assert math.isnan(kn.item()) and math.isnan(tn.item())
    check_grads(kp, tp, 1e-6)  # NaN everywhere, as torch
    kp, _ = pair(np.float32)
    kp[2].grad.data[...] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(kp, 1.0, norm_type=math.inf, error_if_nonfinite=True)


def test_total_norm_then_clip_matches_torch():
    kp, tp = pair(np.float64, scale=3.0)
    kn = get_total_norm([p.grad for p in kp], 2.0)
    tn = torch.nn.utils.get_total_norm([p.grad for p in tp], 2.0)
    np.testing.assert_allclose(kn.item(), tn.item(), rtol=1e-12)
    clip_grads_with_norm_(kp, 2.0, kn)
    torch.nn.utils.clip_grads_with_norm_(tp, 2.0, tn)
    check_grads(kp, tp, 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("clip_value", [0.1, 1.0, 10.0])
def test_clip_grad_value_matches_torch(clip_value, dtype):
    kp, tp = pair(dtype, scale=2.0, none_at=(2,))
    kp[0].grad.data[1, 1] = np.nan
    tp[0].grad[1, 1] = float("nan")
    assert clip_grad_value_(kp, clip_value) is None
    torch.nn.utils.clip_grad_value_(tp, clip_value, foreach=False)
    check_grads(kp, tp, 0)


def test_mixed_dtypes_and_threads():
    a, b = kiln.zeros(50000, requires_grad=True), kiln.zeros(70000, dtype=kiln.float64,
                                                              requires_grad=True)
    rng = np.random.default_rng(5)
    ga, gb = rng.standard_normal(50000).astype(np.float32), rng.standard_normal(70000)
    want = math.sqrt(float((ga.astype(np.float64) ** 2).sum() + (gb**2).sum()))
    results = []
    old = kiln.get_num_threads()
    try:
        for nt in (1, 2):
            kiln.set_num_threads(nt)
            a.grad, b.grad = kiln.tensor(ga), kiln.tensor(gb)
            results.append(clip_grad_norm_([a, b], 1.0).item())
    finally:
        kiln.set_num_threads(old)
    for r in results:
        assert r == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), gb / (want + 1e-6), rtol=1e-9)


def test_kernel_errors():
    from kiln import _cpu

    out = np.zeros(1)
    with pytest.raises(TypeError, match=r"grad_norm: tensors\[1\] .* float32 or float64"):
        _cpu.grad_norm([np.ones(3, np.float32), np.ones(3, np.int64)], out, 2.0)
    with pytest.raises(TypeError, match="grad_norm: out .* 1-element float64"):
        _cpu.grad_norm([np.ones(3)], np.zeros(1, np.float32), 2.0)
    with pytest.raises(ValueError, match=r"grad_scale: tensors\[0\] .* C-contiguous"):
        _cpu.grad_scale([np.ones((3, 4))[:, ::2]], 2.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grad_clamp: tensors\[0\] .* read-only"):
        _cpu.grad_clamp([ro], -1.0, 1.0)
