"""kiln.optim.lr_scheduler against torch.optim.lr_scheduler: the lr sequences (every group)
match over 30 steps, including two-group optimizers, state_dict round trips mid-way,
ReduceLROnPlateau driven by a metric sequence, SequentialLR milestones, OneCycleLR's momentum
/ beta1 cycling and step(epoch)'s closed forms."""

import warnings

import numpy as np
import pytest

import kiln
from tests.helpers import torch

KS, TS = kiln.optim.lr_scheduler, torch.optim.lr_scheduler
N = 30


def optimizers(opt_name="SGD", lrs=(0.1, 0.03), **kw):
    """The same two-group optimizer in kiln and torch."""
    kp = [kiln.zeros(2, requires_grad=True), kiln.zeros(3, requires_grad=True)]
    tp = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    kg = [{"params": [p], "lr": lr} for p, lr in zip(kp, lrs, strict=False)]
    tg = [{"params": [p], "lr": lr} for p, lr in zip(tp, lrs, strict=False)]
    return getattr(kiln.optim, opt_name)(kg, **kw), getattr(torch.optim, opt_name)(tg, **kw)


def close(a, b, what):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6,
                               atol=1e-12, err_msg=what)


def drive(ks, ts, kopt, topt, n=N, metric=None):
    close(ks.get_last_lr(), ts.get_last_lr(), "after construction")
    for i in range(n):
        kopt.step()
        topt.step()
        if metric is None:
            ks.step()
            ts.step()
        else:
            ks.step(metric[i])
            ts.step(metric[i])
        close(ks.get_last_lr(), ts.get_last_lr(), f"step {i}")
        close([g["lr"] for g in kopt.param_groups], [g["lr"] for g in topt.param_groups],
              f"group lr step {i}")


SCHEDULES = [
    ("LambdaLR", lambda m: dict(lr_lambda=lambda e: 0.95**e)),
    ("LambdaLR", lambda m: dict(lr_lambda=[lambda e: 1 / (e + 1), lambda e: 0.9**e])),
    ("MultiplicativeLR", lambda m: dict(lr_lambda=lambda e: 0.9)),
    ("StepLR", lambda m: dict(step_size=4, gamma=0.5)),
    ("MultiStepLR", lambda m: dict(milestones=[3, 7, 7, 15], gamma=0.3)),
    ("ConstantLR", lambda m: dict(factor=0.5, total_iters=4)),
    ("LinearLR", lambda m: dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
    ("LinearLR", lambda m: dict(start_factor=1.0, end_factor=0.2, total_iters=25)),
    ("ExponentialLR", lambda m: dict(gamma=0.9)),
    ("PolynomialLR", lambda m: dict(total_iters=12, power=2.0)),
    ("CosineAnnealingLR", lambda m: dict(T_max=10)),
    ("CosineAnnealingLR", lambda m: dict(T_max=7, eta_min=0.001)),
    ("OneCycleLR", lambda m: dict(max_lr=[1.0, 0.5], total_steps=N + 1)),
    ("OneCycleLR", lambda m: dict(max_lr=0.3, total_steps=N + 1, anneal_strategy="linear",
                                  three_phase=True, pct_start=0.25)),
    ("OneCycleLR", lambda m: dict(max_lr=0.3, epochs=4, steps_per_epoch=8, div_factor=10.0,
                                  final_div_factor=100.0, cycle_momentum=False)),
]
SCHED_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(SCHEDULES)]


@pytest.mark.parametrize("name, args", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_schedule_matches_torch(name, args, opt_name):
    kw = {"momentum": 0.9} if opt_name == "SGD" else {}
    kopt, topt = optimizers(opt_name, **kw)
    ks, ts = getattr(KS, name)(kopt, **args(kopt)), getattr(TS, name)(topt, **args(topt))
    for kg, tg in zip(kopt.param_groups, topt.param_groups, strict=True):
        assert kg["initial_lr"] == tg["initial_lr"]
    drive(ks, ts, kopt, topt)
    if name == "OneCycleLR":  # momentum / beta1 cycled like torch's
        key = "momentum" if opt_name == "SGD" else "betas"
        for kg, tg in zip(kopt.param_groups, topt.param_groups, strict=True):
            close(np.ravel(kg[key]), np.ravel(tg[key]), key)


@pytest.mark.parametrize("name, args", [s for s in SCHEDULES if s[0] not in ("LambdaLR",
                                         "MultiplicativeLR")], ids=[
    i for i, s in zip(SCHED_IDS, SCHEDULES, strict=True) if s[0] not in ("LambdaLR",
                                                                        "MultiplicativeLR")])
def test_state_dict_round_trip(name, args):
    kopt, topt = optimizers()
    ks, ts = getattr(KS, name)(kopt, **args(kopt)), getattr(TS, name)(topt, **args(topt))
    drive(ks, ts, kopt, topt, n=10)
    sd = ks.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == ts.state_dict()["last_epoch"]
    # a fresh optimizer + scheduler that load the saved states continue the same sequence
    # (PyTorch's order: build both, then load the optimizer's state, then the scheduler's)
    kopt2, _ = optimizers()
    ks2 = getattr(KS, name)(kopt2, **args(kopt2))
    kopt2.load_state_dict(kopt.state_dict())
    ks2.load_state_dict(sd)
    for i in range(10, N):
        for o in (kopt2, topt):
            o.step()
        ks2.step()
        ts.step()
        close(ks2.get_last_lr(), ts.get_last_lr(), f"step {i}")


def test_lambda_state_dict_keeps_callables():
    kopt, _ = optimizers()
    ks = KS.LambdaLR(kopt, lr_lambda=lambda e: 0.5**e)
    sd = ks.state_dict()
    assert sd["lr_lambdas"] == [None, None]
    ks.load_state_dict(sd)
    kopt.step()
    ks.step()
    close(ks.get_last_lr(), [0.05, 0.015], "after load")


@pytest.mark.parametrize("kw", [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.01),
    dict(mode="min", factor=0.5, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2),
    dict(mode="max", patience=0, threshold_mode="abs", min_lr=[0.01, 0.02], eps=1e-3),
    dict(patience=1, factor=0.2, min_lr=0.005, cooldown=1),
])  # fmt: skip
def test_reduce_lr_on_plateau(kw):
    rng = np.random.default_rng(3)
    metric = list(np.round(1.0 + np.cumsum(rng.normal(0.0, 0.05, N)), 3))
    metric[5:12] = [metric[5]] * 7  # a plateau
    kopt, topt = optimizers()
    ks, ts = KS.ReduceLROnPlateau(kopt, **kw), TS.ReduceLROnPlateau(topt, **kw)
    drive(ks, ts, kopt, topt, metric=metric)
    for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
        assert getattr(ks, key) == getattr(ts, key), key
    sd = ks.state_dict()
    kopt2, _ = optimizers()
    ks2 = KS.ReduceLROnPlateau(kopt2)
    ks2.load_state_dict(sd)
    assert ks2.best == ks.best and ks2.patience == ks.patience and ks2.mode == ks.mode


def test_reduce_lr_on_plateau_reduces():
    kopt, _ = optimizers(lrs=(1.0,))
    s = KS.ReduceLROnPlateau(kopt, patience=2, factor=0.5)
    lrs = []
    for v in [3, 2, 2, 2, 2, 2, 2, 2, 2]:
        s.step(v)
        lrs.append(s.get_last_lr()[0])
    # best 2 at epoch 2; 3 bad epochs (> patience) halve the lr, and again 3 later
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("milestones", [[5], [4, 12]])
def test_sequential_lr(milestones):
    def build(mod, opt):
        scheds = [mod.LinearLR(opt, start_factor=0.1, total_iters=5),
                  mod.CosineAnnealingLR(opt, T_max=8, eta_min=0.001),
                  mod.ExponentialLR(opt, gamma=0.8)][: len(milestones) + 1]
        return mod.SequentialLR(opt, scheds, milestones=milestones)

    kopt, topt = optimizers()
    ks, ts = build(KS, kopt), build(TS, topt)
    drive(ks, ts, kopt, topt, n=12)
    sd = ks.state_dict()
    assert len(sd["_schedulers"]) == len(milestones) + 1
    kopt2, _ = optimizers()
    ks2 = build(KS, kopt2)
    kopt2.load_state_dict(kopt.state_dict())
    ks2.load_state_dict(sd)
    for i in range(12, N):
        for o in (kopt2, topt):
            o.step()
        ks2.step()
        ts.step()
        close(ks2.get_last_lr(), ts.get_last_lr(), f"step {i}")


def test_chained_scheduler():
    kopt, topt = optimizers()
    ks = KS.ChainedScheduler([KS.ConstantLR(kopt, factor=0.5, total_iters=3),
                              KS.ExponentialLR(kopt, gamma=0.9)])
    ts = TS.ChainedScheduler([TS.ConstantLR(topt, factor=0.5, total_iters=3),
                              TS.ExponentialLR(topt, gamma=0.9)])
    drive(ks, ts, kopt, topt)


@pytest.mark.parametrize("name, args", [
    ("StepLR", dict(step_size=3, gamma=0.5)), ("MultiStepLR", dict(milestones=[2, 5])),
    ("ExponentialLR", dict(gamma=0.7)), ("CosineAnnealingLR", dict(T_max=6)),
    ("LinearLR", dict(total_iters=4)), ("ConstantLR", dict(total_iters=3)),
])  # fmt: skip
def test_step_with_epoch_uses_closed_form(name, args):
    kopt, topt = optimizers()
    ks, ts = getattr(KS, name)(kopt, **args), getattr(TS, name)(topt, **args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in [3, 1, 7, 2]:
            kopt.step()
            topt.step()
            ks.step(e)
            ts.step(e)
            close(ks.get_last_lr(), ts.get_last_lr(), f"epoch {e}")


def test_construction_semantics():
    kopt, _ = optimizers()
    s = KS.StepLR(kopt, step_size=2)
    assert s.last_epoch == 0 and s.base_lrs == [0.1, 0.03]
    assert [g["initial_lr"] for g in kopt.param_groups] == [0.1, 0.03]
    with pytest.raises(KeyError, match="initial_lr"):
        KS.StepLR(optimizers()[0], step_size=2, last_epoch=3)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        KS.StepLR(object(), step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step"):
        KS.ExponentialLR(optimizers()[0], gamma=0.5).step()


def test_bad_arguments_raise():
    opt = optimizers()[0]
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        KS.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="mode bogus is unknown"):
        KS.ReduceLROnPlateau(opt, mode="bogus")
    with pytest.raises(ValueError, match="expected 2 min_lrs"):
        KS.ReduceLROnPlateau(opt, min_lr=[0.1])
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        KS.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        KS.LambdaLR(opt, lr_lambda=[lambda e: 1.0])
    with pytest.raises(ValueError, match="total_steps OR"):
        KS.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        KS.OneCycleLR(opt, max_lr=0.1, total_steps=5, anneal_strategy="exp")
    with pytest.raises(ValueError, match="number of milestone points"):
        KS.SequentialLR(opt, [KS.StepLR(opt, 2), KS.StepLR(opt, 3)], milestones=[])
    opt = optimizers()[0]
    one = KS.OneCycleLR(opt, max_lr=0.1, total_steps=2)
    opt.step()
    one.step()
    one.step()
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        one.step()
