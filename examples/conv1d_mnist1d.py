"""A 1-d convolutional network on MNIST-1D (signals of length 40).

    pip install mnist1d                     # the generator (nothing is downloaded)
    python examples/conv1d_mnist1d.py       # >90% test accuracy
"""

import _common as C

import kiln
from kiln import nn
from kiln.data import DataLoader, random_split
from kiln.data import transforms as T
from kiln.train import EarlyStopping, evaluate, fit

p = C.parser(__doc__, epochs=40, batch_size=64, lr=2e-3)
p.add_argument("--data", default=None, help=".npz with x, y, x_test, y_test (else generated)")
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)
full, test = C.mnist1d_data(args.data)
train, val = random_split(full, [0.9, 0.1], generator=args.seed)
train = C.limit(train, args.limit)
full.transform = T.GaussianNoise(0.05)  # light augmentation on the training samples
val_ds = kiln.data.ArrayDataset(full.data[val.indices], full.targets[val.indices])

model = nn.Sequential(
    nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(),
    nn.Conv1d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),        # 40 -> 20
    nn.Conv1d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),        # 20 -> 10
    nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 10, 128), nn.ReLU(), nn.Linear(128, 10))
opt = kiln.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
sched = kiln.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
history = fit(model, nn.CrossEntropyLoss(), opt,
              DataLoader(train, args.batch_size, shuffle=True), DataLoader(val_ds, 500),
              epochs=args.epochs, scheduler=sched,
              callbacks=[EarlyStopping("val_accuracy", patience=10)], progress=args.progress)
acc = evaluate(model, None, DataLoader(test, 500))["accuracy"]
print(f"conv1d on MNIST-1D: epochs {len(history.epoch)}, test accuracy {acc:.4f}, "
      f"wall time {timer}")
