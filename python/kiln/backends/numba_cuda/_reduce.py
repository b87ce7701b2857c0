"""Block-wide reductions shared by the row kernels of the softmax and loss families.

(A module of its own: importing the family module ``softmax`` from ``loss`` would bind the
package attribute ``softmax`` to that module instead of the kernel.)
"""

from __future__ import annotations

from numba import cuda

from kiln.backends.numba_cuda._common import jit


@jit(device=True)
def _block_max(sm, v):
    """Max of v over the block (blockDim.x a power of two); sm: shared, >= blockDim.x."""
    t = cuda.threadIdx.x
    sm[t] = v
    cuda.syncthreads()
    h = cuda.blockDim.x // 2
    while h > 0:
        if t < h and sm[t + h] > sm[t]:
            sm[t] = sm[t + h]
        cuda.syncthreads()
        h //= 2
    r = sm[0]
    cuda.syncthreads()  # sm is reused by the next reduction
    return r


@jit(device=True)
def _block_sum(sm, v):
    """Sum of v over the block (blockDim.x a power of two); sm: shared, >= blockDim.x."""
    t = cuda.threadIdx.x
    sm[t] = v
    cuda.syncthreads()
    h = cuda.blockDim.x // 2
    while h > 0:
        if t < h:
            sm[t] += sm[t + h]
        cuda.syncthreads()
        h //= 2
    r = sm[0]
    cuda.syncthreads()
    return r
