"""LSTM or GRU on MNIST-1D read as a sequence of 40 scalar steps.

    pip install mnist1d                     # the generator (nothing is downloaded)
    python examples/rnn_mnist1d.py --cell gru    # ~90% test accuracy
    python examples/rnn_mnist1d.py --cell lstm
"""

import _common as C

import kiln
from kiln import nn
from kiln.data import DataLoader, random_split
from kiln.train import EarlyStopping, evaluate, fit

p = C.parser(__doc__, epochs=40, batch_size=64, lr=3e-3)
p.add_argument("--cell", choices=["gru", "lstm"], default="gru")
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--data", default=None, help=".npz with x, y, x_test, y_test (else generated)")
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)
full, test = C.mnist1d_data(args.data)
train, val = random_split(full, [0.9, 0.1], generator=args.seed)
train = C.limit(train, args.limit)


class RNNClassifier(nn.Module):
    def __init__(self, cell, hidden):
        super().__init__()
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(1, hidden, num_layers=1, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):                      # x: (N, 1, 40) -> steps (N, 40, 1)
        out, _ = self.rnn(x.transpose(1, 2))
        return self.head(out[:, -1])


model = RNNClassifier(args.cell, args.hidden)
opt = kiln.optim.Adam(model.parameters(), lr=args.lr)
sched = kiln.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
history = fit(model, nn.CrossEntropyLoss(), opt,
              DataLoader(train, args.batch_size, shuffle=True), DataLoader(val, 500),
              epochs=args.epochs, scheduler=sched, clip_grad_norm=1.0,
              callbacks=[EarlyStopping("val_accuracy", patience=10)], progress=args.progress)
acc = evaluate(model, None, DataLoader(test, 500))["accuracy"]
print(f"{args.cell.upper()} on MNIST-1D: epochs {len(history.epoch)}, test accuracy {acc:.4f}, "
      f"wall time {timer}")
