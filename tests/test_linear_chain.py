"""linear_chain and the Sequential path that uses it (a run of Linear layers, each maybe
followed by ReLU, as one autograd node): values and every gradient against torch.nn with
copied weights, frozen layers, double backward, hooks, in-place checks, errors, and a float64
gradcheck of the op."""

import numpy as np
import pytest
import torch

import kiln
from kiln import nn
from kiln.autograd import gradcheck
from kiln.ops.linear_chain import LinearChain, linear_chain

from helpers import assert_close


def _pair(spec, bias=True, dtype=torch.float32):
    """torch and kiln Sequentials from spec: ints are Linear widths, "r" a ReLU."""
    torch.manual_seed(0)
    tm, km, prev = [], [], spec[0]
    for s in spec[1:]:
        if s == "r":
            tm.append(torch.nn.ReLU())
            km.append(nn.ReLU())
        else:
            tm.append(torch.nn.Linear(prev, s, bias=bias))
            km.append(nn.Linear(prev, s, bias=bias))
            prev = s
    t, k = torch.nn.Sequential(*tm).to(dtype), nn.Sequential(*km)
    if dtype == torch.float64:
        k = k.double()
    k.load_state_dict({n: v.detach().numpy() for n, v in t.state_dict().items()})
    return t, k


def _inputs(shape, dtype=np.float32, seed=1):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return (kiln.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(x.copy()).requires_grad_())


SPECS = [(16, 12, "r", 6, "r", 3), (16, 12, 6, 3), (16, 12, "r", 6, "r"), (16, 12, "r", 5)]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(8, 16), (3, 5, 16), (16,), (0, 16)])
@pytest.mark.parametrize("bias", [True, False])
def test_sequential_chain_matches_torch(spec, shape, bias):
    t, k = _pair(spec, bias)
    kx, tx = _inputs(shape)
    ko, to = k(kx), t(tx)
    assert type(ko.grad_fn).__name__.startswith(("LinearChain", "_LinearChain"))
    assert_close(ko, to)
    g = np.random.default_rng(2).standard_normal(tuple(to.shape)).astype(np.float32)
    ko.backward(kiln.from_numpy(g))
    to.backward(torch.from_numpy(g))
    assert_close(kx.grad, tx.grad, what="input")
    for (n, kp), tp in zip(k.named_parameters(), t.parameters()):
        assert_close(kp.grad, tp.grad, what=n)


def test_frozen_layers_and_input_without_grad():
    t, k = _pair((16, 12, "r", 6, "r", 3))
    for m in (t[0], k[0]):
        m.weight.requires_grad_(False)
        m.bias.requires_grad_(False)
    x = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    ko, to = k(kiln.from_numpy(x)), t(torch.from_numpy(x))
    (ko * ko).sum().backward()
    (to * to).sum().backward()
    assert k[0].weight.grad is None and k[0].bias.grad is None
    for n in ("2.weight", "2.bias", "4.weight", "4.bias"):
        assert_close(dict(k.named_parameters())[n].grad, dict(t.named_parameters())[n].grad)
    # only the top layer trains: nothing below it is differentiated
    t, k = _pair((16, 12, "r", 6))
    k[0].weight.requires_grad_(False)
    k[0].bias.requires_grad_(False)
    k(kiln.from_numpy(x)).sum().backward()
    assert k[0].weight.grad is None and k[2].weight.grad is not None


def test_double_backward_matches_torch():
    t, k = _pair((6, 5, "r", 4, 2), dtype=torch.float64)
    kx, tx = _inputs((3, 6), np.float64)
    kg, = kiln.autograd.grad((k(kx) ** 2).sum(), kx, create_graph=True)
    tg, = torch.autograd.grad((t(tx) ** 2).sum(), tx, create_graph=True)
    assert_close(kg, tg)
    (kg ** 2).sum().backward()
    (tg ** 2).sum().backward()
    assert_close(kx.grad, tx.grad)
    for (n, kp), tp in zip(k.named_parameters(), t.parameters()):
        assert_close(kp.grad, tp.grad, what=n)


def test_gradcheck_float64():
    rng = np.random.default_rng(5)

    def p(*s):
        return kiln.from_numpy(rng.standard_normal(s)).requires_grad_()

    x, w1, b1, w2, w3, b3 = p(4, 5), p(6, 5), p(6), p(3, 6), p(2, 3), p(2)
    gradcheck(lambda x, w1, b1, w2, w3, b3: linear_chain(
        x, [(w1, b1, "relu"), (w2, None, "relu"), (w3, b3, "none")]), [x, w1, b1, w2, w3, b3])


def test_hooked_module_runs_on_its_own_with_the_same_values():
    t, k = _pair((16, 12, "r", 6, "r", 3))
    kx, tx = _inputs((4, 16))
    ref = k(kx)
    seen = []
    h = k[2].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    out = k(kx)
    assert seen == [(4, 6)] and not isinstance(out.grad_fn, LinearChain)
    assert_close(out, ref)
    out.sum().backward()
    t(tx).sum().backward()
    assert_close(k[0].weight.grad, t[0].weight.grad)
    h.remove()
    assert isinstance(k(kx).grad_fn, LinearChain)


def test_patched_forward_is_respected():
    _, k = _pair((4, 3, "r", 2))
    k[2].forward = lambda x: x * 0
    out = k(kiln.ones(1, 4))
    np.testing.assert_array_equal(out.detach().numpy(), np.zeros((1, 3), np.float32))


def test_in_place_change_of_a_relu_output_is_caught():
    _, k = _pair((4, 3, "r", 2, "r"))
    out = k(kiln.ones(2, 4, requires_grad=True))
    out.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    _, k = _pair((4, 3, "r", 2))  # the last layer's mask is not needed: allowed
    out = k(kiln.ones(2, 4, requires_grad=True))
    out.add_(1.0)
    out.sum().backward()
    assert k[0].weight.grad is not None


def test_weight_modified_in_place_before_backward_is_caught():
    _, k = _pair((4, 3, "r", 2))
    out = k(kiln.ones(2, 4))
    with kiln.no_grad():
        k[2].weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_retain_graph_and_no_grad():
    t, k = _pair((5, 4, "r", 3))
    kx, tx = _inputs((2, 5))
    ko = k(kx)
    ko.sum().backward(retain_graph=True)
    ko.sum().backward()
    t(tx).sum().backward(retain_graph=True)
    t(tx).sum().backward()
    assert_close(kx.grad, tx.grad)
    with kiln.no_grad():
        o = k(kx)
    assert o.grad_fn is None and not o.requires_grad
    assert_close(o, t(tx))


def test_errors_name_linear_and_the_shapes():
    _, k = _pair((16, 12, "r", 6))
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 15\) and weight of shape "
                                         r"\(12, 16\)"):
        k(kiln.ones(2, 15))
    k2 = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"linear: input of shape \(1, 3\) and weight of shape "
                                         r"\(2, 5\)"):
        k2(kiln.ones(1, 4))
    with pytest.raises(TypeError, match="linear: dtype mismatch"):
        k(kiln.ones(2, 16, dtype=kiln.float64))
    with pytest.raises(ValueError, match="linear_chain: activation 'gelu'"):
        linear_chain(kiln.ones(1, 2), [(kiln.ones(2, 2), None, "gelu")])


def test_non_contiguous_input_and_weight():
    t, k = _pair((6, 5, "r", 4, "r", 3))
    w = k[2].weight.detach().numpy().copy()
    k[2].weight = nn.Parameter(kiln.from_numpy(np.ascontiguousarray(w.T)).T)  # a (4, 5) view
    assert not k[2].weight.data.flags.c_contiguous
    x = np.random.default_rng(3).standard_normal((6, 8)).astype(np.float32)
    kx = kiln.from_numpy(x.copy()).requires_grad_()
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ko, to = k(kx.T), t(tx.T)  # (8, 6) transposed views
    assert isinstance(ko.grad_fn, LinearChain)
    assert_close(ko, to)
    ko.sum().backward()
    to.sum().backward()
    assert_close(kx.grad, tx.grad)
    for (n, kp), tp in zip(k.named_parameters(), t.parameters()):
        assert_close(kp.grad, tp.grad, what=n)


def test_post_accumulate_hooks_see_gradients_layer_by_layer():
    """DDP's hooks: with one on a parameter the run goes layer by layer, so the hooks fire in
    backward's order, last layer first (PyTorch's order), with the same gradients."""
    _, k = _pair((5, 4, "r", 3, "r", 2))
    order = []
    for i, p in enumerate(k.parameters()):
        p.register_post_accumulate_grad_hook(lambda t, i=i: order.append(i))
    out = k(kiln.ones(2, 5))
    assert not isinstance(out.grad_fn, LinearChain)
    out.sum().backward()
    assert order == [4, 5, 2, 3, 0, 1]
    _, k2 = _pair((5, 4, "r", 3, "r", 2))  # other models still chain
    assert isinstance(k2(kiln.ones(2, 5)).grad_fn, LinearChain)


def test_shared_layer_and_all_parameters_frozen():
    """One Linear used twice (its gradient is the sum of both uses), then every parameter
    frozen with only the input differentiated."""
    torch.manual_seed(0)
    tl = torch.nn.Linear(6, 6)
    t = torch.nn.Sequential(tl, torch.nn.ReLU(), tl, torch.nn.ReLU(), torch.nn.Linear(6, 2))
    kl = nn.Linear(6, 6)
    k = nn.Sequential(kl, nn.ReLU(), kl, nn.ReLU(), nn.Linear(6, 2))
    k.load_state_dict({n: v.detach().numpy() for n, v in t.state_dict().items()})
    kx, tx = _inputs((5, 6))
    ko, to = k(kx), t(tx)
    assert isinstance(ko.grad_fn, LinearChain)
    (ko ** 2).sum().backward()
    (to ** 2).sum().backward()
    assert_close(kl.weight.grad, tl.weight.grad)
    assert_close(kl.bias.grad, tl.bias.grad)
    assert_close(kx.grad, tx.grad)
    for m in (k, t):
        for p in m.parameters():
            p.requires_grad_(False)
    kx.grad, tx.grad = None, None
    (k(kx) ** 2).sum().backward()
    (t(tx) ** 2).sum().backward()
    assert_close(kx.grad, tx.grad)
