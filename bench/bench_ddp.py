"""Data-parallel training throughput: LeNet-5 (the Fashion-MNIST example's, 28x28 inputs,
Adam) at a global batch of 128, one rank x 128 against two MPI ranks x 64 with
``DistributedDataParallel``, one thread per rank; and how much of the gradient all-reduce
is hidden behind backward.

The bench process is the parent: it starts ``mpirun -n 2`` on this script (the child),
and rank 0 prints one JSON line. Inside the job the three setups run alternately, round
after round (the first one rotating), so a noisy phase of a shared machine hits them all:

- ``1 rank x 128``: rank 0 trains a plain model (no DDP, no MPI in the step) while rank 1
  sleeps in a polling barrier (it does not spin, so rank 0 has its core to itself);
- ``2 ranks x 64``: DDP with its default buckets (25 MiB, first bucket 1 MiB: LeNet-5's
  61,706 parameters fit in one bucket, reduced when the whole backward is done);
- ``2 ranks x 64, small buckets``: ``bucket_cap_mb=0.05``: the fully-connected layers'
  gradients (ready first) form one bucket whose all-reduce starts while the convolutions'
  backward still runs, the convolutions' the second.

Per step, measured on rank 0: step time (zero_grad, forward, loss, backward, Adam step;
the median of rounds of N steps between barriers), ``backward`` (``loss.backward()``'s
compute, without the wait below), ``wait`` (what DDP's last hook spends waiting for the
outstanding all-reduces after backward's compute; the longer of the two ranks' waits),
made of ``skew`` (the gap between the two ranks' ends of backward, from time stamps on
the host's monotonic clock: the faster rank waits that long for the slower) and
``exposed`` (from the moment the last rank is done until the reductions are: the
communication backward did not hide), and ``all-reduce alone``: the same buckets
all-reduced back to back with nothing else running (after a barrier).
Hidden share = 1 - exposed / all-reduce alone. Also per step: the busier rank's compute
CPU seconds (``time.process_time`` less the CPU its DDP waits burn -- Open MPI polls)
plus the exposed all-reduce: the step time to expect with nothing else running, for a
speedup that other processes sharing the cores do not distort.

    python bench/bench_ddp.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

GLOBAL_BATCH = 128
SMALL_BUCKET_MB = 0.05
SETUPS = ["1 rank x 128", "2 ranks x 64", f"2 ranks x 64, buckets {SMALL_BUCKET_MB} MB"]


def _lenet(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _median(xs: list[float]) -> float | None:
    s = sorted(xs)
    return s[len(s) // 2] if s else None


# ---- child: one MPI rank --------------------------------------------------------------
def child(quick: bool) -> dict | None:
    import numpy as np

    import kiln
    import kiln.distributed as dist
    from kiln import nn
    from kiln.distributed import collectives as C
    from kiln.nn.parallel import distributed as D

    kiln.set_num_threads(1)
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != 2:
        raise SystemExit(f"bench_ddp child: expected 2 ranks, got {world}")
    comm = C._comm("bench_ddp")

    # id(reducer) -> per step (backward compute done, reductions done): perf_counter is
    # CLOCK_MONOTONIC, one clock for every process on the host, so ranks' stamps compare
    stamps: dict[int, list[tuple[float, float]]] = {}
    finalize = D._Reducer._finalize

    spin = [0.0]  # CPU seconds spent waiting in MPI (Open MPI polls: a wait burns CPU)

    def timed_finalize(self):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in self.buckets:
            b.work.wait()
        stamps.setdefault(id(self), []).append((t0, time.perf_counter()))
        spin[0] += time.process_time() - c0
        finalize(self)

    D._Reducer._finalize = timed_finalize

    def sleepy_barrier():  # rank 1 idles without taking a core from rank 0
        req = comm.Ibarrier()
        while not req.Test():
            time.sleep(2e-4)

    rng = np.random.default_rng(rank)
    setups = []
    for name in SETUPS:
        kiln.manual_seed(0)
        model = _lenet(nn)
        per = GLOBAL_BATCH if name.startswith("1 rank") else GLOBAL_BATCH // world
        x = kiln.from_numpy(rng.standard_normal((per, 1, 28, 28)).astype(np.float32))
        y = kiln.from_numpy(rng.integers(0, 10, per).astype(np.int64))
        if name.startswith("1 rank"):
            net = model
        else:
            cap = SMALL_BUCKET_MB if "buckets" in name else None
            net = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=cap)
        opt = kiln.optim.Adam(model.parameters(), lr=1e-3)
        setups.append({"name": name, "net": net, "opt": opt, "x": x, "y": y,
                       "loss": nn.CrossEntropyLoss(), "rounds": [], "cpu": [], "backward": []})

    def step(s, record: bool):
        s["opt"].zero_grad()
        loss = s["loss"](s["net"](s["x"]), s["y"])
        t0 = time.perf_counter()
        loss.backward()
        if record:
            s["backward"].append(time.perf_counter() - t0)
        s["opt"].step()

    def run_setup(s, steps: int, record: bool):
        single = s["name"].startswith("1 rank")
        comm.Barrier()
        t0, c0, spin[0] = time.perf_counter(), time.process_time(), 0.0
        if single:
            if rank == 0:
                for _ in range(steps):
                    step(s, record)
            t, c = time.perf_counter() - t0, time.process_time() - c0
            sleepy_barrier()
        else:
            for _ in range(steps):
                step(s, record)
            c = time.process_time() - c0 - spin[0]
            comm.Barrier()
            t = time.perf_counter() - t0
        if record:
            s["rounds"].append(t / steps)
            s["cpu"].append(c / steps)

    steps, rounds = (4, 3) if quick else (15, 7)
    for s in setups:  # warm-up (allocator, kernels, MPI connections)
        run_setup(s, 2, False)
    for s in setups:
        if not s["name"].startswith("1 rank"):
            stamps.pop(id(s["net"].reducer), None)
    s0 = H._cpu_snapshot()
    for r in range(rounds):
        k = r % len(setups)
        for s in setups[k:] + setups[:k]:
            run_setup(s, steps, True)
    other = H.foreign_load(s0, H._cpu_snapshot())

    # the same buckets all-reduced back to back, nothing else running
    for s in setups:
        if s["name"].startswith("1 rank"):
            continue
        red, alone = s["net"].reducer, []
        for _ in range(4 if quick else 20):
            comm.Barrier()
            t0 = time.perf_counter()
            works = [C._iall_reduce(comm, b.tensor, b.flat, C.ReduceOp.AVG, red.MPI.SUM, True)
                     for b in red.buckets]
            for w in works:
                w.wait()
            alone.append(time.perf_counter() - t0)
        s["alone"] = alone
        s["buckets"] = [int(b.flat.nbytes) for b in red.buckets]
        both = comm.allgather(stamps.get(id(red), []))  # [rank][step] -> (ready, done)
        steps_ = list(zip(*both))  # [step][rank] -> (ready, done)
        # per step: the longest wait of any rank; skew = the spread of the ranks' backward
        # ends; exposed = from the last rank's end until the last rank has its result
        s["wait"] = [max(d - t for t, d in st) for st in steps_]
        s["skew"] = [max(t for t, _ in st) - min(t for t, _ in st) for st in steps_]
        s["exposed"] = [max(0.0, max(d for _, d in st) - max(t for t, _ in st))
                        for st in steps_]
        s["wait_mine"] = [d - t for t, d in both[rank]]
    # compute CPU seconds per step (a rank's CPU time less its waits in DDP): preemption by
    # other processes does not inflate it; the busier rank's, plus the exposed all-reduce,
    # estimates the step time on a machine with nothing else running
    cpus = comm.allgather([s["cpu"] for s in setups])
    out = []
    for j, s in enumerate(setups):
        med = _median(s["rounds"])
        cpu = _median(s["cpu"]) if s["name"].startswith("1 rank") else \
            _median([max(c[j][i] for c in cpus) for i in range(len(s["cpu"]))]) \
            + _median(s["exposed"])
        row = {"name": s["name"], "ranks": 1 if s["name"].startswith("1 rank") else world,
               "per_rank_batch": int(s["x"].shape[0]), "step_s": med,
               "step_min_s": min(s["rounds"]), "cpu_step_s": cpu,
               "steps_per_s": 1 / med, "images_per_s": GLOBAL_BATCH / med,
               "backward_s": _median(s["backward"])}
        if "alone" in s:
            w, a, e = _median(s["wait"]), _median(s["alone"]), _median(s["exposed"])
            row.update({"wait_s": w, "skew_s": _median(s["skew"]), "exposed_s": e,
                        "backward_compute_s": _median([b - x for b, x in
                                                       zip(s["backward"], s["wait_mine"])]),
                        "allreduce_alone_s": a, "buckets_bytes": s["buckets"],
                        "hidden_share": max(0.0, min(1.0, 1 - e / a)) if a else None})
        out.append(row)
    base, base_cpu = out[0]["step_s"], out[0]["cpu_step_s"]
    for row in out:
        row["speedup"] = base / row["step_s"]
        row["speedup_cpu"] = base_cpu / row["cpu_step_s"]
    dist.destroy_process_group()
    if rank != 0:
        return None
    meta = {"threads": 1, "kiln": kiln.__version__, "kiln_isa": kiln.info()["cpu"]["isa"],
            "kiln_isa_supported": kiln.info()["cpu"]["isa_supported"],
            "numpy": np.__version__, "torch": _version("torch"), "mpi4py": _version("mpi4py"),
            "loadavg_start": list(os.getloadavg())}
    return {"threads": 1, "meta": meta, "steps": steps, "rounds": rounds, "_other": other,
            "setups": out}


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "—"


# ---- parent ---------------------------------------------------------------------------
def run(quick: bool = False, threads=None, jobs: int | None = None) -> dict:
    """Launch the 2-rank job ``jobs`` times (default 5, quick 1) and collect rank 0's
    figures from each (``threads`` is ignored: one thread per rank is the point of this
    bench). A synchronous 2-rank step runs at the pace of the slower core, so other
    activity on either core moves the speedup from job to job more than within one: the
    table shows the job with the median speedup, and the spread over all jobs."""
    jobs = jobs or (1 if quick else 5)
    payload = {"bench": "ddp", "machine": H.machine(), "runs": []}
    mpirun = shutil.which("mpirun")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpirun = None
    if mpirun is None:
        payload["error"] = ("mpirun or mpi4py missing: apt-get install openmpi-bin "
                            "libopenmpi-dev; pip install \"kiln[distributed]\"")
        H.save("ddp", payload)
        return payload
    env = dict(os.environ, **{v: "1" for v in H.THREAD_VARS})
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    src = H.HERE.parent / "python"
    if any((src / "kiln").glob("_cpu*.so")):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    cmd = [mpirun, "-n", "2"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if (os.cpu_count() or 1) < 2:
        cmd.append("--oversubscribe")
    cmd += [sys.executable, __file__, "--child"] + (["--quick"] if quick else [])
    for j in range(jobs):
        H.log(f"  mpirun -n 2: LeNet-5, global batch 128, 1 thread per rank (job {j + 1}/{jobs})")
        proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, text=True,
                              timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"bench_ddp: the mpirun job failed ({proc.returncode})")
        payload["runs"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    # the job with the median speedup of the default setup first (the one the table shows)
    key = lambda r: r["setups"][1]["speedup"]  # noqa: E731
    order = sorted(payload["runs"], key=key)
    med = order[len(order) // 2]
    payload["runs"] = [med] + [r for r in payload["runs"] if r is not med]
    H.save("ddp", payload)
    return payload


def markdown(payload: dict) -> str:
    if payload.get("error"):
        return f"Not run: {payload['error']}."
    run_ = payload["runs"][0]
    ms = lambda v, d=1: H.fmt(None if v is None else v * 1e3, d)  # noqa: E731
    rows = []
    for s in run_["setups"]:
        rows.append([s["name"], ms(s["step_s"]), H.fmt(s["steps_per_s"], 2),
                     H.fmt(s["images_per_s"], 0), H.fmt_ratio(s["speedup"]),
                     ms(s["cpu_step_s"]), H.fmt_ratio(s["speedup_cpu"]),
                     ms(s.get("backward_compute_s", s["backward_s"])), ms(s.get("wait_s")),
                     ms(s.get("skew_s")), ms(s.get("exposed_s"), 2),
                     ms(s.get("allreduce_alone_s"), 2),
                     "—" if s.get("hidden_share") is None else f"{100 * s['hidden_share']:.0f}%",
                     " + ".join(f"{b / 1024:.0f}" for b in s.get("buckets_bytes", [])) or "—"])
    hdr = ["setup", "ms/step", "steps/s", "images/s", "speedup", "CPU ms/step",
           "speedup (CPU)", "backward ms", "wait ms",
           "of which skew", "exposed ms", "all-reduce alone ms", "hidden", "buckets KiB"]
    runs = payload["runs"]
    spread = []
    for i, s in enumerate(run_["setups"][1:], 1):
        sp = sorted(r["setups"][i]["speedup"] for r in runs)
        spread.append(f"{s['name']}: median {H.fmt_ratio(sp[len(sp) // 2])}, "
                      f"range {H.fmt_ratio(sp[0])} to {H.fmt_ratio(sp[-1])} "
                      f"({', '.join(H.fmt_ratio(v) for v in sp)})")
    return "\n".join([
        f"LeNet-5 (28x28, Adam), global batch 128, one thread per rank, {len(runs)} mpirun "
        "job(s) of 2 ranks; the table is the job with the median speedup. Within a job, "
        f"medians of {run_['rounds']} rounds of {run_['steps']} steps, the "
        "setups alternating. speedup = 1-rank step time / this step time. 'CPU ms/step': "
        "compute CPU seconds per step of the busier rank (its CPU time less its waits in "
        "DDP, which preemption does not inflate) plus the exposed all-reduce: the step time "
        "to expect with nothing else running; 'speedup (CPU)' from it, a check on the "
        "wall-clock speedup when other processes share the cores. 'backward' is "
        "backward's compute; 'wait' the time DDP then waits for the all-reduces: 'skew' "
        "(for the slower rank to finish its backward) plus 'exposed' (communication left "
        "after the last rank is done); 'all-reduce alone' the same buckets reduced with "
        "nothing else running; hidden = 1 - exposed / alone. other = "
        f"{H.fmt(run_.get('_other'), 2)} cores busy with other processes.",
        "", H.md_table(hdr, rows), "",
        f"Speedup over the {len(runs)} job(s), sorted: " + "; ".join(spread) + "."])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one job of 3 rounds of 4 steps")
    p.add_argument("--jobs", type=int, default=None, help="mpirun jobs (default 5)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        res = child(a.quick)
        if res is not None:
            H.emit(res)
        return 0
    print(markdown(run(a.quick, jobs=a.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
