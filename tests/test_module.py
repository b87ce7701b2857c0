"""kiln.nn.Module, Parameter and the containers against torch.nn's behaviour."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import kiln
from kiln import nn


class KAffine(nn.Module):
    def __init__(self, n: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(kiln.randn(n, n))
        if bias:
            self.bias = nn.Parameter(kiln.zeros(n))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("steps", kiln.zeros((), dtype=kiln.int64))
        self.register_buffer("scratch", kiln.zeros(n), persistent=False)

    def forward(self, x):
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y


class TAffine(torch.nn.Module):
    def __init__(self, n: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n, n))
        if bias:
            self.bias = torch.nn.Parameter(torch.zeros(n))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("scratch", torch.zeros(n), persistent=False)

    def forward(self, x):
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y


def build(lib, affine):
    nn_ = lib.nn
    body = nn_.Sequential(affine(4), nn_.Identity(), affine(4, bias=False))
    return nn_.ModuleDict({"body": body, "heads": nn_.ModuleList([affine(4), affine(4)])})


def test_registry_matches_torch() -> None:
    k, t = build(kiln, KAffine), build(torch, TAffine)
    assert [n for n, _ in k.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in k.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert list(k.state_dict()) == list(t.state_dict())
    assert [n for n, _ in k.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in k.named_children()] == [n for n, _ in t.named_children()]
    assert repr(k).replace("KAffine", "Affine") == repr(t).replace("TAffine", "Affine")
    assert "scratch" not in " ".join(k.state_dict())
    assert len(list(k.parameters(recurse=False))) == 0
    assert k.get_submodule("body.0") is k["body"][0]
    assert k.get_parameter("heads.1.weight") is k["heads"][1].weight


def test_state_dict_roundtrip_with_torch() -> None:
    k, t = build(kiln, KAffine), build(torch, TAffine)
    res = k.load_state_dict(t.state_dict())  # torch tensors are accepted directly
    assert res.missing_keys == [] and res.unexpected_keys == []
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for name in ("body", "heads"):
        km, tm = k[name], t[name]
        for i in range(len(km)):
            got = km[i](kiln.tensor(x)).detach().numpy()
            want = tm[i](torch.tensor(x)).detach().numpy()
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # and back: kiln -> torch
    for p in k.parameters():
        p.data[...] += 1
    t.load_state_dict({n: torch.tensor(v.numpy()) for n, v in k.state_dict().items()})
    for (n, a), (_, b) in zip(k.state_dict().items(), t.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)


def test_load_keeps_parameter_identity_and_bumps_version() -> None:
    m = KAffine(3)
    w = m.weight
    v = w._version
    m.load_state_dict({"weight": np.eye(3), "bias": np.ones(3), "steps": np.array(5)})
    assert m.weight is w and w._version > v
    np.testing.assert_array_equal(w.numpy(force=True), np.eye(3, dtype=np.float32))
    assert m.steps.item() == 5 and m.weight.dtype == kiln.float32


def test_load_state_dict_errors_match_torch() -> None:
    k, t = KAffine(3), TAffine(3)
    sd = {"weight": torch.zeros(3, 3), "extra": torch.zeros(1), "steps": torch.tensor(0)}
    with pytest.raises(RuntimeError) as ke:
        k.load_state_dict(sd)
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(sd)
    assert str(ke.value).replace("KAffine", "TAffine") == str(te.value)
    assert k.load_state_dict(sd, strict=False) == t.load_state_dict(sd, strict=False)
    bad = {"weight": torch.zeros(2, 3), "bias": torch.zeros(3), "steps": torch.tensor(0)}
    with pytest.raises(RuntimeError) as ke:
        k.load_state_dict(bad, strict=False)
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(bad, strict=False)
    assert str(ke.value).replace("KAffine", "TAffine").replace("kiln.", "torch.") == str(te.value)
    with pytest.raises(TypeError):
        k.load_state_dict([1, 2])


def test_setattr_rules() -> None:
    m = KAffine(2)
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        m.weight = kiln.zeros(2, 2)
    m.bias = None
    assert m.bias is None and "bias" not in m.state_dict()
    with pytest.raises(TypeError, match="buffer"):
        m.steps = 3
    m.child = nn.Identity()
    assert "child" in m._modules
    m.child = None
    assert m.child is None
    del m.child
    with pytest.raises(AttributeError, match="no attribute 'child'"):
        _ = m.child
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", kiln.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("forward", kiln.zeros(1))

    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(kiln.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        NoInit()
    with pytest.raises(TypeError, match="kiln.nn.Parameter or None required"):
        m.register_parameter("p", kiln.zeros(2, requires_grad=True) * 2)
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


def test_parameter_marks() -> None:
    t = kiln.ones(2)
    p = nn.Parameter(t)
    assert isinstance(p, nn.Parameter) and isinstance(p, kiln.Tensor)
    assert not isinstance(t, nn.Parameter) and not isinstance(p.detach(), nn.Parameter)
    assert p.requires_grad and p.data is t.data
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor([1., 1.]")
    with pytest.raises(TypeError):
        nn.Parameter(np.ones(2))


def test_tied_parameters_counted_once() -> None:
    a = KAffine(2)
    m = nn.Sequential(a, a)
    assert len(list(m.parameters())) == 2
    assert len(list(m.named_parameters(remove_duplicate=False))) == 4
    assert list(m.state_dict()) == ["0.weight", "0.bias", "0.steps", "1.weight", "1.bias",
                                    "1.steps"]


def test_train_eval_zero_grad_apply_to() -> None:
    m = build(kiln, KAffine)
    assert m.training and all(c.training for c in m.modules())
    assert m.eval() is m and not any(c.training for c in m.modules())
    m.train()
    assert all(c.training for c in m.modules())
    with pytest.raises(ValueError):
        m.train("yes")
    x = kiln.randn(2, 4)
    m["heads"][0](x).sum().backward()
    g = m["heads"][0].weight.grad
    assert g is not None
    m.zero_grad(set_to_none=False)
    assert m["heads"][0].weight.grad is g and float(abs(g).sum()) == 0
    m.zero_grad()
    assert m["heads"][0].weight.grad is None
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen[-1] == "ModuleDict" and seen.count("KAffine") == 4
    w = m["heads"][0].weight
    assert m.double() is m and w.dtype == kiln.float64 and m["heads"][0].weight is w
    assert m["heads"][0].steps.dtype == kiln.int64  # integer buffers keep their dtype
    m.to(kiln.float32)
    assert w.dtype == kiln.float32
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_forward_hooks() -> None:
    m = KAffine(2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append(out.shape) or out + 1)
    out = m(kiln.ones(1, 2))
    np.testing.assert_allclose(out.numpy(force=True), np.ones((1, 2)))
    assert calls == [kiln.Size([1, 2])]
    h1.remove()
    h2.remove()
    assert not m._forward_hooks and not m._forward_pre_hooks
    h3 = m.register_forward_hook(lambda mod, args, kwargs, out: out * 0, with_kwargs=True)
    assert float(abs(m(kiln.ones(1, 2))).sum()) == 0
    h3.remove()


def test_sequential_behaviour_matches_torch() -> None:
    def ops(lib):
        nn_ = lib.nn
        named = nn_.Sequential(OrderedDict([("a", nn_.Identity()), ("b", nn_.Flatten())]))
        s = nn_.Sequential(nn_.Identity(), nn_.Flatten())
        s.append(nn_.Identity())
        s.insert(1, nn_.Flatten(0))
        del s[0]
        names = list(s._modules)
        sub = s[1:]
        return names, repr(s), repr(sub), len(s), type(sub).__name__, repr(named[1:])

    assert ops(kiln) == ops(torch)
    s = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (3, 4)))
    assert s(kiln.zeros(2, 3, 4)).shape == kiln.Size([2, 3, 4])
    assert repr(s) == repr(torch.nn.Sequential(torch.nn.Flatten(),
                                               torch.nn.Unflatten(1, (3, 4))))
    with pytest.raises(IndexError):
        s[5]


def test_modulelist_and_dict() -> None:
    ml = nn.ModuleList([nn.Identity() for _ in range(3)])
    ml.insert(0, nn.Flatten())
    ml += [nn.Identity()]
    assert len(ml) == 5 and list(ml._modules) == [str(i) for i in range(5)]
    del ml[1]
    assert list(ml._modules) == ["0", "1", "2", "3"]
    assert isinstance(ml[-1], nn.Identity) and len(ml[1:3]) == 2
    tl = torch.nn.ModuleList([torch.nn.Flatten(), torch.nn.Identity(), torch.nn.Identity(),
                              torch.nn.Identity()])
    assert repr(ml) == repr(tl)
    with pytest.raises(TypeError):
        ml.extend(nn.Identity())
    md = nn.ModuleDict([("x", nn.Identity())])
    md["y"] = nn.Flatten()
    assert list(md) == ["x", "y"] and "y" in md and len(md) == 2
    assert md.pop("x").__class__ is nn.Identity and list(md.keys()) == ["y"]
    with pytest.raises(ValueError):
        md.update([("a", nn.Identity(), 3)])


def test_init_statistics_and_fans() -> None:
    from torch.nn import init as tinit

    from kiln.nn import init

    kiln.manual_seed(0)
    for shape in [(64, 32), (16, 8, 3, 3), (10, 4, 5)]:
        kt, tt = kiln.empty(*shape), torch.empty(*shape)
        assert init._calculate_fan_in_and_fan_out(kt) == tinit._calculate_fan_in_and_fan_out(tt)
    for nl, p in [("relu", None), ("leaky_relu", 0.2), ("tanh", None), ("linear", None),
                  ("selu", None), ("conv2d", None)]:
        assert init.calculate_gain(nl, p) == pytest.approx(tinit.calculate_gain(nl, p))
    w = kiln.empty(400, 300)
    fan_in, fan_out = 300, 400
    init.kaiming_uniform_(w, a=math.sqrt(5))
    bound = 1 / math.sqrt(fan_in)
    arr = w.numpy()
    assert arr.min() >= -bound and arr.max() <= bound
    assert arr.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    init.xavier_uniform_(w, gain=2.0)
    b = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert abs(w.numpy()).max() <= b and w.numpy().std() == pytest.approx(b / math.sqrt(3),
                                                                          rel=0.02)
    init.xavier_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    init.trunc_normal_(w, mean=1.0, std=2.0, a=0.0, b=3.0)
    assert w.numpy().min() >= 0 and w.numpy().max() <= 3
    init.uniform_(w, -2, 5)
    assert w.numpy().min() >= -2 and w.numpy().max() <= 5
    assert w.numpy().mean() == pytest.approx(1.5, abs=0.05)
    init.normal_(w, 3.0, 0.5)
    assert w.numpy().mean() == pytest.approx(3.0, abs=0.01)
    for rows, cols in [(20, 50), (50, 20), (8, 2, 3)[:2]]:
        q = init.orthogonal_(kiln.empty(rows, cols), gain=1.5).numpy().astype(np.float64)
        gram = q @ q.T if rows <= cols else q.T @ q
        np.testing.assert_allclose(gram, 2.25 * np.eye(min(rows, cols)), atol=1e-5)
    assert init.constant_(kiln.empty(2), 0.25).tolist() == [0.25, 0.25]
    assert init.ones_(kiln.empty(2)).tolist() == [1.0, 1.0]
    assert init.zeros_(kiln.empty(2)).tolist() == [0.0, 0.0]
    assert init.eye_(kiln.empty(2, 3)).tolist() == [[1, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(kiln.empty(3))
    with pytest.raises(ValueError, match="Mode"):
        init.kaiming_uniform_(kiln.empty(2, 2), mode="fan_avg")
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("softsign2")


def test_init_is_seeded() -> None:
    from kiln.nn import init

    kiln.manual_seed(7)
    a = init.kaiming_uniform_(kiln.empty(5, 5)).numpy().copy()
    kiln.manual_seed(7)
    b = init.kaiming_uniform_(kiln.empty(5, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(3)
    c = init.normal_(kiln.empty(3), generator=g).numpy()
    np.testing.assert_allclose(c, np.random.default_rng(3).normal(0, 1, 3), rtol=1e-6)


def test_sequential_linear_relu_fusion_matches_unfused() -> None:
    kiln.manual_seed(3)
    fused = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU())
    plain = nn.Sequential(nn.Linear(7, 5), nn.Linear(5, 3))
    plain.load_state_dict({k.replace("2.", "1."): v for k, v in fused.state_dict().items()})
    x = kiln.randn(4, 7, requires_grad=True)
    y1 = fused(x)
    h = plain[0](x).relu()
    y2 = plain[1](h).relu()
    np.testing.assert_allclose(y1.detach().numpy(), y2.detach().numpy(), rtol=1e-6)
    (y1 * y1).sum().backward()
    g1 = [p.grad.numpy().copy() for p in fused.parameters()] + [x.grad.numpy().copy()]
    x.grad = None
    (y2 * y2).sum().backward()
    g2 = [p.grad.numpy() for p in plain.parameters()] + [x.grad.numpy()]
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # a hook on the ReLU must see its call: fusion steps aside
    seen = []
    fused[1].register_forward_hook(lambda m, a, o: seen.append(o.shape))
    fused(x)
    assert seen == [kiln.Size([4, 5])]


def test_adopted_gradients_do_not_alias() -> None:
    lin = nn.Linear(3, 2)
    x = kiln.randn(4, 3)
    lin(x).sum().backward()
    w1 = lin.weight.grad.numpy().copy()
    lin(x).sum().backward()  # accumulates into the adopted buffer
    np.testing.assert_allclose(lin.weight.grad.numpy(), 2 * w1, rtol=1e-6)
    assert not np.shares_memory(lin.weight.grad.numpy(), lin.bias.grad.numpy())
    # one gradient delivered to two leaves: the second gets a copy
    a = kiln.ones(3, requires_grad=True)
    b = kiln.ones(3, requires_grad=True)
    g = kiln.autograd.fresh(kiln.full((3,), 2.0))
    (a + b).backward(g)
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.data[...] = 0
    assert b.grad.tolist() == [2.0, 2.0, 2.0]
    # a user's gradient tensor is never adopted
    c = kiln.ones(3, requires_grad=True)
    user = kiln.full((3,), 5.0)
    (c * 1).backward(user)
    c.grad.data[...] = 0
    assert user.tolist() == [5.0, 5.0, 5.0]


def test_deepcopy_keeps_parameters_and_ties() -> None:
    import copy

    lin = nn.Linear(3, 2)
    net = nn.Sequential(lin, nn.ReLU(), lin)  # tied: the same Linear twice
    lin(kiln.randn(1, 3)).sum().backward()
    dup = copy.deepcopy(net)
    params = list(dup.parameters())
    assert len(params) == 2 and all(isinstance(p, nn.Parameter) for p in params)
    assert dup[0] is dup[2] and dup[0].weight is not lin.weight
    np.testing.assert_array_equal(dup[0].weight.detach().numpy(), lin.weight.detach().numpy())
    np.testing.assert_array_equal(dup[0].weight.grad.numpy(), lin.weight.grad.numpy())
    dup[0].weight.data[...] = 0
    assert float(abs(lin.weight).sum()) > 0
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(lin.weight * 2)
