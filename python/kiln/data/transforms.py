"""Transforms for augmentation, on NumPy arrays: ``Compose``, ``Normalize``,
``RandomCrop`` (with padding), ``RandomHorizontalFlip``, ``GaussianNoise``, ``Lambda``.

Each transform takes one sample -- channels first, ``(C, H, W)`` for images, ``(C, L)``
for signals -- through ``t(x)``, and a batch ``(N, C, ...)`` through ``t.batch(x)``, with
independent random draws per sample. ``ArrayDataset`` calls ``.batch`` when the loader
fetches a whole batch, so augmentation costs a few vectorised NumPy passes per batch.

Randomness comes from :func:`current_generator`: inside a ``DataLoader`` that is the
per-batch generator the loader derives from its epoch seed (so augmented epochs replay
exactly and do not depend on the prefetch thread); elsewhere kiln's global generator.

Example:
    >>> import numpy as np
    >>> from kiln.data import transforms as T
    >>> t = T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip(),
    ...                T.Normalize(0.5, 0.25)])
    >>> t(np.full((1, 4, 4), 0.5, np.float32)).shape
    (1, 4, 4)
    >>> t.batch(np.zeros((8, 1, 4, 4), np.float32)).shape
    (8, 1, 4, 4)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip", "GaussianNoise",
           "Lambda", "current_generator", "use_generator"]

_local = threading.local()


def current_generator() -> np.random.Generator:
    """The generator random transforms draw from: the loader's per-batch generator inside
    a ``DataLoader``, kiln's global generator elsewhere."""
    g = getattr(_local, "gen", None)
    if g is not None:
        return g
    from kiln.creation import default_generator

    return default_generator()


@contextlib.contextmanager
def use_generator(gen: np.random.Generator):
    """Make ``gen`` this thread's :func:`current_generator` inside the ``with`` block."""
    prev = getattr(_local, "gen", None)
    _local.gen = gen
    try:
        yield gen
    finally:
        _local.gen = prev


class Transform:
    """Base class: define ``batch(x)`` for ``(N, ...)`` input; one sample goes through it
    as a batch of one."""

    def __call__(self, x):
        x = np.asarray(x)
        return self.batch(x[None])[0]

    def batch(self, x):
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def batch(self, x):
        for t in self.transforms:
            x = t.batch(x) if hasattr(t, "batch") else np.stack([t(s) for s in x])
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class Lambda(Transform):
    """Wrap a function of one sample (applied per sample in a batch)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)

    def batch(self, x):
        return np.stack([self.fn(s) for s in x])


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel (the first axis of a sample); ``mean`` and
    ``std`` are numbers or one value per channel."""

    def __init__(self, mean, std) -> None:
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std evaluated to zero ({std}), leading to division "
                             "by zero")

    def batch(self, x):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"Normalize: expected a batch (N, C, ...), got shape {x.shape}")
        c = self.mean.size if self.mean.size > 1 else self.std.size
        if c > 1 and x.shape[1] != c:
            raise ValueError(f"Normalize: {c} channel statistics for input with {x.shape[1]} "
                             f"channels (shape {x.shape})")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        mean = self.mean.astype(dt).reshape(shape)
        std = self.std.astype(dt).reshape(shape)
        return ((x - mean) / std).astype(dt, copy=False)


class RandomCrop(Transform):
    """Pad the last two axes by ``padding`` (``constant`` with ``fill``, ``edge`` or
    ``reflect``), then crop ``size`` (an int or ``(h, w)``) at a random position."""

    def __init__(self, size, padding=0, fill: float = 0.0, padding_mode: str = "constant"):
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        p = (padding,) * 4 if np.isscalar(padding) else tuple(padding)
        if len(p) == 2:
            p = (p[0], p[1], p[0], p[1])
        if len(p) != 4 or min(p) < 0:
            raise ValueError(f"RandomCrop: padding must be an int or 2 / 4 non-negative ints, "
                             f"got {padding}")
        self.padding = tuple(int(v) for v in p)  # left, top, right, bottom (torchvision)
        if padding_mode not in ("constant", "edge", "reflect"):
            raise ValueError(f"RandomCrop: unknown padding_mode {padding_mode!r}")
        self.fill, self.padding_mode = fill, padding_mode

    def batch(self, x):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"RandomCrop: expected a batch (N, ..., H, W), got shape {x.shape}")
        left, top, right, bottom = self.padding
        pad = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
        kw = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
        xp = np.pad(x, pad, mode=self.padding_mode, **kw) if any(self.padding) else x
        h, w = self.size
        hp, wp = xp.shape[-2:]
        if h > hp or w > wp:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded "
                             f"input {(hp, wp)}")
        n = x.shape[0]
        g = current_generator()
        i = g.integers(0, hp - h + 1, size=n)
        j = g.integers(0, wp - w + 1, size=n)
        rows = (i[:, None] + np.arange(h))[:, :, None]  # (N, h, 1)
        cols = (j[:, None] + np.arange(w))[:, None, :]  # (N, 1, w)
        moved = np.moveaxis(xp, 0, -3)  # (..., N, Hp, Wp): gather per sample
        out = moved[..., np.arange(n)[:, None, None], rows, cols]
        return np.ascontiguousarray(np.moveaxis(out, -3, 0))


class RandomHorizontalFlip(Transform):
    """Reverse the last axis with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def batch(self, x):
        x = np.asarray(x)
        flip = current_generator().random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class GaussianNoise(Transform):
    """Add ``N(mean, std^2)`` noise; ``clip=(lo, hi)`` clamps the result."""

    def __init__(self, std: float = 0.1, mean: float = 0.0, clip=None) -> None:
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be >= 0, got {std}")
        self.std, self.mean, self.clip = float(std), float(mean), clip

    def batch(self, x):
        x = np.asarray(x)
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        noise = current_generator().standard_normal(x.shape, dtype=np.float64)
        out = (x + (self.mean + self.std * noise)).astype(dt)
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out
