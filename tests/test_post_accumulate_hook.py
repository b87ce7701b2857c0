"""Tensor.register_post_accumulate_grad_hook against torch: the hook runs once per
backward per leaf, after every contribution has been summed into ``.grad``."""

import numpy as np
import pytest
import torch

import kiln


def run(lib, calls):
    """(w * w + w * b).sum() + b.sum() twice through backward; records (name, grad) per hook."""
    t = kiln.tensor if lib is kiln else torch.tensor
    w = t([1.0, 2.0], requires_grad=True)
    b = t([3.0, -1.0], requires_grad=True)
    x = t([0.5, 0.25], requires_grad=True)
    for name, p in (("w", w), ("b", b)):
        p.register_post_accumulate_grad_hook(
            lambda p, name=name: calls.append((name, p.grad.detach().numpy().copy())))
    h = x.register_post_accumulate_grad_hook(lambda p: calls.append(("x", None)))
    h.remove()
    for _ in range(2):
        ((w * w + w * b).sum() + b.sum() + (x * 2).sum()).backward()
    return w, b


def test_fires_once_after_accumulation_like_torch():
    ours, ref = [], []
    run(kiln, ours)
    run(torch, ref)
    assert sorted(n for n, _ in ours) == sorted(n for n, _ in ref) == ["b", "b", "w", "w"]
    for name in ("w", "b"):
        a = [g for n, g in ours if n == name]
        e = [g for n, g in ref if n == name]
        np.testing.assert_allclose(np.array(a), np.array(e))  # 2nd call sees the sum of both


def test_seen_grad_is_final_for_that_backward():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))
    y = w * 3
    (y * w + y + w).sum().backward()  # four contributions, hook still runs once
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 6 * w.detach().numpy() + 4)


def test_root_leaf_and_inputs_argument():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    v = kiln.tensor([1.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append("w"))
    v.register_post_accumulate_grad_hook(lambda p: seen.append("v"))
    w.backward(kiln.ones(2))
    (w * v).sum().backward(inputs=[w])
    assert seen == ["w", "w"]
    (w * v).sum().backward(inputs=[v])
    assert seen == ["w", "w", "v"]


def test_not_called_by_autograd_grad_nor_for_unreached_leaves():
    w = kiln.tensor([1.0], requires_grad=True)
    u = kiln.tensor([1.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append("w"))
    u.register_post_accumulate_grad_hook(lambda p: seen.append("u"))
    kiln.autograd.grad((w * 2).sum(), w)
    assert seen == [] and w.grad is None
    (w * 2).sum().backward()
    assert seen == ["w"]


def test_registration_errors():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        kiln.ones(2).register_post_accumulate_grad_hook(lambda p: None)
    w = kiln.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(lambda p: None)
