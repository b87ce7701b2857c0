import kiln
from kiln import nn

kiln.manual_seed(0)
n = 512                                         # two interleaved half-circles
t, label = kiln.rand(n) * 3.14159, kiln.randint(0, 2, (n,))
s = label.float()
x = kiln.stack([t.cos() * (1 - 2 * s) + s, t.sin() * (1 - 2 * s) + 0.5 * s], 1)
x = x + 0.1 * kiln.randn(n, 2)

model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
loss_fn = nn.CrossEntropyLoss()
optimizer = kiln.optim.Adam(model.parameters(), lr=0.05)
for _ in range(200):
    optimizer.zero_grad()
    logits = model(x)
    loss = loss_fn(logits, label)
    loss.backward()
    optimizer.step()
accuracy = (logits.argmax(1) == label).float().mean().item()
print(f"loss {loss.item():.3f}  accuracy {accuracy:.3f}")
kiln.save(model.state_dict(), "moons.safetensors")  # loads into the same torch.nn model too
