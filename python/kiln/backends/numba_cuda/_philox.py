"""Philox4x32-10 as a Numba CUDA device function: kiln's counter-based RNG
(csrc/common/philox.h), shared by dropout and attention's dropout.

The random word of element index ``idx`` for a call seeded with ``seed`` is word
(idx & 3) of philox4x32(counter = {lo32(idx >> 2), hi32(idx >> 2), 0, 0},
key = {lo32(seed), hi32(seed)}): ten rounds of
    (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
with the key bumped by the Weyl constants (W0, W1) before every round but the first.

Integers: the 32-bit words are carried in uint64 and masked to 32 bits after each add, so
the 32 x 32 -> 64-bit products (mulhi = product >> 32) are exact and the simulator's NumPy
scalars never overflow. Every constant is a NumPy uint64 (Numba freezes global NumPy
scalars as typed constants): mixing uint64 with a plain int literal would make Numba
compute in float64.
"""

from __future__ import annotations

import numpy as np

from kiln.backends.numba_cuda._common import jit

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK = np.uint64(0xFFFFFFFF)
U0, U1, U2, U3, U8, U32 = (np.uint64(v) for v in (0, 1, 2, 3, 8, 32))


@jit(device=True)
def philox4x32(k0, k1, block):
    """The four 32-bit words (in uint64) of Philox4x32-10 for counter ``block``, key (k0, k1)."""
    c0 = block & MASK
    c1 = block >> U32
    c2 = U0
    c3 = U0
    for r in range(10):
        if r > 0:
            k0 = (k0 + W0) & MASK
            k1 = (k1 + W1) & MASK
        p0 = M0 * c0
        p1 = M1 * c2
        n0 = (p1 >> U32) ^ c1 ^ k0
        n2 = (p0 >> U32) ^ c3 ^ k1
        c1 = p1 & MASK
        c3 = p0 & MASK
        c0 = n0
        c2 = n2
    return c0, c1, c2, c3


@jit(device=True)
def pick(w0, w1, w2, w3, idx):
    """Word ``idx & 3`` of a block's four words (idx a uint64)."""
    j = idx & U3
    if j == U0:
        return w0
    if j == U1:
        return w1
    if j == U2:
        return w2
    return w3
