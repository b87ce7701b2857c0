"""Autograd engine: accumulation, retain_graph, grad modes, hooks, autograd.grad,
double backward, gradcheck itself, anomaly detection, in-place safety."""

import numpy as np
import pytest
import torch

import kiln
from kiln.autograd import Function, GradcheckError, gradcheck


def test_accumulates_into_leaf_grad_and_shared_subgraphs():
    x = kiln.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    z = y + y.exp() + x  # x and y reached by two paths
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.data + np.exp(x.data ** 2) * 2 * x.data + 1,
                               rtol=1e-6)
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(),
                               2 * x.data + np.exp(x.data ** 2) * 2 * x.data + 1 + 2, rtol=1e-6)


def test_retain_graph():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_no_grad_enable_grad_detach():
    x = kiln.ones(2, requires_grad=True)
    with kiln.no_grad():
        y = x * 2
        with kiln.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None and z.requires_grad
    assert not x.detach().requires_grad
    assert kiln.is_grad_enabled()

    @kiln.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x.detach() * 2).sum().backward()


def test_hooks_and_retain_grad():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    y = x * 3
    y.retain_grad()
    h = y.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [10.0, 10.0])
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])
    assert len(seen) == 1
    h.remove()


def test_autograd_grad_and_allow_unused():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    u = kiln.tensor([1.0], requires_grad=True)
    y = (x ** 3).sum()
    (gx,) = kiln.autograd.grad(y, x, retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), [3.0, 12.0])
    assert x.grad is None
    with pytest.raises(RuntimeError, match="not used"):
        kiln.autograd.grad(y, [x, u], retain_graph=True)
    assert kiln.autograd.grad(y, [x, u], allow_unused=True)[1] is None


def test_create_graph_second_derivative_matches_torch():
    x = kiln.tensor([0.5, -1.0, 2.0], dtype=kiln.float64, requires_grad=True)
    (g,) = kiln.autograd.grad((x.exp() * x.sin() + x ** 3).sum(), x, create_graph=True)
    g.sum().backward()
    tx = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad((tx.exp() * tx.sin() + tx ** 3).sum(), tx, create_graph=True)
    tg.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_double_backward_through_kernel_ops_uses_composites():
    x = kiln.randn(5, dtype=kiln.float64, requires_grad=True)
    for f in (kiln.nn.functional.gelu, kiln.sigmoid, kiln.tanh,
              lambda t: kiln.nn.functional.softmax(t, 0)):
        (g,) = kiln.autograd.grad((f(x) * x).sum(), x, create_graph=True)
        assert g.requires_grad
        assert gradcheck(lambda t, f=f: kiln.autograd.grad((f(t) * t).sum(), t, create_graph=True)[0],
                         [x])


def test_gradcheck_catches_a_wrong_gradient():
    class BadSquare(Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.inputs
            return g * x * 3  # should be 2x

    x = kiln.randn(3, dtype=kiln.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        gradcheck(BadSquare.apply, [x])
    assert gradcheck(BadSquare.apply, [x], raise_exception=False) is False
    with pytest.raises(GradcheckError, match="float64"):
        gradcheck(lambda t: t * 2, [kiln.randn(2, requires_grad=True)])


def test_detect_anomaly_names_the_op():
    x = kiln.tensor([-1.0, 1.0], requires_grad=True)
    with kiln.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="forward of 'log'"):
            x.log()
        y = x.abs().sqrt()  # finite forward, but sqrt's gradient at 0 ... not here
        y.sum().backward()
        z = kiln.tensor([0.0], requires_grad=True)
        with pytest.raises(RuntimeError, match="SqrtBackward"):
            z.sqrt().sum().backward()
    assert not kiln.autograd.is_anomaly_enabled()


def test_modifying_a_saved_tensor_in_place_is_detected():
    a = kiln.randn(3, requires_grad=True)
    b = a * 2
    c = b.sigmoid()
    c.mul_(2)  # sigmoid's backward needs its output
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.sum().backward()


def test_backward_non_scalar_needs_gradient():
    x = kiln.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(kiln.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])


def test_backward_inputs_restricts_accumulation():
    a = kiln.tensor([1.0, 2.0], requires_grad=True)
    b = kiln.tensor([3.0, 4.0], requires_grad=True)
    (a * b).sum().backward(inputs=[a])
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])
    assert b.grad is None
    kiln.autograd.backward((a * b).sum(), inputs=[b])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])


def test_repeated_backward_accumulates_in_place():
    w = kiln.tensor([1.0, -2.0], requires_grad=True)
    (w * 3).sum().backward()
    first = w.grad
    (w * w).sum().backward()
    assert w.grad is first  # same buffer, like PyTorch
    np.testing.assert_allclose(w.grad.numpy(), [3 + 2.0, 3 - 4.0])


def test_custom_function_pytorch_style_with_saved_tensors():
    class Scale(Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g * w, (g * x).sum(0)

    x = kiln.randn(4, 3, dtype=kiln.float64, requires_grad=True)
    w = kiln.randn(3, dtype=kiln.float64, requires_grad=True)
    assert gradcheck(Scale.apply, [x, w])
    y = Scale.apply(x, w)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.sum().backward()
