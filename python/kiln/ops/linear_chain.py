"""linear_chain: a stack of Linear layers (each optionally followed by relu) as one
autograd node -- what ``nn.Sequential(Linear, ReLU, Linear, ..., Linear)`` runs.

Forward: h_0 = x, h_i = act_i(h_{i-1} W_i^T + b_i), each layer one GEMM with bias and
relu in the kernel's write-back (as ``linear``). Backward, from g = dL/dh_n down:
g <- g * (h_i > 0) for a relu layer, dW_i = g^T h_{i-1}, db_i = sum_rows(g),
g <- g W_i; layers below the lowest input that needs a gradient are skipped.

The values and gradients are those of the layers applied one at a time (same kernels,
same order of summation); what the chain saves is the Python between them: one
Function.apply and one engine node for the whole stack instead of one per layer, and
no Tensor per intermediate activation or gradient. The intermediate h_i are private, so
nothing outside can modify them in place. Double backward (create_graph=True) runs the
per-layer formula on recomputed, recorded activations.
"""

from __future__ import annotations

import numpy as np

from kiln import _cpu
from kiln.autograd import Function
from kiln.grad_mode import _mode
from kiln.ops._util import kernels
from kiln.ops.matmul import Linear, _check_linear, _column_sums, _operand, _rows
from kiln.tensor import _wrap

_ndarray = np.ndarray
_empty = np.empty


class LinearChain(Function):
    """``linear_chain(x, w1, b1, ..., wn, bn, acts)``: see the module docstring."""

    @staticmethod
    def forward(ctx, x, *rest):
        acts = rest[-1]
        xs, dt = x.shape, x.dtype
        if len(xs) == 0:
            _check_linear(xs, dt, rest[0], rest[1])
        rows = _rows(xs)
        h = x.reshape(rows, xs[-1]) if len(xs) != 2 else x
        if not h.flags.c_contiguous:  # here, not by a kernel error: raising costs ~13 us
            h = np.ascontiguousarray(h)
        k = _cpu if type(h) is _ndarray else kernels(h)
        hs = [h]
        ws = []
        for i in range(len(acts)):
            w, b = rest[2 * i], rest[2 * i + 1]
            wsh = w.shape
            out = _empty((rows, wsh[0]), dt)
            # The kernel checks its operands: the common call pays for no Python checks
            # (a refused call, ~13 us for the exception, is the rare non-contiguous
            # weight). A 3-D weight of batch 1 would pass it as a batched operand.
            if len(wsh) == 2:
                try:
                    k.matmul(h, w, out, False, True, b, acts[i])
                    hs.append(out)
                    ws.append((w, True))
                    h = out
                    continue
                except (ValueError, TypeError):
                    pass
            hs[-1], out, ww, tb = _layer_slow(k, h, w, b, acts[i], out)
            hs.append(out)
            ws.append((ww, tb))
            h = out
        ctx.hs = hs
        ctx.ws = ws  # the weights as the GEMMs read them, with their trans_b flags
        ctx.acts = acts
        return h if len(xs) == 2 else h.reshape(xs[:-1] + (h.shape[1],))

    @staticmethod
    def backward(ctx, g):
        inputs = ctx.inputs
        if _mode.grad:
            return _chain_double_backward(ctx, g)
        acts, hs, ws = ctx.acts, ctx.hs, ctx.ws
        n = len(acts)
        # the lowest layer whose input needs a gradient: no dX below it
        lowest = 0 if inputs[0].requires_grad else n
        if lowest:
            for i in range(n):
                w, b = inputs[1 + 2 * i], inputs[2 + 2 * i]
                if w.requires_grad or (b is not None and b.requires_grad):
                    lowest = i
                    break
        gd = g.data
        gs = gd.shape
        g2 = gd.reshape(_rows(gs), gs[-1]) if len(gs) != 2 else gd
        if not g2.flags.c_contiguous:
            g2 = np.ascontiguousarray(g2)
        k = _cpu if type(g2) is _ndarray else kernels(g2)
        dt = g2.dtype
        grads = [None] * (len(inputs))
        masked = False  # g2 already carries layer i's relu mask
        for i in range(n - 1, lowest - 1, -1):
            w, b = inputs[1 + 2 * i], inputs[2 + 2 * i]
            if acts[i] == "relu" and not masked:  # one fused pass: g * (out > 0)
                gi = _empty(g2.shape, dt)
                k.relu_backward(g2, hs[i + 1], gi)
                g2 = gi
            if w.requires_grad:
                x2 = hs[i]
                gwd = _empty((g2.shape[1], x2.shape[1]), dt)
                k.matmul(g2, x2, gwd, True, False)  # trans_a: g2 read in place
                gw = _wrap(gwd)
                gw._fresh = True  # a new buffer: the engine may adopt it as .grad
                grads[1 + 2 * i] = gw
            if b is not None and b.requires_grad:
                gb = _wrap(_column_sums(g2) if g2.shape[0] else np.zeros(g2.shape[1], dt))
                gb._fresh = True
                grads[2 + 2 * i] = gb
            if i > lowest or inputs[0].requires_grad:
                ww, tb = ws[i]  # W read as forward did: dX = g W needs the opposite flag
                gx = _empty((g2.shape[0], hs[i].shape[1]), dt)
                masked = i > 0 and acts[i - 1] == "relu"
                if masked:  # the layer below's relu mask in the GEMM's write-back
                    k.matmul_relu_backward(g2, ww, gx, False, not tb, hs[i])
                else:
                    k.matmul(g2, ww, gx, False, not tb)
                g2 = gx
        if inputs[0].requires_grad:
            xd = inputs[0].data
            gx = _wrap(g2 if len(xd.shape) == 2 else g2.reshape(xd.shape))
            gx._fresh = True
            grads[0] = gx
        return tuple(grads)


def _layer_slow(k, h, w, b, act, out):
    """A layer the kernel refused: linear's own check names the problem, or a non-contiguous
    operand is copied (a transposed weight is read in place through trans_b). Returns
    (h as read, out, weight as read, its trans_b flag)."""
    _check_linear(h.shape, h.dtype, w, b)  # raises with linear's message
    if h.flags.c_contiguous and w.flags.c_contiguous and (b is None or b.flags.c_contiguous):
        # nothing to fix here: let the kernel say what is wrong
        k.matmul(h, w, out, False, True, b, act)
    h = np.ascontiguousarray(h)
    ww, tw = _operand(w)
    k.matmul(h, ww, out, False, not tw, None if b is None else np.ascontiguousarray(b), act)
    return h, out, ww, not tw


class _LinearChainOut(LinearChain):
    """The chain whose last layer is relu: its mask is read from the returned output, so
    an in-place change to that output is caught at backward (as ``linear`` does)."""

    saves_output = True


class _LayerCtx:
    """What Linear.backward reads from its ctx, for one layer of a chain."""

    def __init__(self, inputs, act, out):
        self.inputs, self.act, self.out = inputs, act, out


def _chain_double_backward(ctx, g):
    """create_graph: recompute the activations as recorded ops, then Linear's own
    differentiable backward, layer by layer."""
    inputs, acts, hs = ctx.inputs, ctx.acts, ctx.hs
    n = len(acts)
    layer_in = [inputs[0]]
    for i in range(n - 1):
        layer_in.append(Linear.apply(layer_in[i], inputs[1 + 2 * i], inputs[2 + 2 * i], acts[i]))
    grads = [None] * len(inputs)
    for i in range(n - 1, -1, -1):
        w, b = inputs[1 + 2 * i], inputs[2 + 2 * i]
        lctx = _LayerCtx((layer_in[i], w, b, acts[i]), acts[i], hs[i + 1])
        g, grads[1 + 2 * i], grads[2 + 2 * i], _ = Linear.backward(lctx, g)
        if g is None:
            break
    grads[0] = g
    return tuple(grads)


def linear_chain(input, layers):  # noqa: A002 - PyTorch's name for the argument
    """Apply ``layers`` = [(weight, bias or None, activation), ...] in turn, each as
    ``linear(h, weight, bias, activation)`` with activation "none" or "relu", as one
    autograd node (see the module docstring).

    >>> import kiln
    >>> w = kiln.tensor([[1.0, -1.0]])
    >>> layers = [(w, None, "relu"), (kiln.ones(1, 1), None, "none")]
    >>> linear_chain(kiln.tensor([[2.0, 3.0]]), layers)
    tensor([[0.]])
    """
    args = [input]
    acts = []
    for w, b, act in layers:
        if act not in ("none", "relu"):
            raise ValueError(f"linear_chain: activation {act!r} (expected none or relu)")
        args.append(w)
        args.append(b)
        acts.append(act)
    cls = _LinearChainOut if acts[-1] == "relu" else LinearChain
    args.append(tuple(acts))
    return cls.apply(*args)


__all__ = ["LinearChain", "linear_chain"]
