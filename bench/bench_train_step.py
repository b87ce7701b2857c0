"""End-to-end training steps, kiln vs PyTorch CPU, written with each library's modules,
losses and optimizers exactly as a user would (the same code, ``lib`` = kiln or torch):

- MLP 784-256-128-10 (Linear + ReLU), batch 128, cross-entropy, SGD momentum 0.9;
- LeNet-5 on (64, 1, 28, 28): Conv 1->6 k5, ReLU, MaxPool 2, Conv 6->16 k5, ReLU,
  MaxPool 2, Flatten, Linear 256-120-84-10, cross-entropy, SGD momentum 0.9;
- Transformer encoder layer (d_model 128, 4 heads, feed-forward 512, dropout 0.1,
  batch_first, post-norm), batch 16 x T 64, MSE to a fixed target, Adam.

One step = zero_grad, forward, loss, backward, optimizer.step(). kiln's weights are
copied from the PyTorch model (state_dict), and a few steps of both are compared as a
check before timing. FLOPs per step (GEMM/conv work only, forward + 2x backward) are in
the table so GFLOP/s can be read against the machine's peak.

    python bench/bench_train_step.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H


def _mlp(lib):
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def _lenet(lib):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                         nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _encoder(lib):
    return lib.nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.1,
                                          batch_first=True)


def _flops_mlp() -> float:
    return 3 * 2 * 128 * (784 * 256 + 256 * 128 + 128 * 10)


def _flops_lenet() -> float:
    conv = 2 * 64 * (6 * 24 * 24 * 25 + 16 * 8 * 8 * 6 * 25)
    fc = 2 * 64 * (256 * 120 + 120 * 84 + 84 * 10)
    return 3 * (conv + fc)


def _flops_encoder() -> float:
    n, d, t, ff = 16 * 64, 128, 64, 512
    proj = 2 * n * d * (4 * d + 2 * ff)
    attn = 2 * 2 * 16 * t * t * d
    return 3 * (proj + attn)


# name, builder, input shape, target kind, optimizer, flops
CASES = [
    ("MLP 784-256-128-10, batch 128", _mlp, (128, 784), "class", "sgd", _flops_mlp()),
    ("LeNet-5, batch 64", _lenet, (64, 1, 28, 28), "class", "sgd", _flops_lenet()),
    ("Transformer encoder layer d128 h4, 16x64", _encoder, (16, 64, 128), "regress", "adam",
     _flops_encoder()),
]


def _make(lib, case, torch_model=None):
    import numpy as np

    name, build, shape, target, opt, _ = case
    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.standard_normal(shape).astype(np.float32))
    if target == "class":
        y = lib.from_numpy(rng.integers(0, 10, shape[0]).astype(np.int64))
        loss_fn = lib.nn.CrossEntropyLoss()
    else:
        y = lib.from_numpy(rng.standard_normal(shape).astype(np.float32))
        loss_fn = lib.nn.MSELoss()
    model = build(lib)
    if torch_model is not None:
        model.load_state_dict({k: v.detach().numpy() for k, v in torch_model.state_dict().items()})
    model.train()
    params = list(model.parameters())
    optim = lib.optim.SGD(params, lr=0.01, momentum=0.9) if opt == "sgd" \
        else lib.optim.Adam(params, lr=1e-3)

    def step():
        optim.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optim.step()
        return loss

    return model, step


def _check(case) -> str:
    """Both libraries take 3 steps from the same weights; the losses must agree (the
    transformer's dropout masks differ between libraries, so it is checked with dropout
    off via eval-free p=0 models)."""
    import numpy as np
    import torch

    import kiln

    if case[0].startswith("Transformer"):
        case = (case[0], lambda lib: lib.nn.TransformerEncoderLayer(
            128, 4, dim_feedforward=512, dropout=0.0, batch_first=True)) + case[2:]
    torch.manual_seed(0)
    tm, tstep = _make(torch, case)
    km, kstep = _make(kiln, case, tm)
    lt = [float(tstep()) for _ in range(3)]
    lk = [float(kstep()) for _ in range(3)]
    if not np.allclose(lk, lt, rtol=1e-3, atol=1e-5):
        return f"MISMATCH kiln {lk} vs torch {lt}"
    return "ok"


def child(n: int, quick: bool) -> dict:
    import torch

    import kiln

    meta = H.setup_child(n)
    cases = []
    for case in CASES:
        H.log(f"  {case[0]}, {n} thr")
        try:
            check = _check(case)
            torch.manual_seed(0)
            tm, tstep = _make(torch, case)
            _, kstep = _make(kiln, case, tm)
            res = H.measure({"kiln": kstep, "torch": tstep}, budget_s=0.5 if quick else 6.0,
                            min_samples=7, sample_s=0.03, warmup=5)
        except H.KERNEL_ERRORS as exc:  # a layer not yet in kiln: report, don't stop
            check, res = f"missing: {type(exc).__name__}: {exc}", {}
        cases.append({"name": case[0], "flops": case[5], "check": check, "res": res})
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "train_step", "machine": H.machine(), "ratio": H.RATIO_NOTE,
               "runs": runs}
    H.save("train_step", payload)
    return payload


def markdown(payload: dict) -> str:
    rows = []
    for run_ in payload["runs"]:
        for c in run_["cases"]:
            r = c["res"]
            k, t = r.get("kiln", {}), r.get("torch", {})
            ms = [None if "median_s" not in v else v["median_s"] * 1e3 for v in (k, t)]
            gf = [None if m is None else c["flops"] / (m * 1e-3) / 1e9 for m in ms]
            rows.append([c["name"], str(run_["threads"]), H.fmt(ms[0], 2), H.fmt(gf[0]),
                         H.fmt(ms[1], 2), H.fmt(gf[1]), H.ratio2(r, "torch") if r else "—",
                         c["check"], H.fmt(r.get("_other"), 2)])
    hdr = ["model", "thr", "kiln ms/step", "kiln GFLOP/s", "PyTorch ms/step",
           "PyTorch GFLOP/s", "kiln vs torch", "same losses", "other"]
    return "\n".join([
        "One step = zero_grad + forward + loss + backward + optimizer step, both libraries "
        "written with their own nn modules, losses and optimizers; GFLOP/s counts GEMM and "
        f"convolution work only (forward + 2x backward); {payload['ratio']}, on medians "
        "(on best samples). 'same losses': 3 steps from the same weights agree to 1e-3.",
        "", H.md_table(hdr, rows)])


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
