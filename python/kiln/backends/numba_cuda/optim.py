"""Optimizer steps and gradient utilities on the Numba CUDA table: sgd_step, adam_step
(Adam and AdamW), rmsprop_step, adagrad_step, grad_norm, grad_scale, grad_clamp, with the
CPU table's arguments, checks and arithmetic (csrc/cpu/optim.cpp, optim_loops.h,
optim_clip.cpp).

Lists are index-aligned: params[i], grads[i] and the state arrays [i] share shape and dtype
(float32 or float64; indices may differ); state_steps[i] is a 1-element float32/float64
device array that the step increments in its own precision, and the per-tensor bias
corrections use that tensor's own new step, as PyTorch does. The updates (g = ±grad):
  SGD      g += wd p;  buf = first ? g : buf m + (1 - dampening) g;  g = nesterov ? g + m buf
           : buf;  p -= lr g
  Adam     p *= 1 - lr wd [AdamW];  g += wd p [Adam];  m = lerp(m, g, 1 - beta1)
           v = v beta2 + (1 - beta2) g g;  vmax = max(vmax, v) [amsgrad]
           p -= lr / (1 - beta1^t) m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
  RMSprop  g += wd p;  sq = sq alpha + (1 - alpha) g g;  avg = sqrt(sq - ga ga) with
           ga = lerp(ga, g, 1 - alpha) [centered] else sqrt(sq);  avg += eps
           buf = buf mom + g / avg, p -= lr buf [momentum > 0];  else p -= lr g / avg
  Adagrad  g += wd p;  sum += g g;  p -= lr / (1 + (t - 1) lr_decay) g / (sqrt(sum) + eps)
with the CPU's operation order and its fused multiply-adds (cuda.fma where it uses std::fma),
hyperparameters rounded to the tensor's dtype on the host as the CPU does. (The simulator
computes cuda.fma unfused, and on a GPU NVVM may contract the few plain a * b + c of the
loops, so float32 results agree with the CPU to rounding rather than bit for bit.)
  grad_norm  out = ||concat(tensors)||_p in float64: 2: sqrt(sum x^2), 1: sum |x|,
             inf: max |x|, -inf: min |x| (0 for no elements), 0: nonzeros, else
             (sum |x|^p)^(1/p); a NaN anywhere gives NaN.
  grad_scale x *= scale;  grad_clamp x = min(max(x, min), max), NaN stays NaN.

GPU layout: this is the fallback table, so the multi-tensor kernels launch once per tensor
(one thread per element) rather than over a packed list of tensors; the step counters are
bumped, and the per-tensor bias corrections computed, on the device by a one-thread kernel
per tensor (no host synchronisation). grad_norm reduces each tensor into a fixed number of
per-block partials (shared-memory tree, float64), and a one-thread kernel combines all
partials in order: the result depends only on the shapes, not on timing.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from kiln.backends.numba_cuda._common import (
    SIMULATOR,
    check_float,
    check_same_dtype,
    check_same_shape,
    describe,
    dev,
    flat,
    grid1d,
    jit,
)

NT = 8 if SIMULATOR else 256  # grad_norm threads per block (a power of two)
MAX_BLOCKS = 4 if SIMULATOR else 128  # grad_norm partials per tensor


# ---- element kernels ------------------------------------------------------------------
@jit
def _sgd(p, g, buf, sign, wd, mom, keep, neg_lr, WD, MOM, FIRST, NEST):
    i = cuda.grid(1)
    if i >= p.size:
        return
    gi = g[i] * sign
    if WD:
        gi = cuda.fma(p[i], wd, gi)
    if MOM:
        if FIRST:
            bi = gi
        else:
            bi = cuda.fma(gi, keep, buf[i] * mom)
        buf[i] = bi
        if NEST:
            gi = cuda.fma(bi, mom, gi)
        else:
            gi = bi
    p[i] = cuda.fma(gi, neg_lr, p[i])


@jit(device=True)
def _max_nan(a, b):  # torch.maximum: NaN in either operand gives NaN
    if a != a or b != b:
        return a + b
    return a if a > b else b


@jit
def _adam(p, g, m, v, vmax, scal, sign, wd, decay, w, wm1, small, b2, c2, eps, L2, AMS):
    i = cuda.grid(1)
    if i >= p.size:
        return
    neg_step = scal[0]  # -lr / (1 - beta1^t), rounded to the dtype
    bc2 = scal[1]  # sqrt(1 - beta2^t)
    pi = p[i] * decay
    gi = g[i] * sign
    if L2:
        gi = cuda.fma(pi, wd, gi)
    mi0 = m[i]
    d = gi - mi0
    mi = cuda.fma(w, d, mi0) if small else cuda.fma(wm1, d, gi)  # lerp as ATen computes it
    vi = v[i] * b2
    vi = cuda.fma(c2 * gi, gi, vi)
    vh = vi
    if AMS:
        vh = _max_nan(vmax[i], vi)
        vmax[i] = vh
    denom = math.sqrt(vh) / bc2 + eps
    p[i] = pi + neg_step * mi / denom
    m[i] = mi
    v[i] = vi


@jit
def _rmsprop(p, g, sq, ga, buf, sign, wd, a, c, w, wm1, small, eps, mom, neg_lr, WD, CEN, MOM):
    i = cuda.grid(1)
    if i >= p.size:
        return
    gi = g[i] * sign
    if WD:
        gi = cuda.fma(p[i], wd, gi)
    si = sq[i] * a
    si = cuda.fma(c * gi, gi, si)
    sq[i] = si
    if CEN:
        gai0 = ga[i]
        d = gi - gai0
        gai = cuda.fma(w, d, gai0) if small else cuda.fma(wm1, d, gi)
        ga[i] = gai
        avg = math.sqrt(cuda.fma(-gai, gai, si))  # square_avg.addcmul(ga, ga, value=-1)
    else:
        avg = math.sqrt(si)
    avg = avg + eps
    if MOM:
        bi = buf[i] * mom
        bi = bi + gi / avg
        buf[i] = bi
        p[i] = cuda.fma(bi, neg_lr, p[i])
    else:
        p[i] = p[i] + neg_lr * gi / avg


@jit
def _adagrad(p, g, s, scal, sign, wd, eps, WD):
    i = cuda.grid(1)
    if i >= p.size:
        return
    neg_clr = scal[0]  # -lr / (1 + (t - 1) lr_decay), rounded to the dtype
    gi = g[i] * sign
    if WD:
        gi = cuda.fma(p[i], wd, gi)
    si = cuda.fma(gi, gi, s[i])
    s[i] = si
    sd = math.sqrt(si) + eps
    p[i] = p[i] + neg_clr * gi / sd


# ---- per-tensor step counters (one thread) --------------------------------------------
@jit
def _bump(step):
    step[0] = step[0] + 1  # in the counter's own precision (PyTorch's float32 step_t += 1)


@jit
def _bump_adam(step, lr, beta1, beta2, scal):
    step[0] = step[0] + 1
    t = float64(step[0])
    bc1 = 1.0 - math.pow(beta1, t)  # Python-float arithmetic of PyTorch's _single_tensor_adam
    bc2 = 1.0 - math.pow(beta2, t)
    scal[0] = -(lr / bc1)
    scal[1] = math.pow(bc2, 0.5)


@jit
def _bump_adagrad(step, lr, lr_decay, scal):
    step[0] = step[0] + 1
    scal[0] = -(lr / (1.0 + (float64(step[0]) - 1.0) * lr_decay))


# ---- gradient utilities ---------------------------------------------------------------
L2, L1, LINF, LNEGINF, L0, LP = 0, 1, 2, 3, 4, 5


@jit
def _norm_partial(x, kind, p, part, nanp, off):
    tid = cuda.threadIdx.x
    sa = cuda.shared.array(NT, float64)
    sb = cuda.shared.array(NT, float64)
    acc = math.inf if kind == LNEGINF else 0.0
    nan = 0.0
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = abs(float64(x[i]))
        if kind == L2:
            acc += v * v
        elif kind == L1:
            acc += v
        elif kind == L0:
            acc += 1.0 if x[i] != 0 else 0.0
        elif kind == LP:
            acc += math.pow(v, p)
        else:
            if v != v:
                nan = 1.0
            elif kind == LINF:
                acc = v if v > acc else acc
            else:
                acc = v if v < acc else acc
    sa[tid] = acc
    sb[tid] = nan
    cuda.syncthreads()
    s = NT // 2
    while s > 0:  # fixed tree order: deterministic
        if tid < s:
            a = sa[tid]
            b = sa[tid + s]
            if kind == LINF:
                sa[tid] = b if b > a else a
            elif kind == LNEGINF:
                sa[tid] = b if b < a else a
            else:
                sa[tid] = a + b
            sb[tid] = max(sb[tid], sb[tid + s])
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        part[off + cuda.blockIdx.x] = sa[0]
        nanp[off + cuda.blockIdx.x] = sb[0]


@jit
def _norm_final(part, nanp, count, kind, p, empty, out):
    r = math.inf if kind == LNEGINF else 0.0
    nan = False
    for k in range(count):  # in tensor and block order
        a = part[k]
        nan = nan or nanp[k] != 0
        if kind == LINF:
            r = a if a > r else r
        elif kind == LNEGINF:
            r = a if a < r else r
        else:
            r += a
    if kind == LNEGINF and empty:
        r = 0.0  # PyTorch: the -inf norm of nothing is 0 here
    if kind == L2:
        r = math.sqrt(r)
    elif kind == LP:
        r = math.pow(r, 1.0 / p)
    out[0] = math.nan if nan else r


@jit
def _scale(x, c):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = x[i] * c


@jit
def _clamp(x, mn, mx):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        if v == v:  # NaN stays NaN; std::min(std::max(v, mn), mx)
            a = mn if v < mn else v
            x[i] = mx if mx < a else a


# ---- host side: checks (the CPU table's messages) and launches ---------------------------
def _at(name, i):
    return f"{name}[{i}]"


def _check_length(op, params, lst, name):
    if len(lst) != len(params):
        raise ValueError(f"{op}: {name} has {len(lst)} arrays but params has {len(params)}")


def _gather(op, params, grads, states):
    """Device arrays per index: [(p, g, s0, s1, ...)], after the CPU's checks.

    states: (list, name, used); an unused list must be empty and gives None entries."""
    params, grads = list(params), list(grads)
    _check_length(op, params, grads, "grads")
    rows = []
    for i, p in enumerate(params):
        pn = _at("params", i)
        p = dev(p, op, pn)
        check_float(p, op, pn)
        g = dev(grads[i], op, _at("grads", i))
        check_same_dtype(p, g, op, pn, _at("grads", i))
        check_same_shape(p, g, op, pn, _at("grads", i))
        rows.append([p, g])
    for lst, name, used in states:
        lst = list(lst)
        if not used:
            if lst:
                raise ValueError(f"{op}: {name} must be empty for these options")
            for r in rows:
                r.append(None)
            continue
        _check_length(op, params, lst, name)
        for i, r in enumerate(rows):
            a = dev(lst[i], op, _at(name, i))
            check_same_dtype(r[0], a, op, _at("params", i), _at(name, i))
            check_same_shape(r[0], a, op, _at("params", i), _at(name, i))
            r.append(a)
    return rows


def _steps(op, params, steps):
    """The state_steps as 1-element device views, all checked before any is changed."""
    steps = list(steps)
    _check_length(op, list(params), steps, "state_steps")
    out = []
    for i, s in enumerate(steps):
        sn = _at("state_steps", i)
        s = dev(s, op, sn)
        if s.size != 1:
            raise ValueError(f"{op}: {describe(s, sn)} must hold one value")
        if np.dtype(s.dtype) not in (np.float32, np.float64):
            raise TypeError(f"{op}: {describe(s, sn)} must be float32 or float64")
        out.append(s.reshape(1) if s.ndim != 1 else s)
    return out


def _scratch(rows, width):
    """Per-tensor device scalars in each tensor's dtype: one array per dtype, a row each."""
    bufs = {}
    for dt in {np.dtype(r[0].dtype) for r in rows}:
        bufs[dt] = cuda.device_array((len(rows), width), dt)
    return [bufs[np.dtype(r[0].dtype)][i] for i, r in enumerate(rows)]


def _lerp_weights(T, weight):
    """(w, w - 1, |w| < 0.5) in the dtype: ATen's lerp(x, y, w) branches on |w|."""
    w = T(weight)
    return w, w - T(1), bool(abs(w) < T(0.5))


def sgd_step(params, grads, momentum_buffers, lr, momentum, dampening, weight_decay, nesterov,
             maximize, first_step) -> None:
    op = "sgd_step"
    mom = momentum != 0
    rows = _gather(op, params, grads, [(momentum_buffers, "momentum_buffers", mom)])
    for p, g, buf in rows:
        if p.size == 0:
            continue
        T = np.dtype(p.dtype).type
        pf = flat(p)
        _sgd[grid1d(p.size)](pf, flat(g), flat(buf) if mom else pf, T(-1 if maximize else 1),
                             T(weight_decay), T(momentum), T(1 - dampening), T(-lr),
                             weight_decay != 0, mom, mom and bool(first_step),
                             mom and bool(nesterov))


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr, beta1,
              beta2, eps, weight_decay, decoupled, amsgrad, maximize) -> None:
    op = "adam_step"
    rows = _gather(op, params, grads, [(exp_avgs, "exp_avgs", True),
                                       (exp_avg_sqs, "exp_avg_sqs", True),
                                       (max_exp_avg_sqs, "max_exp_avg_sqs", amsgrad)])
    steps = _steps(op, params, state_steps)
    scal = _scratch(rows, 2)
    for step, sc in zip(steps, scal):
        _bump_adam[1, 1](step, float(lr), float(beta1), float(beta2), sc)
    for (p, g, m, v, vmax), sc in zip(rows, scal):
        if p.size == 0:
            continue
        T = np.dtype(p.dtype).type
        decay = T(1 - lr * weight_decay) if decoupled and weight_decay != 0 else T(1)
        w, wm1, small = _lerp_weights(T, 1 - beta1)
        pf = flat(p)
        _adam[grid1d(p.size)](pf, flat(g), flat(m), flat(v), flat(vmax) if amsgrad else pf, sc,
                              T(-1 if maximize else 1), T(weight_decay), decay, w, wm1, small,
                              T(beta2), T(1 - beta2), T(eps),
                              not decoupled and weight_decay != 0, bool(amsgrad))


def rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, state_steps, lr, alpha,
                 eps, weight_decay, momentum, centered, maximize) -> None:
    op = "rmsprop_step"
    mom = momentum > 0
    rows = _gather(op, params, grads, [(square_avgs, "square_avgs", True),
                                       (grad_avgs, "grad_avgs", centered),
                                       (momentum_buffers, "momentum_buffers", mom)])
    for step in _steps(op, params, state_steps):
        _bump[1, 1](step)
    for p, g, sq, ga, buf in rows:
        if p.size == 0:
            continue
        T = np.dtype(p.dtype).type
        w, wm1, small = _lerp_weights(T, 1 - alpha)
        pf = flat(p)
        _rmsprop[grid1d(p.size)](pf, flat(g), flat(sq), flat(ga) if centered else pf,
                                 flat(buf) if mom else pf, T(-1 if maximize else 1),
                                 T(weight_decay), T(alpha), T(1 - alpha), w, wm1, small, T(eps),
                                 T(momentum), T(-lr), weight_decay != 0, bool(centered), mom)


def adagrad_step(params, grads, state_sums, state_steps, lr, lr_decay, weight_decay, eps,
                 maximize) -> None:
    op = "adagrad_step"
    rows = _gather(op, params, grads, [(state_sums, "state_sums", True)])
    steps = _steps(op, params, state_steps)
    scal = _scratch(rows, 1)
    for step, sc in zip(steps, scal):
        _bump_adagrad[1, 1](step, float(lr), float(lr_decay), sc)
    for (p, g, s), sc in zip(rows, scal):
        if p.size == 0:
            continue
        T = np.dtype(p.dtype).type
        _adagrad[grid1d(p.size)](flat(p), flat(g), flat(s), sc, T(-1 if maximize else 1),
                                 T(weight_decay), T(eps), weight_decay != 0)


def _tensors(op, tensors):
    out = []
    for i, t in enumerate(tensors):
        name = _at("tensors", i)
        t = dev(t, op, name)
        check_float(t, op, name)
        out.append(t)
    return out


def grad_norm(tensors, out, norm_type) -> None:
    op = "grad_norm"
    ts = _tensors(op, tensors)
    out = dev(out, op, "out")
    if np.dtype(out.dtype) != np.float64 or out.size != 1:
        raise TypeError(f"{op}: {describe(out, 'out')} must be a 1-element float64 array")
    p = float(norm_type)
    if math.isnan(p):
        raise ValueError(f"{op}: norm_type is NaN")
    kind = (L2 if p == 2 else L1 if p == 1 else L0 if p == 0
            else (LINF if p > 0 else LNEGINF) if math.isinf(p) else LP)
    blocks = [min(MAX_BLOCKS, -(-t.size // NT)) for t in ts]
    total = sum(blocks)
    part = cuda.device_array(max(1, total), np.float64)
    nanp = cuda.device_array(max(1, total), np.float64)
    off = 0
    for t, nb in zip(ts, blocks):
        if nb:
            _norm_partial[nb, NT](flat(t), kind, p, part, nanp, off)
            off += nb
    _norm_final[1, 1](part, nanp, total, kind, p, all(t.size == 0 for t in ts), flat(out))


def grad_scale(tensors, scale) -> None:
    for t in _tensors("grad_scale", tensors):
        if t.size:
            _scale[grid1d(t.size)](flat(t), np.dtype(t.dtype).type(scale))


def grad_clamp(tensors, min, max) -> None:  # noqa: A002 (the CPU table's argument names)
    for t in _tensors("grad_clamp", tensors):
        if t.size:
            T = np.dtype(t.dtype).type
            _clamp[grid1d(t.size)](flat(t), T(min), T(max))
