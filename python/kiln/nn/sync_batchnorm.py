"""``SyncBatchNorm``: batch normalization whose training statistics span every rank
(``torch.nn.SyncBatchNorm``), so data-parallel training normalizes by the global batch.

With ranks r = 1..R each holding n_r values of a channel (N * spatial positions), the
forward combines per-rank (count, mean, M2 = sum of squared deviations) exactly, with
Chan's pairwise formula (no E[x^2] - E[x]^2 cancellation), in float64:

    n = sum n_r,   mean = sum n_r mean_r / n,   M2 = sum (M2_r + n_r (mean_r - mean)^2)
    y = (x - mean) / sqrt(M2 / n + eps) * weight + bias

(one ``MPI_Allgather`` of a (3, C) array per call). Backward needs two global sums per
channel, sum(dy) and sum(dy * xhat), all-reduced in one call; then on each rank

    dx = weight * invstd * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n)

while ``weight.grad``/``bias.grad`` are this rank's share (sum(dy * xhat), sum(dy)):
``DistributedDataParallel`` averages them like every other gradient. Running statistics
use the global mean and unbiased variance M2 / (n - 1). In eval mode, and in training
when no process group is initialised (or it has one rank), it is ``BatchNorm``.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> net = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
    >>> type(net[0]).__name__
    'SyncBatchNorm'
    >>> net(kiln.randn(4, 3, 2, 2)).shape
    kiln.Size([4, 3, 2, 2])
"""

from __future__ import annotations

import numpy as np

from kiln.autograd import Function
from kiln.distributed import collectives as _c
from kiln.grad_mode import no_grad
from kiln.nn.module import Module
from kiln.nn.normalization import _BatchNorm
from kiln.tensor import Tensor


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _bshape(x: np.ndarray) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


class SyncBatchNormFn(Function):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, w, b, rm, rv, momentum, eps, comm):
        c = x.shape[1]
        ax = _axes(x)
        n_local = x.size // c if c else 0
        local = np.zeros((3, c), np.float64)
        local[0] = n_local
        if n_local:
            x64 = x.astype(np.float64, copy=False)
            local[1] = x64.mean(axis=ax)
            local[2] = np.square(x64 - local[1].reshape(_bshape(x))).sum(axis=ax)
        allst = np.empty((comm.Get_size(), 3, c), np.float64)
        comm.Allgather(local, allst)
        counts, means, m2s = allst[:, 0], allst[:, 1], allst[:, 2]
        n = counts[:, 0].sum()
        if n <= 1:
            raise ValueError(
                "SyncBatchNorm: expected more than 1 value per channel when training, got "
                f"{int(n)} across {comm.Get_size()} ranks (local input {list(x.shape)})")
        mean = (counts * means).sum(0) / n
        m2 = (m2s + counts * np.square(means - mean)).sum(0)
        invstd = 1.0 / np.sqrt(m2 / n + eps)
        if rm is not None:
            rm *= 1.0 - momentum
            rm += (momentum * mean).astype(rm.dtype)
        if rv is not None:
            rv *= 1.0 - momentum
            rv += (momentum * m2 / (n - 1)).astype(rv.dtype)
        bs = _bshape(x)
        xhat = ((x - mean.reshape(bs)) * invstd.reshape(bs)).astype(x.dtype, copy=False)
        out = xhat
        if w is not None:
            out = out * w.reshape(bs)
        if b is not None:
            out = out + b.reshape(bs)
        ctx.xhat, ctx.invstd, ctx.n, ctx.comm = xhat, invstd.astype(x.dtype), n, comm
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        xt, w, b = ctx.inputs[:3]
        gd = g.data
        xhat = ctx.xhat
        ax, bs = _axes(xhat), _bshape(xhat)
        sum_dy = gd.sum(axis=ax)
        sum_dy_xhat = (gd * xhat).sum(axis=ax)
        gw = sum_dy_xhat.astype(w.data.dtype) if w is not None and w.requires_grad else None
        gb = sum_dy.astype(b.data.dtype) if b is not None and b.requires_grad else None
        gx = None
        if xt.requires_grad:
            both = np.concatenate([sum_dy, sum_dy_xhat]).astype(np.float64)
            ctx.comm.Allreduce(_c._mpi().IN_PLACE, both, op=_c._mpi().SUM)
            c = xhat.shape[1]
            mean_dy = (both[:c] / ctx.n).astype(gd.dtype).reshape(bs)
            mean_dy_xhat = (both[c:] / ctx.n).astype(gd.dtype).reshape(bs)
            scale = ctx.invstd if w is None else ctx.invstd * w.data
            gx = (gd - mean_dy - xhat * mean_dy_xhat) * scale.reshape(bs)
        return gx, gw, gb, None, None, None, None, None


class SyncBatchNorm(_BatchNorm):
    """Batch normalization over the global batch of every rank (``torch.nn.SyncBatchNorm``);
    accepts (N, C, *) input of any rank >= 2. ``process_group`` must be None (the default
    group)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None,
                 device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)
        if process_group is not None:
            raise ValueError("SyncBatchNorm: only the default process group exists "
                             "(process_group=None)")
        self.process_group = None

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002
        if input.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2D input (got {input.ndim}D "
                             "input)")

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check_input_dim(input)
        comm = _c._S.comm
        if not self.training or comm is None or comm.Get_size() == 1:
            return super().forward(input)
        if type(input.data) is not np.ndarray:
            raise RuntimeError(f"SyncBatchNorm: input is on {input.device}; the MPI backend "
                               "handles CPU tensors only")
        if input.data.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: input has {input.data.shape[1]} channels, "
                             f"expected {self.num_features} (input {list(input.shape)})")
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.track_running_stats and self.running_mean is not None
        if track:
            self.num_batches_tracked.data[...] += 1
            self.num_batches_tracked._version += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        rm = self.running_mean.data if track else None
        rv = self.running_var.data if track else None
        out = SyncBatchNormFn.apply(input, self.weight, self.bias, rm, rv, float(factor),
                                    float(self.eps), comm)
        if track:
            self.running_mean._version += 1
            self.running_var._version += 1
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """Return ``module`` with every ``BatchNorm*d`` replaced by a ``SyncBatchNorm``
        sharing its parameters and buffers (a BatchNorm passed itself is replaced too)."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group)
            with no_grad():
                if module.affine:
                    out.weight = module.weight
                    out.bias = module.bias
                out.running_mean = module.running_mean
                out.running_var = module.running_var
                out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        del module
        return out


__all__ = ["SyncBatchNorm"]
