"""Normalization, pooling and dropout: kiln vs PyTorch CPU, float32, forward and
forward+backward, at 1 and 2 threads.

Cases: batch_norm (64, 64, 32, 32) training; layer_norm (16*64, 128) and (4096, 1024) with
affine; max_pool2d and avg_pool2d (64, 64, 32, 32) with kernel 2 stride 2, and kernel 3
stride 2 padding 1; adaptive_avg_pool2d (32, 256, 7, 7) -> 1; dropout (4096, 1024) p = 0.1.
"kiln" is kiln.nn.functional on Tensors (op layer, allocation, kernel); "torch" is
torch.nn.functional. fwd+bwd runs the forward, then ``y.backward(g)`` with a preallocated
g (leaf grads reset each call).

These ops are memory-bound. GB/s counts the bytes that must cross memory once: forward
reads x and writes y (norms also read/write per-row or per-channel statistics, negligible);
max_pool forward writes its int64 indices only when a backward will need them (fwd+bwd);
the backward reads g (and x for the norms, indices for max_pool) and writes grad_x; dropout
regenerates its mask from the seed, so its backward reads g and writes grad_x only.
Ratio: t_torch / t_kiln on medians (> 1: kiln faster).

    python bench/bench_norm_pool.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H


def _cases():
    """(name, shape, label, kiln/torch call f(F, x, params), bytes fn(n_in, n_out, bwd),
    parameter shapes)"""
    bn_shape = (64, 64, 32, 32)

    def norm_bytes(n_in, n_out, bwd):
        return 8 * n_in + (12 * n_in if bwd else 0)

    def pool_bytes(idx):
        def f(n_in, n_out, bwd):
            fwd = 4 * n_in + 4 * n_out + (8 * n_out if idx and bwd else 0)
            return fwd + ((4 + (8 if idx else 0)) * n_out + 4 * n_in if bwd else 0)
        return f

    def drop_bytes(n_in, n_out, bwd):
        return 8 * n_in + (8 * n_in if bwd else 0)

    return [
        ("batch_norm", bn_shape, "training",
         lambda F, x, p: F.batch_norm(x, p[2], p[3], p[0], p[1], True, 0.1, 1e-5),
         norm_bytes, "bn"),
        ("layer_norm", (16 * 64, 128), "affine",
         lambda F, x, p: F.layer_norm(x, (x.shape[-1],), p[0], p[1]), norm_bytes, "ln"),
        ("layer_norm", (4096, 1024), "affine",
         lambda F, x, p: F.layer_norm(x, (x.shape[-1],), p[0], p[1]), norm_bytes, "ln"),
        ("max_pool2d", bn_shape, "k2 s2", lambda F, x, p: F.max_pool2d(x, 2, 2),
         pool_bytes(True), None),
        ("max_pool2d", bn_shape, "k3 s2 p1", lambda F, x, p: F.max_pool2d(x, 3, 2, 1),
         pool_bytes(True), None),
        ("avg_pool2d", bn_shape, "k2 s2", lambda F, x, p: F.avg_pool2d(x, 2, 2),
         pool_bytes(False), None),
        ("avg_pool2d", bn_shape, "k3 s2 p1", lambda F, x, p: F.avg_pool2d(x, 3, 2, 1),
         pool_bytes(False), None),
        ("adaptive_avg_pool2d", (32, 256, 7, 7), "-> 1",
         lambda F, x, p: F.adaptive_avg_pool2d(x, 1), pool_bytes(False), None),
        ("dropout", (4096, 1024), "p=0.1", lambda F, x, p: F.dropout(x, 0.1), drop_bytes, None),
    ]


def _params(kind, shape, lib, grad):
    import numpy as np

    if kind is None:
        return ()
    c = shape[1] if kind == "bn" else shape[-1]
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    b = rng.uniform(-1, 1, c).astype(np.float32)
    mk = (lambda a, g: lib.tensor(a, requires_grad=g))
    out = [mk(w, grad), mk(b, grad)]
    if kind == "bn":
        out += [lib.tensor(np.zeros(c, np.float32)), lib.tensor(np.ones(c, np.float32))]
    return out


def _case(case, bwd, quick, rng):
    import numpy as np
    import torch
    import torch.nn.functional as TF

    import kiln
    import kiln.nn.functional as KF

    name, shape, label, fn, nbytes, kind = case
    x = rng.standard_normal(shape, dtype=np.float32)
    kx = kiln.tensor(x, requires_grad=bwd)
    tx = torch.tensor(x, requires_grad=bwd)
    kp, tp = _params(kind, shape, kiln, bwd), _params(kind, shape, torch, bwd)
    with torch.no_grad():
        out_shape = tuple(fn(TF, torch.from_numpy(x), _params(kind, shape, torch, False)).shape)
    g = rng.standard_normal(out_shape, dtype=np.float32)
    kg, tg = kiln.from_numpy(g), torch.from_numpy(g)
    leaves_k = [kx] + [p for p in kp if p.requires_grad]
    leaves_t = [tx] + [p for p in tp if p.requires_grad]
    if not bwd:
        fns = {"kiln": lambda: fn(KF, kx, kp), "torch": lambda: fn(TF, tx, tp)}
    else:
        def kiln_fb():
            fn(KF, kx, kp).backward(kg)
            for t in leaves_k:
                t.grad = None

        def torch_fb():
            fn(TF, tx, tp).backward(tg)
            for t in leaves_t:
                t.grad = None

        fns = {"kiln": kiln_fb, "torch": torch_fb}
    res = H.measure(fns, budget_s=0.15 if quick else 1.5, min_samples=5)
    err = None
    if name != "dropout":
        with contextlib.suppress(*H.KERNEL_ERRORS):
            kp0, tp0 = _params(kind, shape, kiln, False), _params(kind, shape, torch, False)
            a = fn(KF, kiln.from_numpy(x), kp0).numpy()
            with torch.no_grad():
                b = fn(TF, torch.from_numpy(x), tp0).numpy()
            err = float(np.abs(a - b).max())
    n_in, n_out = x.size, int(np.prod(out_shape))
    return {"name": name, "shape": list(shape), "label": label,
            "mode": "fwd+bwd" if bwd else "fwd", "bytes": nbytes(n_in, n_out, bwd),
            "res": res, "err": err}


def child(n: int, quick: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    cases = []
    for case in _cases():
        for bwd in (False, True):
            H.log(f"  {case[0]} {case[1]} {case[2]} {'fwd+bwd' if bwd else 'fwd'}, {n} thr")
            cases.append(_case(case, bwd, quick, rng))
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "norm_pool", "machine": H.machine(), "ratio": H.RATIO_NOTE,
               "runs": runs}
    H.save("norm_pool", payload)
    return payload


def _gbs(case, name):
    r = case["res"].get(name, {})
    return case["bytes"] / r["median_s"] * 1e-9 if "median_s" in r else None


def _us(case, name):
    r = case["res"].get(name, {})
    return r["median_s"] * 1e6 if "median_s" in r else None


def markdown(payload: dict) -> str:
    out = [(f"Median times; GB/s = bytes that must cross memory / median time; "
            f"{payload['ratio']}, on medians (on best samples).")]
    for run in payload["runs"]:
        rows = []
        for c in run["cases"]:
            shape = "×".join(str(s) for s in c["shape"])
            rows.append([
                c["name"], shape, c["label"], c["mode"], H.fmt(_us(c, "kiln")),
                H.fmt(_us(c, "torch")), H.fmt(_gbs(c, "kiln")), H.fmt(_gbs(c, "torch")),
                H.ratio2(c["res"], "torch"),
                "—" if c["err"] is None else f"{c['err']:.0e}",
                H.fmt(c["res"].get("_other"), 2),
            ])
        hdr = ["op", "shape", "config", "mode", "kiln µs", "torch µs", "kiln GB/s",
               "torch GB/s", "kiln vs torch", "err", "other"]
        out += ["", f"**{run['threads']} thread(s)**", "", H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
