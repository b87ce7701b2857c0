"""MLP on the bundled 8x8 handwritten digits (kiln.data.digits), trained with kiln.train.fit.

    python examples/mlp_digits.py            # ~98% test accuracy in a few seconds
"""

import _common as C

import kiln
from kiln import metrics, nn
from kiln.data import DataLoader, digits, train_val_test_split
from kiln.train import EarlyStopping, evaluate, fit

args = C.parser(__doc__, epochs=40, batch_size=32, lr=2e-3).parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)
train, val, test = train_val_test_split(digits(flatten=True), stratify=True, generator=args.seed)
train = C.limit(train, args.limit)

model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
opt = kiln.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
history = fit(model, nn.CrossEntropyLoss(), opt,
              DataLoader(train, args.batch_size, shuffle=True), DataLoader(val, 512),
              epochs=args.epochs, callbacks=[EarlyStopping(patience=8)],
              progress=args.progress)
acc = evaluate(model, None, DataLoader(test, 512))["accuracy"]
model.eval()
with kiln.no_grad():
    x, y = next(iter(DataLoader(test, len(test))))
    f1 = metrics.f1_score(y, model(x), average="macro")
print(f"epochs {len(history.epoch)}, test accuracy {acc:.4f}, macro F1 {f1:.4f}, "
      f"wall time {timer}")
