"""DistributedDataParallel and SyncBatchNorm scenarios on this rank; results go to
OUT/ddp_r<rank>.npz for the pytest side, which recomputes them in one process.

Every rank starts from a different seed, so matching the one-process reference also
checks the initial broadcast. Each rank trains on its half of every global batch.

usage: mpirun -n 2 python ddp_worker.py OUT
"""

import sys

import numpy as np
from mpi_common import IN, STEPS, Reordered, WithAux, data, mlp, params, sgd, step

import kiln
import kiln.distributed as dist
from kiln import nn
from kiln.nn.parallel import DistributedDataParallel as DDP

out_dir = sys.argv[1]
dist.init_process_group("mpi")
r, W = dist.get_rank(), dist.get_world_size()
X, Y = data()
half = X.shape[1] // W
sl = slice(r * half, (r + 1) * half)
res = {}


def save(prefix, d):
    for k, v in d.items():
        res[f"{prefix}/{k}"] = np.asarray(v)


# 1. plain DDP, tiny buckets (several all-reduces per backward), 10 SGD-momentum steps
for name, kw in (("ddp", {}), ("view", {"gradient_as_bucket_view": True})):
    ddp = DDP(mlp(100 + r), bucket_cap_mb=0.0005, **kw)
    res[f"{name}/buckets"] = np.array([len(b.params) for b in ddp.reducer.buckets])
    opt = sgd(ddp)
    for s in range(STEPS):
        step(ddp, opt, X[s][sl], Y[s][sl])
    save(name, params(ddp.module))
    # after the first backward the buckets follow the order gradients arrived in
    res[f"{name}/order"] = np.concatenate([b.params for b in ddp.reducer.buckets])
res["state_dict_keys"] = np.array(list(ddp.state_dict()))

# 1b. layers registered in the reverse of their use: buckets rebuilt in arrival order
ddp = DDP(Reordered(100 + r), bucket_cap_mb=0.0005)
res["reorder/order0"] = np.concatenate([b.params for b in ddp.reducer.buckets])
opt = sgd(ddp)
for s in range(STEPS):
    step(ddp, opt, X[s][sl], Y[s][sl])
save("reorder", params(ddp.module))
res["reorder/order"] = np.concatenate([b.params for b in ddp.reducer.buckets])

# 2. no_sync: two micro-batches per step, communication only on the second backward
ddp = DDP(mlp(100 + r), bucket_cap_mb=0.0005)
opt = sgd(ddp)
q = half // 2
for s in range(5):
    opt.zero_grad()
    with ddp.no_sync():
        loss = nn.functional.mse_loss(ddp(kiln.tensor(X[s][sl][:q])), kiln.tensor(Y[s][sl][:q]))
        (loss * 0.5).backward()
    if s == 0:
        res["nosync/local_grad"] = ddp.module[4].weight.grad.numpy().copy()
        res["nosync/reducer_idle"] = np.array(not ddp.reducer.started)
    loss = nn.functional.mse_loss(ddp(kiln.tensor(X[s][sl][q:])), kiln.tensor(Y[s][sl][q:]))
    (loss * 0.5).backward()
    opt.step()
save("nosync", params(ddp.module))

# 3. an unused parameter without find_unused_parameters: the next forward raises
ddp = DDP(WithAux(100 + r))
opt = sgd(ddp)
step(ddp, opt, X[0][sl], Y[0][sl])
try:
    ddp(kiln.tensor(X[1][sl]))
    res["unused_error"] = np.array("no error")
except RuntimeError as e:
    res["unused_error"] = np.array(str(e))

# 4. find_unused_parameters=True: unused everywhere -> .grad stays None, the rest trains
ddp = DDP(WithAux(100 + r), find_unused_parameters=True, bucket_cap_mb=0.0005)
opt = sgd(ddp)
for s in range(STEPS):
    step(ddp, opt, X[s][sl], Y[s][sl])
res["unused_ok/aux_grad_is_none"] = np.array(ddp.module.aux.weight.grad is None)
save("unused_ok", params(ddp.module.body))

# 5. used on rank 0 only: rank 1 contributes zeros to the average
ddp = DDP(WithAux(100 + r), find_unused_parameters=True)
ddp(kiln.tensor(X[0][sl]), use_aux=(r == 0)).pow(2).mean().backward()
res["local_unused/aux_grad"] = ddp.module.aux.weight.grad.numpy().copy()
res["local_unused/body_grad"] = ddp.module.body[0].weight.grad.numpy().copy()

# 6. SyncBatchNorm alone: 2 training steps (outputs, grads, running stats), then eval
rng = np.random.default_rng(7)
XB = rng.standard_normal((2, 4 * W, 3, 5, 5)) * 2 + 1
GB = rng.standard_normal((2, 4 * W, 3, 5, 5))
bn = nn.SyncBatchNorm(3, momentum=0.3).double()
bn.weight.data[...] = [0.5, -1.0, 2.0]
bn.bias.data[...] = [0.1, 0.2, -0.3]
for s in range(2):
    x = kiln.tensor(XB[s][4 * r:4 * r + 4], requires_grad=True)
    y = bn(x)
    y.backward(kiln.tensor(GB[s][4 * r:4 * r + 4]))
    res[f"syncbn/y{s}"] = y.detach().numpy()
    res[f"syncbn/gx{s}"] = x.grad.numpy()
    res[f"syncbn/gw{s}"] = bn.weight.grad.numpy().copy()
    res[f"syncbn/gb{s}"] = bn.bias.grad.numpy().copy()
    bn.zero_grad()
save("syncbn", {k: v.numpy() for k, v in bn.state_dict().items()})
bn.eval()
res["syncbn/eval"] = bn(kiln.tensor(XB[0][4 * r:4 * r + 4])).detach().numpy()

# 7. DDP over a converted model: SyncBatchNorm + bucketed averaging == BatchNorm, 1 process
ddp = DDP(nn.SyncBatchNorm.convert_sync_batchnorm(mlp(200 + r, norm=True)),
          bucket_cap_mb=0.0005)
res["ddp_syncbn/types"] = np.array([type(m).__name__ for m in ddp.module])
opt = sgd(ddp)
for s in range(5):
    step(ddp, opt, X[s][sl], Y[s][sl])
save("ddp_syncbn", params(ddp.module))

np.savez(f"{out_dir}/ddp_r{r}.npz", **res)
dist.destroy_process_group()
assert IN == X.shape[2]
