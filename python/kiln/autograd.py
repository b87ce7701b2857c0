"""Reverse-mode automatic differentiation: graph nodes, backward(), grad modes, gradcheck.

The graph is dynamic: every op that sees an input with ``requires_grad`` creates a
``Function`` node holding its inputs and whatever its forward saved, and the output
tensor points at that node through ``grad_fn``. ``backward()`` walks the nodes
reachable from the root in topological order (Kahn's algorithm over consumer
counts), so each node runs once, after every consumer of its output has added its
share of the gradient.

Backward formulas are written with kiln ops on Tensors, so they run on any device
and, with ``create_graph=True``, are themselves differentiable. Ops whose backward
is a dedicated compiled kernel set ``once_differentiable = True`` and refuse a
``create_graph`` pass with a clear error instead of returning a silently wrong
second derivative.

Example:
    >>> import kiln
    >>> x = kiln.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4.])
"""

from __future__ import annotations

import weakref

import numpy as np

__all__ = [
    "Function",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "gradcheck",
    "GradcheckError",
    "detect_anomaly",
    "set_detect_anomaly",
    "is_anomaly_enabled",
]


from kiln.grad_mode import (  # noqa: E402  (re-exported: kiln.autograd.no_grad, ...)
    _mode,
    detect_anomaly,
    enable_grad,
    is_anomaly_enabled,
    is_grad_enabled,
    no_grad,
    set_detect_anomaly,
    set_grad_enabled,
)

# Bound by kiln.tensor once Tensor exists (tensor.py imports this module first).
Tensor = None
_wrap = None
# Set once any Tensor.register_post_accumulate_grad_hook was called: until then backward
# skips counting the contributions each leaf will receive.
_post_hooks_live = False


def _has_nonfinite(arr) -> bool:
    return arr.dtype.kind == "f" and arr.size > 0 and not np.isfinite(arr).all()


class Function:
    """A graph node: subclasses define ``forward(ctx, *arrays)`` and ``backward(ctx, grad)``.

    ``forward`` receives the raw arrays of tensor arguments (other arguments as
    they are) -- unlike PyTorch, where it receives Tensors -- and returns an array;
    ``backward`` receives the output's gradient as a Tensor and returns one gradient
    (Tensor, array or None) per forward argument. Call it as ``MyFn.apply(*args)``.

    >>> import kiln
    >>> class Cube(Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, grad):
    ...         (x,) = ctx.saved_tensors
    ...         return grad * 3 * x * x
    >>> x = kiln.tensor([2.0], requires_grad=True)
    >>> Cube.apply(x).backward()
    >>> x.grad
    tensor([12.])
    """

    once_differentiable = False
    # backward reads the inputs' values: an in-place change to one of them after the
    # forward must raise instead of giving a wrong gradient
    needs_inputs = True
    # backward reads the output's values (ctx keeps its array): same check on the output
    saves_output = False
    __slots__ = ("inputs", "saved", "hooks", "retain", "versions", "out_ref", "__dict__")

    def save_for_backward(self, *tensors) -> None:
        """Save tensors (or the raw arrays ``forward`` receives) for backward.

        An in-place change to a saved Tensor is detected when backward reads it.
        """
        self.saved = tuple((t, t._version if type(t) is Tensor else None) for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        """What ``save_for_backward`` kept, as Tensors."""
        saved = self.saved
        if saved is None:
            raise RuntimeError(
                f"{self.name()}: trying to backward through the graph a second time (or directly "
                "access saved tensors after they have already been freed). Specify "
                "retain_graph=True when calling backward the first time."
            )
        out = []
        for t, v in saved:
            if v is not None and t._version != v:
                raise RuntimeError(
                    f"{self.name()}: one of the tensors needed for gradient computation has been "
                    f"modified by an inplace operation: tensor of shape {tuple(t.shape)} is at "
                    f"version {t._version}; expected version {v} instead."
                )
            out.append(t if type(t) is Tensor or t is None else _wrap(t))
        return tuple(out)

    @classmethod
    def name(cls) -> str:
        return cls.__name__ + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name()}>"

    @classmethod
    def apply(cls, *args):
        ctx = _new(cls)
        # unpacked by hand for the common arities: a list comprehension is a function
        # call of its own in CPython 3.11 (~0.2 us on every op)
        n = len(args)
        if n == 1:
            a = args[0]
            out = cls.forward(ctx, a.data if type(a) is Tensor else a)
        elif n == 2:
            a, b = args
            out = cls.forward(ctx, a.data if type(a) is Tensor else a,
                              b.data if type(b) is Tensor else b)
        elif n == 4:  # linear(x, w, b, activation) and friends
            a, b, c, d = args
            out = cls.forward(ctx, a.data if type(a) is Tensor else a,
                              b.data if type(b) is Tensor else b,
                              c.data if type(c) is Tensor else c,
                              d.data if type(d) is Tensor else d)
        else:
            out = cls.forward(ctx, *[a.data if type(a) is Tensor else a for a in args])
        if type(out) is not _ndarray and isinstance(out, np.generic):
            out = np.asarray(out)  # NumPy returns scalars from 0-d ufunc results
        result = _new(Tensor)  # inlined _wrap: this is the hottest line in kiln
        result.data = out
        result.requires_grad = False
        result.grad = None
        result.grad_fn = None
        result._hooks = None
        result._version = 0
        mode = _mode
        if mode.grad:
            for t in args:
                if type(t) is Tensor and t.requires_grad:
                    ctx.inputs = args
                    ctx.hooks = None
                    ctx.retain = None
                    result.requires_grad = True
                    result.grad_fn = ctx
                    if not cls.needs_inputs:
                        ctx.versions = None
                    elif n == 1:
                        ctx.versions = (t._version,)
                    elif n == 2:
                        ctx.versions = (a._version if type(a) is Tensor else 0,
                                        b._version if type(b) is Tensor else 0)
                    elif n == 4:
                        ctx.versions = (a._version if type(a) is Tensor else 0,
                                        b._version if type(b) is Tensor else 0,
                                        c._version if type(c) is Tensor else 0,
                                        d._version if type(d) is Tensor else 0)
                    else:
                        ctx.versions = [u._version if type(u) is Tensor else 0 for u in args]
                    ctx.out_ref = weakref.ref(result) if cls.saves_output else None
                    break
        if mode.anomaly and _has_nonfinite(out):
            raise RuntimeError(
                f"detect_anomaly: forward of '{cls.__name__.lower()}' produced NaN/Inf "
                f"(output shape {out.shape})"
            )
        return result


_new = object.__new__
_ndarray = np.ndarray


def _as_grad_tensor(g, like):
    if g is None or type(g) is Tensor:
        return g
    if type(g) is _ndarray and g.dtype == like.data.dtype:
        return _wrap(g)
    return _wrap(np.asarray(g, dtype=like.data.dtype))


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensors)/d(leaves) into the leaves' ``.grad`` (``torch.autograd.backward``)."""
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors)
    if inputs is None:
        _run(list(tensors), list(grad_tensors), retain_graph, create_graph, capture=None)
        return
    # only the given tensors receive gradients (leaves or not), like PyTorch
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    gs = grad(tensors, inputs, grad_tensors, retain_graph, create_graph, allow_unused=True)
    for t, g in zip(inputs, gs):
        if g is not None:
            t.grad = _wrap(g.data.copy()) if t.grad is None and g.grad_fn is None else (
                g if t.grad is None else t.grad + g)
            if t.grad_fn is None and getattr(t, "_post_hooks", None):
                for h in list(t._post_hooks):
                    h(t)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Return d(outputs)/d(inputs) without touching ``.grad`` (``torch.autograd.grad``)."""
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("grad: one of the differentiated Tensors does not require grad")
    capture = {id(t): None for t in inputs}
    _run(outputs, list(grad_outputs), retain_graph, create_graph, capture=(inputs, capture))
    result = []
    for i, t in enumerate(inputs):
        g = capture[id(t)]
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {i} (shape {tuple(t.shape)}) was not used in the graph; "
                "pass allow_unused=True to get None for it"
            )
        result.append(g)
    return tuple(result)


_ONES = {}  # read-only 1.0 per dtype: the implicit gradient of a scalar root


def _seed(t, g):
    if type(t) is not Tensor:
        raise TypeError(f"backward: expected a Tensor, got {type(t).__name__}")
    if not t.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if g is None:
        if t.data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; got shape "
                f"{tuple(t.shape)}: pass a gradient of that shape"
            )
        one = _ONES.get(t.data.dtype)
        if one is None:
            one = _ONES[t.data.dtype] = np.ones((), dtype=t.data.dtype)
            one.flags.writeable = False
        return _wrap(one if t.data.ndim == 0 else one.reshape(t.data.shape))
    g = g if type(g) is Tensor else _wrap(np.asarray(g, dtype=t.data.dtype))
    if g.data.shape != t.data.shape:
        raise ValueError(
            f"backward: gradient of shape {tuple(g.shape)} does not match the output of shape "
            f"{tuple(t.shape)}"
        )
    return g


def _run(roots, root_grads, retain_graph, create_graph, capture):
    if retain_graph is None:
        retain_graph = create_graph
    captured_ids = capture[1] if capture is not None else None
    captured_nodes = {}
    if capture is not None:
        for t in capture[0]:
            if t.grad_fn is not None:
                captured_nodes[id(t.grad_fn)] = t
    start = [(t, _seed(t, g)) for t, g in zip(roots, root_grads)]

    # count the consumers of every node reachable from the roots; with post-accumulate
    # hooks around, also how many contributions each hooked leaf will receive (its hooks
    # run after the last one, like PyTorch's AccumulateGrad node)
    post = _post_hooks_live and captured_ids is None
    leafc = {}
    if post:
        for t, _ in start:
            if t.grad_fn is None and getattr(t, "_post_hooks", None):
                _leaf_expect(leafc, t)
    deps = {}
    stack = []
    for t, _ in start:
        n = t.grad_fn
        if n is not None and id(n) not in deps:
            deps[id(n)] = 0
            stack.append(n)
    while stack:
        n = stack.pop()
        inputs = n.inputs
        if inputs is None:
            raise RuntimeError(
                f"{n.name()}: trying to backward through the graph a second time; specify "
                "retain_graph=True when calling backward the first time"
            )
        for a in inputs:
            if type(a) is Tensor:
                p = a.grad_fn
                if p is not None:
                    k = id(p)
                    if k in deps:
                        deps[k] += 1
                    else:
                        deps[k] = 1
                        stack.append(p)
                elif post and a.requires_grad and getattr(a, "_post_hooks", None):
                    _leaf_expect(leafc, a)

    grads = {}
    ready = []
    for t, g in start:
        n = t.grad_fn
        if n is None:
            _deliver_leaf(t, g, captured_ids)
            if leafc:
                _leaf_arrived(leafc, t, True)
            continue
        k = id(n)
        grads[k] = grads[k] + g if k in grads else g
        if deps[k] == 0 and n not in ready:
            ready.append(n)

    mode = _mode
    prev_grad, prev_anomaly = mode.grad, mode.anomaly
    anomaly = prev_anomaly
    mode.grad = create_graph
    mode.anomaly = False  # ops inside backward are checked as a whole, per node
    pop_grad = grads.pop
    try:
        while ready:
            n = ready.pop()
            g = pop_grad(id(n))
            if n.hooks:
                for h in n.hooks:
                    r = h(g)
                    if r is not None:
                        g = r
            if n.retain is not None:
                owner = n.retain()
                if owner is not None:
                    owner.grad = g if owner.grad is None else owner.grad + g
            if captured_nodes and id(n) in captured_nodes:
                captured_ids[id(captured_nodes[id(n)])] = g
            if create_graph and n.once_differentiable:
                raise RuntimeError(
                    f"{n.name()}: double backward (create_graph=True) is not supported for this "
                    "op yet"
                )
            if n.versions is not None or n.out_ref is not None:
                _check_versions(n)
            in_grads = n.backward(n, g)
            if type(in_grads) is not tuple:
                in_grads = (in_grads,)
            if anomaly:
                for k, ig in enumerate(in_grads):
                    if ig is not None and _has_nonfinite(ig.data if type(ig) is Tensor else ig):
                        raise RuntimeError(
                            f"detect_anomaly: Function '{n.name()}' returned nan/inf values in "
                            f"its {k}th output"
                        )
            for a, ig in zip(n.inputs, in_grads):
                if ig is None or type(a) is not Tensor or not a.requires_grad:
                    if leafc and type(a) is Tensor and id(a) in leafc:
                        _leaf_arrived(leafc, a, False)
                    continue
                # a plain backward may return arrays; they become Tensors only when needed
                igd = ig.data if type(ig) is Tensor else ig
                if igd.shape != a.data.shape:
                    raise RuntimeError(
                        f"{n.name()}: returned a gradient of shape {igd.shape} for an "
                        f"input of shape {tuple(a.shape)} (internal error)"
                    )
                p = a.grad_fn
                if p is None:
                    old = a.grad
                    if (old is None and captured_ids is None and a._hooks is None
                            and type(ig) is Tensor and ig.grad_fn is None
                            and getattr(ig, "_fresh", False)):
                        ig._fresh = False  # a fresh buffer: adopted, as in _deliver_leaf
                        a.grad = ig
                    elif (old is not None and captured_ids is None and a._hooks is None
                            and (type(ig) is not Tensor or ig.grad_fn is None)
                            and old.grad_fn is None and old.data.flags.writeable):
                        np.add(old.data, igd, out=old.data)  # the common leaf case
                    else:
                        _deliver_leaf(a, ig if type(ig) is Tensor else _as_grad_tensor(ig, a),
                                      captured_ids)
                    if leafc and id(a) in leafc:
                        _leaf_arrived(leafc, a, True)
                    continue
                if type(ig) is not Tensor:
                    ig = _as_grad_tensor(ig, a)
                k = id(p)
                grads[k] = grads[k] + ig if k in grads else ig
                deps[k] -= 1
                if deps[k] == 0:
                    ready.append(p)
            if not retain_graph:
                n.inputs = None
                n.saved = None
    finally:
        _mode.grad, _mode.anomaly = prev_grad, prev_anomaly


def _leaf_expect(leafc, t):
    e = leafc.get(id(t))
    if e is None:
        leafc[id(t)] = [1, False]
    else:
        e[0] += 1


def _leaf_arrived(leafc, t, delivered: bool):
    """One expected contribution reached leaf ``t`` (or its producer returned None for it);
    after the last, run its post-accumulate hooks if any gradient arrived at all."""
    e = leafc[id(t)]
    e[0] -= 1
    e[1] = e[1] or delivered
    if e[0] == 0:
        del leafc[id(t)]
        if e[1]:
            for h in list(t._post_hooks):
                h(t)


def _check_versions(n):
    versions = n.versions
    if versions is not None:
        for a, v in zip(n.inputs, versions):
            if type(a) is Tensor and a._version != v:
                raise RuntimeError(
                    f"{n.name()}: one of the tensors needed for gradient computation has been "
                    f"modified by an inplace operation: an input of shape {tuple(a.shape)} is at "
                    f"version {a._version}; expected version {v} instead."
                )
    ref = n.out_ref
    if ref is not None:
        out = ref()
        if out is not None and out._version != 0 and out.grad_fn is not n:
            raise RuntimeError(
                f"{n.name()}: one of the tensors needed for gradient computation has been "
                f"modified by an inplace operation: its output of shape {tuple(out.shape)} is at "
                f"version {out._version}; expected version 0 instead."
            )


def fresh(t):
    """Mark a gradient a backward just computed into a new buffer that nothing else
    references, so the engine may adopt it as a leaf's ``.grad`` instead of copying it
    (PyTorch steals such buffers the same way). Returns ``t``; None passes through."""
    if t is not None:
        t._fresh = True
    return t


def _deliver_leaf(t, g, captured_ids):
    if t._hooks:
        for h in t._hooks:
            r = h(g)
            if r is not None:
                g = r
    if captured_ids is not None:
        if id(t) in captured_ids:
            prev = captured_ids[id(t)]
            captured_ids[id(t)] = g if prev is None else prev + g
        return
    if t.grad is None:
        if g.grad_fn is not None:
            t.grad = g
        elif getattr(g, "_fresh", False):
            g._fresh = False  # adopted once; a second delivery of the same tensor copies
            t.grad = g
        else:  # own the buffer: the gradient may alias a tensor the user still holds
            t.grad = _wrap(g.data.copy())
    elif g.grad_fn is None and t.grad.grad_fn is None and t.grad.data.flags.writeable:
        np.add(t.grad.data, g.data, out=t.grad.data)  # accumulate in place, like PyTorch
    else:
        t.grad = t.grad + g


# gradcheck lives in its own file (this one is the engine); re-exported here as
# kiln.autograd.gradcheck, its PyTorch name.
from kiln._gradcheck import GradcheckError, gradcheck  # noqa: E402
