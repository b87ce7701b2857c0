"""A DCGAN-style GAN on the bundled 8x8 digits: transposed-convolution generator, strided-
convolution discriminator, batch norm, Adam(0.5, 0.999). Saves a 10x10 grid of samples.

    python examples/dcgan_digits.py         # writes example-out/gan_samples.png

The metric: a digits classifier (an MLP trained first, ~97%) labels 500 generated samples;
it prints the mean confidence and how many of the 10 classes the samples cover.
"""

import os

import _common as C

import kiln
from kiln import nn
from kiln.data import DataLoader, digits

p = C.parser(__doc__, epochs=150, batch_size=64, lr=2e-3)
p.add_argument("--z", type=int, default=32)
args = p.parse_args()
timer = C.Timer()
kiln.manual_seed(args.seed)
data = digits()
data.data = data.data * 2 - 1                          # tanh range
data = C.limit(data, args.limit)

G = nn.Sequential(
    nn.Linear(args.z, 128 * 2 * 2), nn.Unflatten(1, (128, 2, 2)), nn.BatchNorm2d(128), nn.ReLU(),
    nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),   # 4x4
    nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1), nn.Tanh())                         # 8x8
D = nn.Sequential(
    nn.Conv2d(1, 64, 4, stride=2, padding=1), nn.LeakyReLU(0.2),                          # 4x4
    nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),  # 2x2
    nn.Flatten(), nn.Linear(128 * 2 * 2, 1))
optG = kiln.optim.Adam(G.parameters(), lr=args.lr / 4, betas=(0.5, 0.999))
optD = kiln.optim.Adam(D.parameters(), lr=args.lr / 4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
loader = DataLoader(data, args.batch_size, shuffle=True, drop_last=len(data) > args.batch_size)
for epoch in range(args.epochs):
    for real, _ in loader:
        n = real.shape[0]
        fake = G(kiln.randn(n, args.z))
        lossD = bce(D(real), kiln.full((n, 1), 0.9)) + bce(D(fake.detach()), kiln.zeros(n, 1))
        optD.zero_grad()
        lossD.backward()
        optD.step()
        lossG = bce(D(fake), kiln.ones(n, 1))
        optG.zero_grad()
        lossG.backward()
        optG.step()
    if args.progress or (epoch + 1) % 25 == 0:
        print(f"epoch {epoch + 1}: loss D {lossD.item():.3f}  loss G {lossG.item():.3f}")

# judge the samples with a classifier trained on the real digits
clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = kiln.optim.Adam(clf.parameters(), lr=3e-3)
for _ in range(15):
    for x, y in DataLoader(digits(), 64, shuffle=True):
        loss = nn.functional.cross_entropy(clf(x * 2 - 1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
G.eval()
with kiln.no_grad():
    samples = G(kiln.randn(500, args.z))
    probs = clf(samples).softmax(1).numpy()
conf, covered = probs.max(1).mean(), len(set(probs.argmax(1).tolist()))
os.makedirs(args.out, exist_ok=True)
imgs = (samples.numpy()[:100, 0] + 1) / 2
path = C.save_png(os.path.join(args.out, "gan_samples.png"), C.grid(imgs, cols=10, scale=4))
print(f"DCGAN on digits: classifier confidence on samples {conf:.3f}, classes covered "
      f"{covered}/10, saved {path}, wall time {timer}")
