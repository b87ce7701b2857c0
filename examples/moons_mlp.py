"""Train a 2-layer MLP on two-moons data with plain kiln tensors and autograd (README example)."""
import math

import kiln
import kiln.nn.functional as F

kiln.manual_seed(0)
n = 512                                              # two interleaved half-circles
t = kiln.rand(n) * math.pi
label = kiln.randint(0, 2, (n,))
side = label.float()
x = kiln.stack([t.cos() * (1 - 2 * side) + side, t.sin() * (1 - 2 * side) + 0.5 * side], 1)
x = x + 0.1 * kiln.randn(n, 2)

w1 = (kiln.randn(32, 2) * 0.5).requires_grad_()
b1 = kiln.zeros(32, requires_grad=True)
w2 = (kiln.randn(2, 32) * 0.2).requires_grad_()
b2 = kiln.zeros(2, requires_grad=True)
for _ in range(300):
    logits = F.linear(F.linear(x, w1, b1, activation="relu"), w2, b2)
    loss = F.cross_entropy(logits, label)
    for p in (w1, b1, w2, b2):
        p.grad = None
    loss.backward()
    with kiln.no_grad():
        for p in (w1, b1, w2, b2):
            p -= 0.5 * p.grad
accuracy = (logits.argmax(1) == label).float().mean().item()
print(f"loss {loss.item():.3f}  accuracy {accuracy:.3f}")
