"""Every collective on this rank's deterministic inputs; saves what each call left in its
tensors to OUT/coll_r<rank>.npz (the pytest side recomputes them with NumPy).

usage: mpirun -n W python collectives_worker.py OUT
"""

import sys

import numpy as np
from mpi_common import rank_input

import kiln
import kiln.distributed as dist

out_dir = sys.argv[1]
dist.init_process_group("mpi")
r, W = dist.get_rank(), dist.get_world_size()
res = {"rank": np.array(r), "world": np.array(W)}


def t(name, shape, dtype=np.float32):
    return kiln.tensor(rank_input(name, r, shape, dtype))


for op in ("sum", "avg", "max", "min", "product"):
    for dtype in (np.float32, np.float64):
        key = f"all_reduce_{op}_{np.dtype(dtype).name}"
        x = t(key, (4, 5), dtype)
        if op == "product":
            x = kiln.tensor(1.0 + 0.1 * x.numpy())
        dist.all_reduce(x, op=getattr(dist.ReduceOp, op.upper()))
        res[key] = x.numpy()
x = t("all_reduce_sum_int64", (7,), np.int64)
dist.all_reduce(x)
res["all_reduce_sum_int64"] = x.numpy()

# async: Work.wait() finishes it (AVG's division included)
x = t("all_reduce_async", (3, 3), np.float64)
work = dist.all_reduce(x, op=dist.ReduceOp.AVG, async_op=True)
work.wait()
res["all_reduce_async"] = x.numpy()
res["async_completed"] = np.array(work.is_completed())

# a non-contiguous tensor (a transpose view of a (6, 4) base) is reduced in place
base = t("all_reduce_noncontig", (6, 4), np.float64)
view = base.t()
assert not view.is_contiguous()
dist.all_reduce(view)
res["all_reduce_noncontig"] = base.numpy()  # the view wrote through to its base

for dtype in (np.float32, np.float64):
    key = f"broadcast_{np.dtype(dtype).name}"
    x = t(key, (5,), dtype)
    dist.broadcast(x, src=W - 1)
    res[key] = x.numpy()

x = t("all_gather", (2, 3), np.float64)
outs = [kiln.zeros(2, 3, dtype=kiln.float64) for _ in range(W)]
dist.all_gather(outs, x)
res["all_gather"] = np.stack([o.numpy() for o in outs])

x = t("all_gather_into_tensor", (3, 2), np.float32)
o = kiln.zeros(W * 3, 2)
dist.all_gather_into_tensor(o, x)
res["all_gather_into_tensor"] = o.numpy()

ins = [t(f"reduce_scatter_{i}", (2, 3), np.float64) for i in range(W)]
o = kiln.zeros(2, 3, dtype=kiln.float64)
dist.reduce_scatter(o, ins, op=dist.ReduceOp.SUM)
res["reduce_scatter"] = o.numpy()

for op in ("sum", "max", "avg"):
    key = f"reduce_scatter_tensor_{op}"
    x = t(key, (W * 4,), np.float64)
    o = kiln.zeros(4, dtype=kiln.float64)
    dist.reduce_scatter_tensor(o, x, op=getattr(dist.ReduceOp, op.upper()))
    res[key] = o.numpy()

dist.barrier()
dist.barrier(async_op=True).wait()

objs = [None] * W
dist.all_gather_object(objs, {"rank": r, "name": f"r{r}"})
res["all_gather_object"] = np.array([f"{o['rank']}:{o['name']}" for o in objs])
lst = [f"from {r}", r * 10]
dist.broadcast_object_list(lst, src=W - 1)
res["broadcast_object_list"] = np.array([str(v) for v in lst])

# shape and dtype mismatches raise RuntimeError on every rank, and the group still works
errors = []
for name, call in [
    ("all_reduce", lambda: dist.all_reduce(kiln.ones(2 + r))),
    ("broadcast", lambda: dist.broadcast(kiln.ones(3, dtype=kiln.float64 if r else kiln.float32))),
    ("all_gather_into_tensor", lambda: dist.all_gather_into_tensor(
        kiln.zeros(W * (1 + r)), kiln.ones(1 + r))),
]:
    try:
        call()
        errors.append(f"{name}: no error")
    except RuntimeError as e:
        errors.append(f"{name}: RuntimeError: {e}")
res["errors"] = np.array(errors)
x = kiln.ones(2)
dist.all_reduce(x)
res["after_errors"] = x.numpy()

np.savez(f"{out_dir}/coll_r{r}.npz", **res)
dist.destroy_process_group()
