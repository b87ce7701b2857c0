"""Shared bits of the examples: argument defaults, timing, a dependency-free PNG writer."""

from __future__ import annotations

import argparse
import struct
import time
import zlib

import numpy as np


def parser(doc: str, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--limit", type=int, default=0, help="use at most this many training samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="example-out", help="folder for images / checkpoints")
    p.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    return p


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.t0:.1f} s"


def limit(ds, n: int):
    """The first ``n`` samples of ``ds`` (all when n is 0)."""
    from kiln.data import Subset

    return ds if not n or n >= len(ds) else Subset(ds, np.arange(n))


def save_png(path, img: np.ndarray) -> str:
    """Write a grayscale image (2-d array, values in [0, 1]) as an 8-bit PNG."""
    a = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = a.shape
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)
    return str(path)


def grid(images: np.ndarray, cols: int, scale: int = 1, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W) images into one (rows*(H+pad), cols*(W+pad)) image, upscaled."""
    n, h, w = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h,
            pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    return np.kron(out, np.ones((scale, scale), np.float32)) if scale > 1 else out


def mnist1d_data(path: str | None, seed: int = 42):
    """(train, test) MNIST-1D: from an .npz (x, y, x_test, y_test) when given, else generated
    by the mnist1d package (pip install mnist1d)."""
    import kiln.data as D

    if path:
        with np.load(path) as f:
            mk = lambda x, y: D.ArrayDataset(x.astype(np.float32).reshape(len(x), 1, -1),
                                             y.astype(np.int64))
            return mk(f["x"], f["y"]), mk(f["x_test"], f["y_test"])
    return D.mnist1d(num_samples=5000, seed=seed)
