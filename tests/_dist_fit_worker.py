"""One rank of tests/test_distributed_fit.py (run by mpirun, or alone as a world of size 1).

    python _dist_fit_worker.py OUT MODE        MODE: ddp (DistributedDataParallel) or avg
                                               (a plain model whose optimizer averages the
                                               gradients over ranks before stepping)

Trains a small MLP on a fixed synthetic problem with a global batch of 16 (16 / world per
rank, DistributedSampler without shuffling, so the global batches are the single-process
run's batches), early stopping and a checkpoint; writes OUT/rank{r}.json with the history,
the final weights, what this rank printed on stderr, and how often it saved a checkpoint.
"""

import contextlib
import io
import json
import os
import sys

import numpy as np

import kiln
import kiln.distributed as dist
import kiln.train as T
from kiln import nn
from kiln.data import DataLoader, DistributedSampler, TensorDataset

out, mode = sys.argv[1], sys.argv[2]
dist.init_process_group("mpi")
rank, world = dist.get_rank(), dist.get_world_size()
kiln.set_num_threads(1)
kiln.manual_seed(0)

rng = np.random.default_rng(0)
x = rng.standard_normal((96, 6)).astype(np.float32)
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
train = TensorDataset(kiln.from_numpy(x[:64]), kiln.from_numpy(y[:64]))
val = TensorDataset(kiln.from_numpy(x[64:]), kiln.from_numpy(y[64:]))

model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
opt = kiln.optim.SGD(model.parameters(), lr=0.3, momentum=0.5)
net = model
if mode == "ddp":
    from kiln.nn.parallel import DistributedDataParallel

    net = DistributedDataParallel(model)
elif world > 1:  # average the gradients over ranks by hand before each step
    step = opt.step

    def averaged_step(*a, **k):
        for p in model.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        return step(*a, **k)

    opt.step = averaged_step

sampler = DistributedSampler(train, shuffle=False)
train_loader = DataLoader(train, batch_size=16 // world, sampler=sampler)
val_sampler = DistributedSampler(val, shuffle=False)
val_loader = DataLoader(val, batch_size=8, sampler=val_sampler)

saves = []
real_save = T._save_checkpoint
T._save_checkpoint = lambda *a, **k: (saves.append(1), real_save(*a, **k))
err = io.StringIO()
stop = T.EarlyStopping("val_loss", patience=2, min_delta=0.05, restore_best_weights=False)
with contextlib.redirect_stderr(err):
    hist = T.fit(net, nn.CrossEntropyLoss(), opt, train_loader, val_loader, epochs=12,
                 callbacks=[stop], checkpoint=os.path.join(out, "ckpt.safetensors"),
                 progress=True, metrics={"n_val": lambda t, o: len(t)})
n_saves = len(saves)
# an unsharded loader is evaluated by the calling rank alone: no collective, so rank 0 may
# evaluate by itself; a sharded one gives every rank the whole set's figures
full = T.evaluate(net, nn.CrossEntropyLoss(), DataLoader(val, batch_size=8)) \
    if rank == 0 else None
sharded = T.evaluate(net, nn.CrossEntropyLoss(), val_loader)


def resumable(epochs, path, resume):
    """Dropout with a different seed per rank, shuffled shards: an interrupted run resumed
    from its checkpoint must end with the uninterrupted run's weights, bit for bit."""
    kiln.manual_seed(100 + rank)  # per-rank dropout streams (DDP copies rank 0's weights)
    m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 3))
    o = kiln.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
    w = DistributedDataParallel(m) if mode == "ddp" else m
    if mode != "ddp" and world > 1:
        step_ = o.step

        def avg_step(*a, **k):
            for p in m.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
            return step_(*a, **k)

        o.step = avg_step
    ld = DataLoader(train, batch_size=16 // world, sampler=DistributedSampler(train, seed=3))
    T.fit(w, nn.CrossEntropyLoss(), o, ld, epochs=epochs, checkpoint=path, resume=resume,
          progress=False)
    return {k: v.numpy().tolist() for k, v in m.state_dict().items()}


straight = resumable(4, os.path.join(out, "straight.safetensors"), False)
resumable(2, os.path.join(out, "part.safetensors"), False)  # "interrupted" after 2 epochs
resumed = resumable(4, os.path.join(out, "part.safetensors"), True)
keep = {k: v for k, v in hist.history.items() if k != "time" and k != "samples_per_s"}
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"world": world, "history": keep, "time": hist["time"],
               "weights": {k: v.numpy().tolist() for k, v in model.state_dict().items()},
               "stderr": err.getvalue(), "saves": n_saves, "sampler_epoch": sampler.epoch,
               "stopped_epoch": stop.stopped_epoch, "eval_full": full, "eval_sharded": sharded,
               "resume_exact": straight == resumed}, f)
dist.destroy_process_group()
