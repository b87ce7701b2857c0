"""Data-parallel LeNet-5 on Fashion-MNIST: DistributedDataParallel over MPI ranks.

    mpirun -n 2 python examples/ddp_fashion_mnist.py   # 2 ranks (root: add --allow-run-as-root)
    kiln launch -n 2 examples/ddp_fashion_mnist.py     # the same, with this Python
    python examples/ddp_fashion_mnist.py               # one process: a world of size 1

The global batch (--batch-size, 128) is fixed: each of the W ranks takes batch / W samples
per step from its DistributedSampler shard, DDP averages the gradients, so every step
sees the same 128 samples whatever W is (the sampler's epoch permutation is the same on
every rank, and rank r takes its positions r, r + W, ...) -- 2 ranks train the same model
as 1 process, up to floating-point summation order, in about half the time on 2 cores.
Each rank uses --threads CPU threads (1). Rank 0 prints, and writes the checkpoint and the
history under --out. Needs Open MPI and mpi4py (``pip install "kiln[distributed]"``) for
more than one rank; one process runs without them.
"""

import json
import os

import _common as C

import kiln
import kiln.distributed as dist
from kiln import nn
from kiln.data import DataLoader, DistributedSampler, fashion_mnist
from kiln.data import transforms as T
from kiln.train import fit

p = C.parser(__doc__, epochs=3, batch_size=128, lr=2e-3)
p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
p.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
args = p.parse_args()
timer = C.Timer()
if dist.is_available():
    dist.init_process_group("mpi")
world = dist.get_world_size() if dist.is_initialized() else 1
rank = dist.get_rank() if dist.is_initialized() else 0
if args.batch_size % world:
    raise SystemExit(f"--batch-size {args.batch_size} must be divisible by the {world} ranks")
per_rank = args.batch_size // world
kiln.set_num_threads(args.threads)
kiln.manual_seed(args.seed)  # the same on every rank (DDP also copies rank 0's weights)

norm = T.Normalize(0.286, 0.353)  # Fashion-MNIST's pixel mean / std
train = C.limit(fashion_mnist("train", root=args.data, transform=norm), args.limit)
test = fashion_mnist("test", root=args.data, transform=norm)
sampler = DistributedSampler(train, world, rank, shuffle=True, seed=args.seed)
train_loader = DataLoader(train, per_rank, sampler=sampler)
# each rank evaluates its shard of the test set; fit sums the counts over ranks
test_loader = DataLoader(test, 500, sampler=DistributedSampler(test, world, rank, shuffle=False))

model = nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),     # 6 x 14 x 14
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),               # 16 x 5 x 5
    nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
net = nn.parallel.DistributedDataParallel(model) if dist.is_initialized() else model
opt = kiln.optim.Adam(model.parameters(), lr=args.lr)
sched = kiln.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr,
                                           total_steps=args.epochs * len(train_loader))
history = fit(net, nn.CrossEntropyLoss(), opt, train_loader, test_loader, epochs=args.epochs,
              scheduler=sched, scheduler_interval="step", progress=args.progress,
              checkpoint=os.path.join(args.out, "ddp_lenet5.safetensors"))
if rank == 0:  # the History is the same on every rank; one writes it
    with open(os.path.join(args.out, "ddp_history.json"), "w") as f:
        json.dump(history.history, f, indent=1)
    print(f"LeNet-5 on Fashion-MNIST, {world} rank(s) x batch {per_rank} = global batch "
          f"{args.batch_size}, {args.threads} thread(s) per rank: epochs "
          f"{len(history.epoch)}, test accuracy {history['val_accuracy'][-1]:.4f}, "
          f"{history['samples_per_s'][-1]:.0f} samples/s in the last epoch, wall time {timer}")
if dist.is_initialized():
    dist.destroy_process_group()
