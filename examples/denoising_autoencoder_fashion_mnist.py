"""A convolutional denoising autoencoder on Fashion-MNIST: Gaussian noise in, clean image out.
Saves a PNG grid: clean (top row), noisy input (middle), reconstruction (bottom).

    apt-get install dataset-fashion-mnist
    python examples/denoising_autoencoder_fashion_mnist.py     # writes example-out/denoise.png
"""

import os

import _common as C
import numpy as np

import kiln
from kiln import nn
from kiln.data import ArrayDataset, DataLoader, fashion_mnist
from kiln.data.transforms import current_generator
from kiln.train import evaluate, fit

p = C.parser(__doc__, epochs=3, batch_size=64, lr=2e-3)
p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
p.add_argument("--noise", type=float, default=0.3)
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)


class Noisy(ArrayDataset):
    """(clean + noise clipped to [0, 1], clean): fresh noise per epoch, from the loader's seed."""

    def __init__(self, base, sigma):
        super().__init__(base.data, base.targets)
        self.sigma = sigma

    def _fetch_batch(self, idx):
        clean = self.data[idx]
        noise = current_generator().standard_normal(clean.shape).astype(np.float32)
        return np.clip(clean + self.sigma * noise, 0, 1), clean

    def __getitem__(self, i):
        x, y = self._fetch_batch(np.asarray([i]))
        return x[0], y[0]


train = Noisy(fashion_mnist("train", root=args.data), args.noise)
test = Noisy(fashion_mnist("test", root=args.data), args.noise)
train = C.limit(train, args.limit or 20000)

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),                     # 32 x 14 x 14
    nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),                    # 64 x 7 x 7
    nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
    nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())
opt = kiln.optim.Adam(model.parameters(), lr=args.lr)
fit(model, nn.MSELoss(), opt, DataLoader(train, args.batch_size, shuffle=True),
    epochs=args.epochs, progress=args.progress)
mse = evaluate(model, nn.MSELoss(), DataLoader(test, 500, generator=1))["loss"]
noisy_mse = float(np.mean([np.mean((x.numpy() - y.numpy()) ** 2)
                           for x, y in DataLoader(test, 500, generator=1)]))

model.eval()
x, y = next(iter(DataLoader(test, 10, generator=2)))
with kiln.no_grad():
    r = model(x).numpy()
rows = np.concatenate([y.numpy()[:, 0], x.numpy()[:, 0], r[:, 0]])
os.makedirs(args.out, exist_ok=True)
path = C.save_png(os.path.join(args.out, "denoise.png"), C.grid(rows, cols=10, scale=3))
print(f"denoising autoencoder: test MSE {mse:.4f} (noisy input {noisy_mse:.4f}), "
      f"PSNR {10 * np.log10(1 / mse):.1f} dB, saved {path}, wall time {timer}")
