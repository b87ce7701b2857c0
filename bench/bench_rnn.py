"""Recurrent layers: kiln.nn.LSTM / GRU vs torch.nn.LSTM / GRU on the CPU, float32.

Measured, alternating in one process (see _harness.py), at 1 and 2 threads:
  kiln   kiln.nn.LSTM / GRU on a Tensor (the layer's Python side, the input-projection
         GEMM and the compiled time loop of rnn_forward; backward: rnn_backward + 2 GEMMs)
  torch  torch.nn.LSTM / GRU with the same weights
Cases: input 64, hidden 128, T = 40, B = 32, 1 and 2 layers; "fwd" runs under no_grad,
"fwd+bwd" is ``out.backward(g)`` with a preallocated g (parameter grads reset each call).
GFLOP/s counts the GEMM work: forward 2*T*B*G*H*(IN + H) per layer (G = 4 LSTM, 3 GRU),
fwd+bwd three times that. Ratio: t_torch / t_kiln on medians (> 1: kiln faster). "err" is
kiln's max |output - torch| (forward).

    python bench/bench_rnn.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

IN, HID, T, B = 64, 128, 40, 32


def _case(kind, layers, bwd, quick, rng):
    import numpy as np
    import torch

    import kiln

    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(IN, HID, num_layers=layers)
    km = getattr(kiln.nn, kind)(IN, HID, num_layers=layers)
    km.load_state_dict({k: kiln.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = rng.standard_normal((T, B, IN), dtype=np.float32)
    g = rng.standard_normal((T, B, HID), dtype=np.float32)
    kx, tx = kiln.from_numpy(x), torch.from_numpy(x)
    if not bwd:
        def kiln_f():
            with kiln.no_grad():
                km(kx)

        def torch_f():
            with torch.no_grad():
                tm(tx)
        fns = {"kiln": kiln_f, "torch": torch_f}
    else:
        kg, tg = kiln.from_numpy(g), torch.from_numpy(g)

        def kiln_fb():
            km(kx)[0].backward(kg)
            km.zero_grad()

        def torch_fb():
            tm(tx)[0].backward(tg)
            tm.zero_grad()
        fns = {"kiln": kiln_fb, "torch": torch_fb}
    res = H.measure(fns, budget_s=0.3 if quick else 2.0, min_samples=5)
    with kiln.no_grad(), torch.no_grad():
        err = float(np.abs(km(kx)[0].numpy() - tm(tx)[0].numpy()).max())
    G = 4 if kind == "LSTM" else 3
    flops = sum(2 * T * B * G * HID * ((IN if layer == 0 else HID) + HID)
                for layer in range(layers)) * (3 if bwd else 1)
    return {"name": kind, "layers": layers, "mode": "fwd+bwd" if bwd else "fwd",
            "flops": flops, "res": res, "err": err}


def child(n: int, quick: bool) -> dict:
    import numpy as np

    meta = H.setup_child(n)
    rng = np.random.default_rng(0)
    cases = []
    for kind in ("LSTM", "GRU"):
        for layers in (1, 2):
            for bwd in (False, True):
                H.log(f"  {kind} {layers} layer(s) {'fwd+bwd' if bwd else 'fwd'}, {n} thr")
                cases.append(_case(kind, layers, bwd, quick, rng))
    return {"threads": n, "meta": meta, "cases": cases}


def run(quick: bool = False, threads=(1, 2)) -> dict:
    runs = H.run_per_thread(__file__, list(threads), ["--quick"] if quick else [])
    payload = {"bench": "rnn", "machine": H.machine(), "ratio": H.RATIO_NOTE, "runs": runs}
    H.save("rnn", payload)
    return payload


def _gflops(case, name):
    r = case["res"].get(name, {})
    return case["flops"] / r["median_s"] * 1e-9 if "median_s" in r else None


def _ms(case, name):
    r = case["res"].get(name, {})
    return r["median_s"] * 1e3 if "median_s" in r else None


def markdown(payload: dict) -> str:
    out = [(f"input {IN}, hidden {HID}, T = {T}, B = {B}; ms and GFLOP/s (GEMM work) from "
            f"medians; {payload['ratio']}, on medians (on best samples).")]
    for run in payload["runs"]:
        rows = []
        for c in run["cases"]:
            rows.append([c["name"], str(c["layers"]), c["mode"], H.fmt(_ms(c, "kiln"), 2),
                         H.fmt(_ms(c, "torch"), 2), H.fmt(_gflops(c, "kiln")),
                         H.fmt(_gflops(c, "torch")), H.ratio2(c["res"], "torch"),
                         f"{c['err']:.0e}", H.fmt(c["res"].get("_other"), 2)])
        hdr = ["layer", "layers", "mode", "kiln ms", "PyTorch ms", "kiln GFLOP/s",
               "PyTorch GFLOP/s", "kiln vs torch", "err", "other"]
        out += ["", f"**{run['threads']} thread(s)**", "", H.md_table(hdr, rows)]
    out.append(H.missing_note(payload["runs"]))
    return "\n".join(out)


def main(argv=None) -> int:
    return H.main(__doc__, child, run, markdown, "short budgets", argv)


if __name__ == "__main__":
    sys.exit(main())
