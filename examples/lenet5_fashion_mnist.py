"""LeNet-5 on Fashion-MNIST (28x28 grey images of clothes, 10 classes).

    apt-get install dataset-fashion-mnist   # IDX files in /usr/share/datasets/fashion-mnist
    python examples/lenet5_fashion_mnist.py # ~89-90% test accuracy in 5 epochs

``--data DIR`` reads the four IDX files (gz or raw) from another folder.
"""

import _common as C

import kiln
from kiln import nn
from kiln.data import DataLoader, fashion_mnist
from kiln.data import transforms as T
from kiln.train import evaluate, fit

p = C.parser(__doc__, epochs=5, batch_size=64, lr=2e-3)
p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)
norm = T.Normalize(0.286, 0.353)          # Fashion-MNIST's pixel mean / std
train = fashion_mnist("train", root=args.data, transform=norm)
test = fashion_mnist("test", root=args.data, transform=norm)
train = C.limit(train, args.limit)

# LeNet-5 (LeCun et al. 1998) with ReLU and max pooling; padding 2 makes 28x28 act like 32x32
model = nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),     # 6 x 14 x 14
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),               # 16 x 5 x 5
    nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
opt = kiln.optim.Adam(model.parameters(), lr=args.lr)
sched = kiln.optim.lr_scheduler.OneCycleLR(
    opt, max_lr=args.lr, total_steps=args.epochs * -(-len(train) // args.batch_size))
history = fit(model, nn.CrossEntropyLoss(), opt,
              DataLoader(train, args.batch_size, shuffle=True), DataLoader(test, 1000),
              epochs=args.epochs, scheduler=sched, scheduler_interval="step",
              progress=args.progress)
acc = evaluate(model, None, DataLoader(test, 1000))["accuracy"]
print(f"LeNet-5 on Fashion-MNIST: epochs {len(history.epoch)}, test accuracy {acc:.4f}, "
      f"wall time {timer}")
