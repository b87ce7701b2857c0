"""Activations and their gradients on the Numba CUDA table: elementwise, grid-stride loops.

The math and branch conditions are the CPU table's (csrc/cpu/activation.cpp), PyTorch's:
  relu        y = x < 0 ? 0 : x                 relu'  = x <= 0 ? 0 : 1
  leaky_relu  y = max(x, 0) + min(x, 0) * s     leaky' = x > 0 ? 1 : s
  sigmoid     y = 1 / (1 + e^-x)                grad * (1 - y) y        (takes y)
  tanh        y = tanh x                        grad * (1 - y^2)        (takes y)
  gelu        none: x Phi(x) = x erfc(-x/sqrt 2)/2,  d = Phi(x) + x phi(x)
              tanh: x / (1 + e^(-2u)),  u = b (x + k x^3),  d = s + 2 x s (1 - s) u',
                    s = sigmoid(2u), u' = b (1 + 3 k x^2),  b = sqrt(2/pi), k = 0.044715
  silu        y = x / (1 + e^-x)                d = s (1 + x (1 - s)),  s = sigmoid(x)
  softplus    z = beta x;  z > threshold ? x : (max(z, 0) + log1p(e^-|z|)) / beta
              d = z > threshold ? 1 : sigmoid(z)
  elu         y = x <= 0 ? alpha expm1(x) : x   d = x > 0 ? 1 : alpha e^x (NaN stays NaN)
The stable forms (erfc instead of 1 + erf, log1p(e^-|z|)) avoid the cancellations of the
textbook formulas, as on the CPU.

Every constant reaches the kernels as an argument of the array's dtype (``_consts``): a
Python float literal is float64 in a Numba kernel and would turn float32 math into
float64 math on the GPU. One thread handles elements i, i + gridsize, ... (grid-stride), so
the grid is capped and stays the same for any size.
"""

from __future__ import annotations

import math

from numba import cuda

from kiln.backends.numba_cuda._common import SIMULATOR, elementwise, grid1d, jit

# Grid-stride: beyond _MAX_BLOCKS blocks each thread loops. In the simulator (one Python
# thread per CUDA thread) small blocks and a 2-block cap keep tests fast and make every
# test of more than 128 elements run the stride loop.
_MAX_BLOCKS, _TPB = (2, 64) if SIMULATOR else (4096, 256)
_SQRT_2_PI = 0.79788456080286535588  # sqrt(2 / pi), gelu tanh approximation
_KAPPA = 0.044715
_INV_SQRT2 = 0.70710678118654752440
_INV_SQRT_2PI = 0.39894228040143267794  # the normal pdf's 1 / sqrt(2 pi)


def _grid(n: int) -> tuple[int, int]:
    b, t = grid1d(n, _TPB)
    return min(b, _MAX_BLOCKS), t


def _consts(a, *values):
    """``values`` as scalars of ``a``'s dtype (so float32 kernels stay float32)."""
    t = a.dtype.type
    return tuple(t(v) for v in values)


# ---- kernels (x, out, constants...) / (grad, x_or_y, grad_input, constants...) ---------

@jit
def _relu(x, out, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        out[i] = zero if v < zero else v  # NaN passes through


@jit
def _relu_backward(g, x, gi, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        gi[i] = zero if x[i] <= zero else g[i]


@jit
def _leaky_relu(x, out, s, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        pos = zero if v < zero else v  # NaN and -0 as PyTorch (see the CPU kernel)
        neg = zero if v > zero else v
        out[i] = pos + neg * s


@jit
def _leaky_relu_backward(g, x, gi, s, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v, gv = x[i], g[i]
        pos = gv if v > zero else zero
        neg = zero if v > zero else gv
        gi[i] = pos + neg * s


@jit
def _sigmoid(x, out, one):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = one / (one + math.exp(-x[i]))


@jit
def _sigmoid_backward(g, y, gi, one):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        s = y[i]
        gi[i] = g[i] * (one - s) * s


@jit
def _tanh(x, out):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = math.tanh(x[i])


@jit
def _tanh_backward(g, y, gi, one):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        v = y[i]
        gi[i] = g[i] * (one - v * v)


@jit
def _gelu_erf(x, out, half, inv_sqrt2):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        out[i] = v * (half * math.erfc(-v * inv_sqrt2))


@jit
def _gelu_tanh(x, out, one, two, beta, kappa):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        u = beta * (v + kappa * v * v * v)
        out[i] = v / (one + math.exp(-two * u))


@jit
def _gelu_erf_backward(g, x, gi, half, inv_sqrt2, inv_sqrt_2pi):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        pdf = inv_sqrt_2pi * math.exp(-half * v * v)
        gi[i] = g[i] * (half * math.erfc(-v * inv_sqrt2) + v * pdf)


@jit
def _gelu_tanh_backward(g, x, gi, one, two, beta, kappa, kappa3):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        x2 = v * v
        u = beta * v * (one + kappa * x2)
        du = beta * (one + kappa3 * x2)
        s = one / (one + math.exp(-two * u))
        gi[i] = g[i] * (s + two * v * s * (one - s) * du)


@jit
def _silu(x, out, one):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        out[i] = v / (one + math.exp(-v))


@jit
def _silu_backward(g, x, gi, one):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        s = one / (one + math.exp(-v))
        gi[i] = g[i] * s * (one + v * (one - s))


@jit
def _softplus(x, out, beta, threshold, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        z = v * beta
        if z > threshold:
            out[i] = v
        else:
            out[i] = (max(z, zero) + math.log1p(math.exp(-abs(z)))) / beta


@jit
def _softplus_backward(g, x, gi, beta, threshold, one):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        z = x[i] * beta
        gi[i] = g[i] if z > threshold else g[i] / (one + math.exp(-z))


@jit
def _elu(x, out, alpha, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        out[i] = alpha * math.expm1(v) if v <= zero else v


@jit
def _elu_backward(g, x, gi, alpha, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        # x > 0 so that NaN takes the exp branch and stays NaN (PyTorch float64 does)
        gi[i] = g[i] if v > zero else g[i] * alpha * math.exp(v)


# ---- host wrappers: the CPU table's names, arguments and checks -------------------------

def _approximate(op: str, approximate: str) -> bool:
    if approximate == "none":
        return False
    if approximate == "tanh":
        return True
    raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got '{approximate}'")


def relu(x, out) -> None:
    x, out = elementwise("relu", x=x, out=out)
    _relu[_grid(x.size)](x, out, *_consts(x, 0))


def relu_backward(grad, x, grad_input) -> None:
    g, x, gi = elementwise("relu_backward", grad=grad, x=x, grad_input=grad_input)
    _relu_backward[_grid(x.size)](g, x, gi, *_consts(x, 0))


def leaky_relu(x, out, negative_slope) -> None:
    x, out = elementwise("leaky_relu", x=x, out=out)
    _leaky_relu[_grid(x.size)](x, out, *_consts(x, negative_slope, 0))


def leaky_relu_backward(grad, x, grad_input, negative_slope) -> None:
    g, x, gi = elementwise("leaky_relu_backward", grad=grad, x=x, grad_input=grad_input)
    _leaky_relu_backward[_grid(x.size)](g, x, gi, *_consts(x, negative_slope, 0))


def sigmoid(x, out) -> None:
    x, out = elementwise("sigmoid", x=x, out=out)
    _sigmoid[_grid(x.size)](x, out, *_consts(x, 1))


def sigmoid_backward(grad, y, grad_input) -> None:
    g, y, gi = elementwise("sigmoid_backward", grad=grad, y=y, grad_input=grad_input)
    _sigmoid_backward[_grid(y.size)](g, y, gi, *_consts(y, 1))


def tanh(x, out) -> None:
    x, out = elementwise("tanh", x=x, out=out)
    _tanh[_grid(x.size)](x, out)


def tanh_backward(grad, y, grad_input) -> None:
    g, y, gi = elementwise("tanh_backward", grad=grad, y=y, grad_input=grad_input)
    _tanh_backward[_grid(y.size)](g, y, gi, *_consts(y, 1))


def gelu(x, out, approximate="none") -> None:
    ta = _approximate("gelu", approximate)
    x, out = elementwise("gelu", x=x, out=out)
    if ta:
        _gelu_tanh[_grid(x.size)](x, out, *_consts(x, 1, 2, _SQRT_2_PI, _KAPPA))
    else:
        _gelu_erf[_grid(x.size)](x, out, *_consts(x, 0.5, _INV_SQRT2))


def gelu_backward(grad, x, grad_input, approximate="none") -> None:
    ta = _approximate("gelu_backward", approximate)
    g, x, gi = elementwise("gelu_backward", grad=grad, x=x, grad_input=grad_input)
    if ta:
        c = _consts(x, 1, 2, _SQRT_2_PI, _KAPPA, 3 * _KAPPA)
        _gelu_tanh_backward[_grid(x.size)](g, x, gi, *c)
    else:
        c = _consts(x, 0.5, _INV_SQRT2, _INV_SQRT_2PI)
        _gelu_erf_backward[_grid(x.size)](g, x, gi, *c)


def silu(x, out) -> None:
    x, out = elementwise("silu", x=x, out=out)
    _silu[_grid(x.size)](x, out, *_consts(x, 1))


def silu_backward(grad, x, grad_input) -> None:
    g, x, gi = elementwise("silu_backward", grad=grad, x=x, grad_input=grad_input)
    _silu_backward[_grid(x.size)](g, x, gi, *_consts(x, 1))


def softplus(x, out, beta, threshold) -> None:
    x, out = elementwise("softplus", x=x, out=out)
    _softplus[_grid(x.size)](x, out, *_consts(x, beta, threshold, 0))


def softplus_backward(grad, x, grad_input, beta, threshold) -> None:
    g, x, gi = elementwise("softplus_backward", grad=grad, x=x, grad_input=grad_input)
    _softplus_backward[_grid(x.size)](g, x, gi, *_consts(x, beta, threshold, 1))


def elu(x, out, alpha) -> None:
    x, out = elementwise("elu", x=x, out=out)
    _elu[_grid(x.size)](x, out, *_consts(x, alpha, 0))


def elu_backward(grad, x, grad_input, alpha) -> None:
    g, x, gi = elementwise("elu_backward", grad=grad, x=x, grad_input=grad_input)
    _elu_backward[_grid(x.size)](g, x, gi, *_consts(x, alpha, 0))
