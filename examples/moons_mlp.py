"""Train a 2-layer MLP on two-moons data with plain kiln tensors and autograd (README example)."""
import kiln
import kiln.nn.functional as F

kiln.manual_seed(0)
n = 512                                         # two interleaved half-circles
t, label = kiln.rand(n) * 3.14159, kiln.randint(0, 2, (n,))
s = label.float()
x = kiln.stack([t.cos() * (1 - 2 * s) + s, t.sin() * (1 - 2 * s) + 0.5 * s], 1)
x = x + 0.1 * kiln.randn(n, 2)

params = [(kiln.randn(32, 2) * 0.5).requires_grad_(), kiln.zeros(32, requires_grad=True),
          (kiln.randn(2, 32) * 0.2).requires_grad_(), kiln.zeros(2, requires_grad=True)]
w1, b1, w2, b2 = params
for _ in range(300):
    logits = F.linear(F.linear(x, w1, b1, activation="relu"), w2, b2)
    loss = F.cross_entropy(logits, label)
    loss.backward()
    with kiln.no_grad():                        # plain SGD, step 0.5
        for p in params:
            p -= 0.5 * p.grad
            p.grad = None
accuracy = (logits.argmax(1) == label).float().mean().item()
print(f"loss {loss.item():.3f}  accuracy {accuracy:.3f}")
