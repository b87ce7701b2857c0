"""Transfer learning: load PyTorch-format safetensors weights into kiln, freeze the backbone,
fine-tune a new head.

A small CNN is pretrained on digits 0-4 -- in PyTorch when torch is installed (saved with
``safetensors.torch.save_file(model.state_dict())``), else in kiln (``kiln.save`` of a
state_dict writes the same flat safetensors file) -- or pass ``--weights FILE``. kiln loads
it with ``kiln.load`` + ``load_state_dict``, freezes everything but the head, swaps the head
for a 5-way one and fine-tunes it on 20 labelled examples per class of digits 5-9. The
script prints the fine-tuned accuracy next to the same model trained from scratch on the
same 100 examples.

    python examples/transfer_learning.py
"""

import os

import _common as C
import numpy as np

import kiln
from kiln import nn
from kiln.data import ArrayDataset, DataLoader, digits
from kiln.train import evaluate, fit

p = C.parser(__doc__, epochs=60, batch_size=20, lr=1e-2)
p.add_argument("--weights", default=None, help="pretrained backbone (safetensors, torch keys)")
p.add_argument("--shots", type=int, default=20, help="labelled examples per new class")
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)
d = digits()
old, new = d.targets < 5, d.targets >= 5


def backbone_and_head(num_classes, lib=nn):
    return lib.Sequential(
        lib.Conv2d(1, 16, 3, padding=1), lib.ReLU(), lib.Conv2d(16, 32, 3, padding=1), lib.ReLU(),
        lib.MaxPool2d(2), lib.Flatten(), lib.Linear(32 * 4 * 4, 64), lib.ReLU(),   # features
        lib.Linear(64, num_classes))                                               # head: [-1]


os.makedirs(args.out, exist_ok=True)
weights = args.weights
if weights is None:
    weights = os.path.join(args.out, "backbone_digits04.safetensors")
    x0, y0 = d.data[old], d.targets[old]
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        torch = None
    if torch is not None:                       # pretrain in PyTorch
        torch.manual_seed(args.seed)
        tm = backbone_and_head(5, torch.nn)
        topt = torch.optim.Adam(tm.parameters(), lr=2e-3)
        xt, yt = torch.from_numpy(x0), torch.from_numpy(y0)
        for _ in range(15):
            for idx in torch.randperm(len(xt)).split(64):
                loss = torch.nn.functional.cross_entropy(tm(xt[idx]), yt[idx])
                topt.zero_grad()
                loss.backward()
                topt.step()
        save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, weights)
        print(f"pretrained in PyTorch on digits 0-4 -> {weights}")
    else:                                       # pretrain in kiln, same file format
        km = backbone_and_head(5)
        fit(km, nn.CrossEntropyLoss(), kiln.optim.Adam(km.parameters(), lr=2e-3),
            DataLoader(ArrayDataset(x0, y0), 64, shuffle=True), epochs=15, progress=False)
        kiln.save(km.state_dict(), weights)
        print(f"pretrained in kiln on digits 0-4 -> {weights}")

# few-shot data for the new classes 5-9 (labels 0-4), the rest of them for testing
xn, yn = d.data[new], d.targets[new] - 5
g = np.random.default_rng(args.seed)
shots = np.concatenate([g.choice(np.flatnonzero(yn == c), args.shots, replace=False)
                        for c in range(5)])
rest = np.setdiff1d(np.arange(len(yn)), shots)
few, test = ArrayDataset(xn[shots], yn[shots]), ArrayDataset(xn[rest], yn[rest])


def finetune(model, params):
    fit(model, nn.CrossEntropyLoss(), kiln.optim.Adam(params, lr=args.lr),
        DataLoader(few, args.batch_size, shuffle=True), epochs=args.epochs, progress=False)
    return evaluate(model, None, DataLoader(test, 500))["accuracy"]


model = backbone_and_head(5)
print(model.load_state_dict(kiln.load(weights)))      # torch-format keys: 0.weight, 0.bias, ...
for prm in model.parameters():
    prm.requires_grad_(False)                           # freeze the backbone
model[-1] = nn.Linear(64, 5)                            # a fresh head for the new classes
frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
tuned = sum(p.numel() for p in model.parameters() if p.requires_grad)
acc_transfer = finetune(model, [q for q in model.parameters() if q.requires_grad])
scratch = backbone_and_head(5)
acc_scratch = finetune(scratch, scratch.parameters())
print(f"transfer learning: {frozen:,} frozen / {tuned:,} trained parameters; test accuracy on "
      f"digits 5-9 from {args.shots} shots per class: fine-tuned head {acc_transfer:.4f}, "
      f"from scratch {acc_scratch:.4f}, wall time {timer}")
