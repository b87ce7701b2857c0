"""kiln.optim against torch.optim (foreach=False): the same initial parameters and the same
per-step gradients must give the same trajectories over 20 steps (float32 and float64), for
every optimizer and several hyperparameter settings, with multiple parameter groups,
parameters that skip steps (grad None), state_dict round trips (kiln -> kiln, torch -> kiln,
kiln -> torch) and lr changes between steps."""

import copy

import numpy as np
import pytest

import kiln
from tests.helpers import torch

STEPS = 20
SHAPES = [(5, 4), (7,), (3, 2, 2), ()]
TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.2}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True}),
    ("Adam", {"lr": 0.01, "betas": (0.3, 0.5), "weight_decay": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "maximize": True, "betas": (0.5, 0.9)}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"alpha": 0.3, "centered": True, "maximize": True, "eps": 1e-4}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1}),
    ("Adagrad", {"weight_decay": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.05, "maximize": True, "eps": 1e-6}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in CASES]


def torch_kwargs(name, kw):
    return dict(kw, foreach=False)  # torch's single-tensor path: kiln's arithmetic order


class Pair:
    """The same parameters in kiln and torch, optimizers built from (groups, kwargs)."""

    def __init__(self, name, kw, dtype, groups=None, seed=0):
        self.name, self.kw, self.dtype = name, kw, dtype
        self.rng = np.random.default_rng(seed)
        init = [self.rng.standard_normal(s).astype(dtype) for s in SHAPES]
        self.kp = [kiln.tensor(a.copy(), requires_grad=True) for a in init]
        self.tp = [torch.tensor(a.copy(), requires_grad=True) for a in init]
        self.groups = groups
        self.kopt = self.make_kiln(self.kp)
        self.topt = self.make_torch(self.tp)

    def _params(self, ps, extra=None):
        if self.groups is None:
            return ps
        return [{"params": [ps[i] for i in idx], **over} for idx, over in self.groups]

    def make_kiln(self, ps):
        return getattr(kiln.optim, self.name)(self._params(ps), **self.kw)

    def make_torch(self, ps):
        return getattr(torch.optim, self.name)(self._params(ps), **torch_kwargs(self.name,
                                                                                 self.kw))

    def step(self, skip=()):
        for i, s in enumerate(SHAPES):
            g = self.rng.standard_normal(s).astype(self.dtype)
            if i in skip:
                self.kp[i].grad, self.tp[i].grad = None, None
            else:
                self.kp[i].grad, self.tp[i].grad = kiln.tensor(g), torch.tensor(g)
        self.kopt.step()
        self.topt.step()

    def check(self, what):
        for i, (k, t) in enumerate(zip(self.kp, self.tp, strict=True)):
            np.testing.assert_allclose(k.detach().numpy(), t.detach().numpy(),
                                       **TOL[self.dtype], err_msg=f"{what}: param {i}")


def no_foreach(groups):
    return [{k: v for k, v in g.items() if k != "foreach"} for g in groups]


def skip_at(step):
    # parameter 1 has no gradient on some steps: its state (and step count) lags behind
    return (1,) if step % 4 == 3 else ()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_trajectory_matches_torch(name, kw, dtype):
    pair = Pair(name, kw, dtype)
    for s in range(STEPS):
        pair.step(skip_at(s))
        pair.check(f"step {s}")
    # the state agrees too (names, values, step counts)
    ksd, tsd = pair.kopt.state_dict(), pair.topt.state_dict()
    assert no_foreach(ksd["param_groups"]) == no_foreach(tsd["param_groups"])
    assert ksd["state"].keys() == tsd["state"].keys()
    for i, st in tsd["state"].items():
        assert list(ksd["state"][i]) == list(st), f"state keys of param {i}"
        for key, v in st.items():
            kv = ksd["state"][i][key]
            assert kv.dtype == (kiln.float32 if key == "step" else kv.dtype)
            np.testing.assert_allclose(kv.numpy(), v.numpy(), **TOL[dtype],
                                       err_msg=f"state {i}.{key}")


GROUP_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}, [([0, 2], {"lr": 0.01}), ([1, 3], {"momentum": 0.5})]),
    ("Adam", {"lr": 0.01}, [([0], {"lr": 0.1, "amsgrad": True}), ([1, 2, 3], {"betas": (0.5, 0.6)})]),
    ("AdamW", {}, [([0, 1], {"weight_decay": 0.5}), ([2, 3], {"lr": 0.05})]),
    ("RMSprop", {}, [([3, 2], {"centered": True}), ([1, 0], {"lr": 0.001, "momentum": 0.3})]),
    ("Adagrad", {"lr": 0.1}, [([0, 1, 2], {"lr_decay": 0.2}), ([3], {"lr": 0.01})]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, kw, groups", GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_param_groups_and_state_dict_round_trips(name, kw, groups, dtype):
    pair = Pair(name, kw, dtype, groups)
    for s in range(10):
        pair.step(skip_at(s))
    pair.check("before save")

    # kiln -> kiln: a fresh optimizer (other hyperparameters) over copies of the parameters
    ksd = copy.deepcopy(pair.kopt.state_dict())
    kp2 = [kiln.tensor(p.detach().numpy().copy(), requires_grad=True) for p in pair.kp]
    kopt2 = getattr(kiln.optim, name)(pair._params(kp2), lr=0.123)
    kopt2.load_state_dict(ksd)
    assert kopt2.state_dict()["param_groups"] == pair.kopt.state_dict()["param_groups"]

    # torch -> kiln: torch's state_dict converted tensor by tensor
    tsd = pair.topt.state_dict()
    conv = {
        "state": {i: {k: kiln.tensor(v.detach().numpy().copy()) for k, v in st.items()}
                  for i, st in tsd["state"].items()},
        "param_groups": copy.deepcopy(tsd["param_groups"]),
    }
    kp3 = [kiln.tensor(p.detach().numpy().copy(), requires_grad=True) for p in pair.tp]
    kopt3 = getattr(kiln.optim, name)(pair._params(kp3))
    kopt3.load_state_dict(conv)
    assert kopt3.state[kp3[0]]["step" if name != "SGD" else "momentum_buffer"].dtype in (
        kiln.float32, kiln.float64)

    # kiln -> torch
    back = {
        "state": {i: {k: torch.from_numpy(v.numpy().copy()) for k, v in st.items()}
                  for i, st in ksd["state"].items()},
        "param_groups": copy.deepcopy(ksd["param_groups"]),
    }
    tp4 = [torch.tensor(p.detach().numpy().copy(), requires_grad=True) for p in pair.tp]
    topt4 = pair.make_torch(tp4)
    topt4.load_state_dict(back)

    for s in range(10, STEPS):
        grads = [pair.rng.standard_normal(sh).astype(dtype) for sh in SHAPES]
        skip = skip_at(s)
        for ps, wrap in ((pair.kp, kiln.tensor), (kp2, kiln.tensor), (kp3, kiln.tensor),
                         (pair.tp, torch.tensor), (tp4, torch.tensor)):
            for i, g in enumerate(grads):
                ps[i].grad = None if i in skip else wrap(g)
        for opt in (pair.kopt, kopt2, kopt3, pair.topt, topt4):
            opt.step()
        for i in range(len(SHAPES)):
            want = pair.tp[i].detach().numpy()
            for label, p in (("kiln", pair.kp[i]), ("kiln->kiln", kp2[i]),
                             ("torch->kiln", kp3[i]), ("kiln->torch", tp4[i])):
                np.testing.assert_allclose(p.detach().numpy(), want, **TOL[dtype],
                                           err_msg=f"{label} step {s} param {i}")


def test_lr_changes_between_steps_take_effect():
    pair = Pair("Adam", {"lr": 0.01}, np.float64)
    ks = kiln.optim.lr_scheduler.StepLR(pair.kopt, step_size=3, gamma=0.5)
    ts = torch.optim.lr_scheduler.StepLR(pair.topt, step_size=3, gamma=0.5)
    for s in range(STEPS):
        pair.step()
        ks.step()
        ts.step()
        pair.kopt.param_groups[0]["betas"] = (0.9 - 0.01 * s, 0.999)
        pair.topt.param_groups[0]["betas"] = (0.9 - 0.01 * s, 0.999)
        pair.check(f"step {s}")
    assert pair.kopt.param_groups[0]["lr"] == pair.topt.param_groups[0]["lr"]


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_training_a_small_model_with_autograd(name):
    """Gradients from kiln's autograd: fit y = x @ w_true with a linear model + bias."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3
    w0, b0 = rng.standard_normal((3, 1)).astype(np.float32), np.zeros(1, np.float32)
    kw = {"lr": 0.05} | ({"momentum": 0.9} if name == "SGD" else {})
    kw_, kb_ = kiln.tensor(w0, requires_grad=True), kiln.tensor(b0, requires_grad=True)
    tw_, tb_ = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    kopt = getattr(kiln.optim, name)([kw_, kb_], **kw)
    topt = getattr(torch.optim, name)([tw_, tb_], foreach=False, **kw)
    kx, ky, tx, ty = kiln.tensor(x), kiln.tensor(y), torch.tensor(x), torch.tensor(y)
    for s in range(STEPS):
        kopt.zero_grad()
        topt.zero_grad()
        kl = ((kx @ kw_ + kb_ - ky) ** 2).mean()
        tl = ((tx @ tw_ + tb_ - ty) ** 2).mean()
        kl.backward()
        tl.backward()
        kopt.step()
        topt.step()
        np.testing.assert_allclose(kl.item(), tl.item(), rtol=1e-5, err_msg=f"loss {s}")
        np.testing.assert_allclose(kw_.detach().numpy(), tw_.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert kw_._version == STEPS  # every step bumped the parameter's version


def test_closure_and_zero_grad():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    opt = kiln.optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    np.testing.assert_allclose(w.detach().numpy(), [0.8, 1.6], rtol=1e-6)
    opt.zero_grad(set_to_none=False)
    assert w.grad is not None and not w.grad.numpy().any()
    opt.zero_grad()
    assert w.grad is None
    before = w.detach().numpy().copy()
    opt.step()  # no gradients: nothing changes
    np.testing.assert_array_equal(w.detach().numpy(), before)


def test_add_param_group_and_defaults():
    a, b = kiln.randn(3, requires_grad=True), kiln.randn(2, requires_grad=True)
    opt = kiln.optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": b, "amsgrad": True})
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["amsgrad"] is True
    assert opt.param_groups[1]["params"] == [b]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    named = kiln.optim.SGD([("w", a), ("b", b)], lr=0.1)
    assert named.param_groups[0]["param_names"] == ["w", "b"]
    assert named.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_step_bumps_version_so_stale_graphs_raise(name):
    w = kiln.randn(3, requires_grad=True)
    opt = getattr(kiln.optim, name)([w], lr=0.1)
    w.grad = kiln.ones(3)
    loss = (w * w).sum()  # saves w for backward
    opt.step()  # modifies w in place
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_module_parameters_train_like_torch(name, tmp_path):
    """model.parameters() of kiln.nn layers, with torch's weights copied in."""
    knet = kiln.nn.Sequential(kiln.nn.Linear(4, 8), kiln.nn.Tanh(), kiln.nn.Linear(8, 2))
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    for kp, tp in zip(knet.parameters(), tnet.parameters(), strict=True):
        kp.data[...] = tp.detach().numpy()
    kw = {"lr": 0.05} | ({"momentum": 0.9, "nesterov": True} if name == "SGD" else {})
    kopt = getattr(kiln.optim, name)(knet.parameters(), **kw)
    topt = getattr(torch.optim, name)(tnet.parameters(), foreach=False, **kw)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    for s in range(STEPS):
        kopt.zero_grad()
        topt.zero_grad()
        kl = ((knet(kiln.tensor(x)) - kiln.tensor(y)) ** 2).mean()
        tl = ((tnet(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
        kl.backward()
        tl.backward()
        kopt.step()
        topt.step()
        np.testing.assert_allclose(kl.item(), tl.item(), rtol=1e-5, err_msg=f"loss {s}")
    for kp, tp in zip(knet.parameters(), tnet.parameters(), strict=True):
        np.testing.assert_allclose(kp.detach().numpy(), tp.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    # the optimizer's state survives kiln.save / kiln.load (safetensors) and resumes exactly
    path = tmp_path / "optim.safetensors"
    kiln.save({"optim": kopt.state_dict()}, path)
    kopt2 = getattr(kiln.optim, name)(knet.parameters(), lr=1.0)
    kopt2.load_state_dict(kiln.load(path)["optim"])
    assert kopt2.state_dict()["param_groups"] == kopt.state_dict()["param_groups"]
    for i, st in kopt.state_dict()["state"].items():
        for key, v in st.items():
            np.testing.assert_array_equal(kopt2.state_dict()["state"][i][key].numpy(), v.numpy())
