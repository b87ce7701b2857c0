"""Activations, softmax and fused cross-entropy: kiln vs PyTorch CPU (and NumPy), float32.

Measured, alternating in one process (see _harness.py), at 1 and 2 threads:
  kiln         kiln.nn.functional.<op> on a Tensor (op layer + allocation + kernel)
  kiln kernel  kiln._cpu.<op>(x, out, ...) with ``out`` preallocated (and <op>_backward)
  torch        torch.nn.functional.<op>
  numpy        a NumPy expression where one is natural (np.maximum(x, 0), np.tanh, ...),
               forward only
Modes: "fwd" (inputs without requires_grad) and "fwd+bwd" (forward, then
``y.backward(g)`` with a preallocated g; the leaf's .grad is reset to None each call).
Sizes: pointwise ops on 1,048,576 elements and on 4,096; softmax / log_softmax over the
last dim of (1000, 1000) and (4, 1024); cross_entropy (mean) on logits (4096, 1000).
GB/s counts bytes read + written once each: a pointwise forward reads x and writes y
(8 B/element), its backward reads g and x (or y) and writes grad_x (12 B/element);
cross_entropy reads the logits (and int64 targets) forward and reads logits + targets +
per-row lse and writes grad_logits backward. Ratio: t_reference / t_kiln (> 1: kiln
faster), on medians. "err" is kiln's max |forward - torch| on the case's input.

    python bench/bench_activation.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

BIG, SMALL = 1 << 20, 4096
NAMES = ["kiln", "kiln kernel", "torch", "numpy"]


def _ops():
    """(name, kiln F call, torch F call, numpy expr or None, kernel name, kernel params,
    backward saves the output?)"""
    import numpy as np

    def softmax_np(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def log_softmax_np(x):
        z = x - x.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    k = 0.7978845608028654
    return [
        ("relu", lambda F, x: F.relu(x), lambda F, x: F.relu(x),
         lambda x: np.maximum(x, 0), "relu", (), False),
        ("leaky_relu", lambda F, x: F.leaky_relu(x, 0.01), lambda F, x: F.leaky_relu(x, 0.01),
         lambda x: np.where(x > 0, x, x * 0.01), "leaky_relu", (0.01,), False),
        ("sigmoid", lambda F, x: F.sigmoid(x), lambda F, x: F.sigmoid(x),
         lambda x: 1 / (1 + np.exp(-x)), "sigmoid", (), True),
        ("tanh", lambda F, x: F.tanh(x), lambda F, x: F.tanh(x), np.tanh, "tanh", (), True),
        ("gelu", lambda F, x: F.gelu(x), lambda F, x: F.gelu(x), None, "gelu", ("none",),
         False),
        ("gelu tanh", lambda F, x: F.gelu(x, approximate="tanh"),
         lambda F, x: F.gelu(x, approximate="tanh"),
         lambda x: 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x * x * x))), "gelu",
         ("tanh",), False),
        ("silu", lambda F, x: F.silu(x), lambda F, x: F.silu(x),
         lambda x: x / (1 + np.exp(-x)), "silu", (), False),
        ("softplus", lambda F, x: F.softplus(x), lambda F, x: F.softplus(x),
         lambda x: np.logaddexp(0, x), "softplus", (1.0, 20.0), False),
        ("elu", lambda F, x: F.elu(x), lambda F, x: F.elu(x),
         lambda x: np.where(x > 0, x, np.expm1(x)), "elu", (1.0,), False),
        ("softmax", lambda F, x: F.softmax(x, dim=-1), lambda F, x: F.softmax(x, dim=-1),
         softmax_np, "softmax", "dim", True),
        ("log_softmax", lambda F, x: F.log_softmax(x, dim=-1),
         lambda F, x: F.log_softmax(x, dim=-1), log_softmax_np, "log_softmax", "dim", True),
    ]


def _shape(name, size):
    if name in ("softmax", "log_softmax"):
        return (1000, 1000) if size == BIG else (4, 1024)
    return (size,)


def _pointwise(op, size, bwd, quick, rng):
    import numpy as np
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF
    from kiln import _cpu

    name, kf, tf, npf, kern, params, uses_out = op
    shape = _shape(name, size)
    params = (len(shape) - 1,) if params == "dim" else params
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    out, gi = np.empty_like(x), np.empty_like(x)
    kfwd, kbwd = getattr(_cpu, kern), getattr(_cpu, kern + "_backward")
    kx, tx = kiln.from_numpy(x), torch.from_numpy(x)
    fns = {}
    if not bwd:
        fns["kiln"] = lambda: kf(KF, kx)
        fns["kiln kernel"] = lambda: kfwd(x, out, *params)
        fns["torch"] = lambda: tf(TF, tx)
        if npf is not None:
            fns["numpy"] = lambda: npf(x)
    else:
        kxg = kiln.tensor(x, requires_grad=True)
        txg = torch.tensor(x, requires_grad=True)
        kg, tg = kiln.from_numpy(g), torch.from_numpy(g)

        def kiln_fb():
            kf(KF, kxg).backward(kg)
            kxg.grad = None

        def kernel_fb():
            kfwd(x, out, *params)
            kbwd(g, out if uses_out else x, gi, *params)

        def torch_fb():
            tf(TF, txg).backward(tg)
            txg.grad = None

        fns.update({"kiln": kiln_fb, "kiln kernel": kernel_fb, "torch": torch_fb})
    res = H.measure(fns, budget_s=0.1 if quick else 1.2, min_samples=5)
    err = None
    with contextlib.suppress(*H.KERNEL_ERRORS):
        err = float(np.abs(kf(KF, kx).numpy() - tf(TF, tx).numpy()).max())
    n = x.size
    return {"name": name, "shape": list(shape), "mode": "fwd+bwd" if bwd else "fwd",
            "bytes": (20 if bwd else 8) * n, "res": res, "err": err}


def _cross_entropy(bwd, quick, rng):
    import numpy as np
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF
    from kiln import _cpu

    n, c = 4096, 1000
    logits = rng.standard_normal((n, c), dtype=np.float32)
    target = rng.integers(0, c, n).astype(np.int64)
    loss, lse = np.empty((), np.float32), np.empty((n,), np.float32)
    gl, one = np.empty_like(logits), np.ones((), np.float32)
    kt, tt = kiln.from_numpy(target), torch.from_numpy(target)

    def kernel_f():
        _cpu.cross_entropy(logits, target, None, loss, lse, -100, 0.0, "mean")

    def kernel_fb():
        kernel_f()
        _cpu.cross_entropy_backward(one, logits, target, None, lse, gl, -100, 0.0, "mean")

    if not bwd:
        kl, tl = kiln.from_numpy(logits), torch.from_numpy(logits)
        fns = {"kiln": lambda: KF.cross_entropy(kl, kt), "kiln kernel": kernel_f,
               "torch": lambda: TF.cross_entropy(tl, tt)}
    else:
        kl = kiln.tensor(logits, requires_grad=True)
        tl = torch.tensor(logits, requires_grad=True)

        def kiln_fb():
            KF.cross_entropy(kl, kt).backward()
            kl.grad = None

        def torch_fb():
            TF.cross_entropy(tl, tt).backward()
            tl.grad = None

        fns = {"kiln": kiln_fb, "kiln kernel": kernel_fb, "torch": torch_fb}
    res = H.measure(fns, budget_s=0.2 if quick else 1.5, min_samples=5)
    err = None
    with contextlib.suppress(*H.KERNEL_ERRORS):
        ref = TF.cross_entropy(torch.from_numpy(logits), tt).item()
        err = abs(float(KF.cross_entropy(kiln.from_numpy(logits), kt).item()) - ref)
    fwd_bytes = 4 * n * c + 8 * n + 4 * n
    nbytes = fwd_bytes + (4 * n * c + 8 * n + 4 * n + 4 * n * c if bwd else 0)
    return {"name": "cross_entropy", "shape": [n, c], "mode": "fwd+bwd" if bwd else "fwd",
            "bytes": nbytes, "res": res, "err": err}


def child(n: int, quick: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    cases = []
    sizes = [BIG] if quick else [BIG, SMALL]
    for op in _ops():
        for size in sizes:
            for bwd in (False, True):
                H.log(f"  {op[0]} {_shape(op[0], size)} {'fwd+bwd' if bwd else 'fwd'}, {n} thr")
                cases.append(_pointwise(op, size, bwd, quick, rng))
    for bwd in (False, True):
        H.log(f"  cross_entropy {'fwd+bwd' if bwd else 'fwd'}, {n} thr")
        cases.append(_cross_entropy(bwd, quick, rng))
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "activation", "machine": H.machine(), "ratio": H.RATIO_NOTE,
               "runs": runs}
    H.save("activation", payload)
    return payload


def _gbs(case, name):
    r = case["res"].get(name, {})
    return case["bytes"] / r["median_s"] * 1e-9 if "median_s" in r else None


def markdown(payload: dict) -> str:
    out = [(f"GB/s (bytes read + written) from medians; {payload['ratio']}, on medians "
           "(on best samples for kiln vs torch).")]
    for run in payload["runs"]:
        rows = []
        for c in run["cases"]:
            shape = "×".join(str(s) for s in c["shape"])
            rows.append([
                c["name"], shape, c["mode"], H.fmt(_gbs(c, "kiln")),
                H.fmt(_gbs(c, "kiln kernel")), H.fmt(_gbs(c, "torch")),
                H.fmt(_gbs(c, "numpy")),
                H.ratio2(c["res"], "torch"),
                H.fmt_ratio(H.ratio(c["res"], "torch", "kiln kernel")),
                H.fmt_ratio(H.ratio(c["res"], "numpy")),
                "—" if c["err"] is None else f"{c['err']:.0e}",
                H.fmt(c["res"].get("_other"), 2),
            ])
        hdr = ["op", "shape", "mode", "kiln GB/s", "kiln kernel", "PyTorch", "NumPy",
               "kiln vs torch", "kernel vs torch", "kiln vs NumPy", "err", "other"]
        out += ["", f"**{run['threads']} thread(s)**", "", H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "1M elements only, short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
