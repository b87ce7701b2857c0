"""gradcheck: backward() against float64 central finite differences (PyTorch's
``torch.autograd.gradcheck``), exported as ``kiln.autograd.gradcheck``.

For every input with ``requires_grad`` (float64), the analytical Jacobian (one backward
per output element, through ``kiln.autograd.grad``) must match the numerical one,
``(f(x + eps) - f(x - eps)) / (2 eps)`` column by column, to ``atol + rtol * |numerical|``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class GradcheckError(RuntimeError):
    pass


def gradcheck(fn: Callable, inputs: Sequence, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Compare backward() with float64 central finite differences.

    ``inputs`` are Tensors (those with ``requires_grad`` are checked; they should be
    float64). Every output element's gradient row is compared with
    ``(f(x + eps) - f(x - eps)) / (2 eps)``.

    Example:
        >>> import kiln
        >>> x = kiln.randn(3, dtype=kiln.float64, requires_grad=True)
        >>> kiln.autograd.gradcheck(lambda t: (t * t).sum(), [x])
        True
    """
    from kiln.autograd import grad
    from kiln.tensor import Tensor

    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    diff = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    for t in diff:
        if t.data.dtype != np.float64:
            raise GradcheckError(
                f"gradcheck: input of shape {tuple(t.shape)} is {t.dtype}; use float64 inputs"
            )

    def outputs():
        out = fn(*inputs)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o for o in out if isinstance(o, Tensor)]

    outs = outputs()
    flat_sizes = [o.data.size for o in outs]
    # analytical jacobian rows: one backward per output element
    analytical = [np.zeros((sum(flat_sizes), t.data.size)) for t in diff]
    row = 0
    for o in outs:
        for k in range(o.data.size):
            seed = np.zeros(o.data.shape, dtype=o.data.dtype)
            seed.reshape(-1)[k] = 1.0
            if not o.requires_grad:
                row += 1
                continue
            gs = grad(o, diff, grad_outputs=Tensor(seed), retain_graph=True, allow_unused=True)
            for j, g in enumerate(gs):
                if g is not None:
                    analytical[j][row] = g.data.reshape(-1)
            row += 1
    numerical = [np.zeros_like(a) for a in analytical]
    # numerical jacobian columns (grad mode stays on: fn may itself differentiate, e.g. a
    # gradient penalty)
    for j, t in enumerate(diff):
        flat = t.data.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            plus = np.concatenate([o.data.reshape(-1).astype(np.float64) for o in outputs()])
            flat[i] = orig - eps
            minus = np.concatenate([o.data.reshape(-1).astype(np.float64) for o in outputs()])
            flat[i] = orig
            numerical[j][:, i] = (plus - minus) / (2 * eps)
    for j, t in enumerate(diff):
        a, n = analytical[j], numerical[j]
        if not np.allclose(a, n, atol=atol, rtol=rtol):
            bad = np.unravel_index(np.argmax(np.abs(a - n) - rtol * np.abs(n)), a.shape)
            msg = (
                f"gradcheck: Jacobian mismatch for input {j} of shape {tuple(t.shape)} at "
                f"(output {bad[0]}, input {bad[1]}): analytical {a[bad]:.8g} vs numerical "
                f"{n[bad]:.8g}"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
