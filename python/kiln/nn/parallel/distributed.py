"""``DistributedDataParallel``: data-parallel training over ``kiln.distributed`` (MPI).

Every rank holds a replica of the model and runs forward/backward on its own share of
the global batch; the gradients are averaged across ranks during backward so that each
rank's optimizer step sees the gradient of the mean loss over the global batch, and the
replicas stay identical:

    grad_avg(p) = (1 / world_size) * sum_r grad_r(p)

How, following ``torch.nn.parallel.DistributedDataParallel``:

* construction broadcasts rank 0's parameters and buffers (one ``MPI_Bcast`` per dtype
  over a packed copy), after checking that every rank wraps the same parameter shapes;
* the parameters that require grad are packed, in reverse registration order (roughly
  the order backward produces their gradients), into flat per-dtype buckets of at most
  ``bucket_cap_mb`` MiB (the first bucket at most 1 MiB, so communication starts early);
  after the first synchronised backward they are rebuilt once in the order its gradients
  actually became ready (rank 0's order, broadcast), as torch does;
* each parameter gets a post-accumulate-grad hook: once its ``.grad`` is final for this
  backward, the hook copies it into its bucket slot; a full bucket starts a non-blocking
  ``MPI_Iallreduce`` (sum, then divided by the world size), so communication overlaps the
  rest of backward. Buckets start strictly in index order on every rank, because MPI
  matches collectives by call order;
* the hook that fills the last bucket waits for every outstanding reduction and writes
  the averages back into each ``p.grad`` (or leaves ``p.grad`` a view of its bucket slot
  with ``gradient_as_bucket_view=True``), so the grads are final when backward returns;
* ``no_sync()`` skips all of this (gradients accumulate locally); the next synchronised
  backward reduces the accumulated gradients;
* a parameter that gets no gradient leaves its bucket unfinished: the next forward
  raises the same error on every rank, unless ``find_unused_parameters=True``, which
  walks the output's graph in forward and counts unreached parameters as ready (zero
  contribution; a parameter unused on every rank keeps its ``.grad`` untouched);
* with ``broadcast_buffers=True`` every synchronised forward first broadcasts rank 0's
  buffers (BatchNorm running statistics stay identical; use ``SyncBatchNorm`` to share
  the batch statistics themselves).

Example (a single process is a world of size 1):
    >>> import kiln, kiln.distributed as dist
    >>> from kiln import nn
    >>> dist.init_process_group("mpi")
    >>> model = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
    >>> sorted(model.state_dict())
    ['module.bias', 'module.weight']
    >>> model(kiln.ones(4, 3)).sum().backward()
    >>> model.module.weight.grad.shape
    kiln.Size([2, 3])
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

import contextlib

import numpy as np

from kiln.distributed import collectives as _c
from kiln.grad_mode import is_grad_enabled
from kiln.nn.module import Module
from kiln.tensor import Tensor, _wrap

_FIRST_BUCKET_BYTES = 1024 * 1024  # torch.distributed._DEFAULT_FIRST_BUCKET_BYTES


class _Bucket:
    __slots__ = ("index", "dtype", "params", "offsets", "flat", "tensor", "pending", "work")

    def __init__(self, index: int, dtype, params: list[int], sizes: list[int]) -> None:
        self.index, self.dtype, self.params = index, dtype, params
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64).tolist()
        self.flat = np.zeros(self.offsets[-1], dtype)
        self.tensor = _wrap(self.flat)
        self.pending = len(params)
        self.work = None


def _bucket_assignment(params: list[Tensor], cap_bytes: int, order=None) -> list[tuple]:
    """Indices of ``params`` grouped into buckets: in ``order`` (default: reverse
    registration order), per dtype, PyTorch's rule (a bucket closes once it reaches its
    limit; the first one's limit is 1 MiB)."""
    open_ = {}  # dtype -> (indices, bytes)
    done = []
    for i in (reversed(range(len(params))) if order is None else order):
        arr = params[i].data
        idx, size = open_.get(arr.dtype, ([], 0))
        idx.append(i)
        size += arr.nbytes
        limit = min(_FIRST_BUCKET_BYTES, cap_bytes) if not done else cap_bytes
        if size >= limit:
            done.append((arr.dtype, idx))
            open_.pop(arr.dtype, None)
        else:
            open_[arr.dtype] = (idx, size)
    done.extend((dt, idx) for dt, (idx, _) in open_.items())
    return done


def _tensors_in(obj, out: list) -> list:
    if isinstance(obj, Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors_in(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors_in(o, out)
    return out


def _reachable_leaves(outputs) -> set[int]:
    """ids of the leaf tensors the autograd graph of ``outputs`` reaches."""
    seen_nodes, leaves, stack = set(), set(), []
    for t in _tensors_in(outputs, []):
        if t.grad_fn is None:
            if t.requires_grad:
                leaves.add(id(t))
        elif id(t.grad_fn) not in seen_nodes:
            seen_nodes.add(id(t.grad_fn))
            stack.append(t.grad_fn)
    while stack:
        n = stack.pop()
        for a in n.inputs or ():
            if type(a) is not Tensor or not a.requires_grad:
                continue
            p = a.grad_fn
            if p is None:
                leaves.add(id(a))
            elif id(p) not in seen_nodes:
                seen_nodes.add(id(p))
                stack.append(p)
    return leaves


def _broadcast_packed(comm, MPI, tensors: list[Tensor], src: int = 0) -> None:
    """Broadcast ``tensors`` from ``src`` in place, one MPI_Bcast per dtype."""
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(t.data.dtype, []).append(t)
    for ts in by_dtype.values():
        flat = np.concatenate([t.data.ravel() for t in ts])
        if flat.size:
            comm.Bcast(flat, root=src)
        off = 0
        for t in ts:
            n = t.data.size
            t.data[...] = flat[off:off + n].reshape(t.data.shape)
            t._version += 1
            off += n


class _Reducer:
    """Gradient buckets and the per-backward state of their all-reduces."""

    def __init__(self, comm, MPI, params: list[Tensor], names: list[str], cap_bytes: int,
                 find_unused: bool, as_view: bool) -> None:
        self.comm, self.MPI = comm, MPI
        self.params, self.names = params, names
        self.find_unused, self.as_view = find_unused, as_view
        self._assign(_bucket_assignment(params, cap_bytes))  # buckets, where, views
        self.handles = [p.register_post_accumulate_grad_hook(self._hook_for(i))
                        for i, p in enumerate(params)]
        self.armed = False  # a synchronised forward ran; its backward must reduce
        # the order gradients became ready in the first synchronised backward; the buckets
        # are rebuilt in rank 0's order once, at the next forward (as torch does)
        self.cap_bytes, self.rebuilt, self.arrival, self.first_order = cap_bytes, False, [], None
        self._reset()

    def _assign(self, assignment) -> None:
        self.buckets = [_Bucket(k, dt, idx, [self.params[i].data.size for i in idx])
                        for k, (dt, idx) in enumerate(assignment)]
        self.where = {}  # param index -> (bucket, offset, size)
        for b in self.buckets:
            for j, i in enumerate(b.params):
                self.where[i] = (b, b.offsets[j], b.offsets[j + 1] - b.offsets[j])
        self.views = [None] * len(self.params)

    def _rebuild(self) -> None:
        """Rebuild the buckets in the order the first backward produced the gradients
        (rank 0's, broadcast: every rank must bucket alike), so that a bucket fills, and
        its all-reduce starts, as early as backward allows even when the registration
        order is not the backward order (shared layers, branches, reordered modules)."""
        order = np.asarray(self.first_order, np.int64)
        self.comm.Bcast(order, root=0)
        self.rebuilt, self.first_order = True, None
        new = _bucket_assignment(self.params, self.cap_bytes, order.tolist())
        if [idx for _, idx in new] != [b.params for b in self.buckets]:
            self._assign(new)

    def _reset(self) -> None:
        self.arrival = []
        self.started = False  # a hook fired in this backward
        self.ready = [False] * len(self.params)
        self.next_bucket = 0
        self.unused = []
        self.used_map = self.used_work = None
        for b in self.buckets:
            b.pending, b.work = len(b.params), None

    def _hook_for(self, i: int):
        def hook(p: Tensor) -> None:
            if self.armed:
                self._autograd_hook(i)
        return hook

    # ---- one backward ------------------------------------------------------------------
    def prepare_for_backward(self, outputs) -> None:
        if self.started:
            self._unfinished_error()
        if self.first_order is not None:
            self._rebuild()
        self.armed = True
        if self.find_unused:
            reached = _reachable_leaves(outputs)
            self.unused = [i for i, p in enumerate(self.params) if id(p) not in reached]

    def _autograd_hook(self, i: int) -> None:
        if not self.started:
            self.started = True
            if self.find_unused:
                # which parameters each rank used; summed across ranks (started first on
                # every rank, before any bucket) to tell globally unused ones at the end
                used = np.ones(len(self.params), np.int32)
                used[self.unused] = 0
                self.used_map = used
                self.used_work = self.comm.Iallreduce(self.MPI.IN_PLACE, used, op=self.MPI.SUM)
                for j in self.unused:
                    self._mark_ready(j, have_grad=False)
        self._mark_ready(i, have_grad=True)

    def _mark_ready(self, i: int, have_grad: bool) -> None:
        if self.ready[i]:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self.names[i]!r} (index {i}) was marked "
                "ready twice in one backward: it got its gradient twice (a second backward "
                "through the same forward, or a parameter shared by two wrapped modules); "
                "use no_sync() for all but the last backward, or reshape the model"
            )
        self.ready[i] = True
        if not self.rebuilt:
            self.arrival.append(i)
        b, off, n = self.where[i]
        slot = b.flat[off:off + n]
        p = self.params[i]
        if not have_grad or p.grad is None:
            slot[...] = 0
        elif not (self.as_view and p.grad is self.views[i]):
            slot[...] = p.grad.data.reshape(-1)
        b.pending -= 1
        if b.pending == 0:
            self._launch_ready_buckets()

    def _launch_ready_buckets(self) -> None:
        bs = self.buckets
        while self.next_bucket < len(bs) and bs[self.next_bucket].pending == 0:
            b = bs[self.next_bucket]
            b.work = _c._iall_reduce(self.comm, b.tensor, b.flat, _c.ReduceOp.AVG,
                                     self.MPI.SUM, async_op=True)
            self.next_bucket += 1
        for b in bs[:self.next_bucket]:
            b.work.is_completed()  # drives MPI progress while backward runs
        if self.next_bucket == len(bs):
            self._finalize()

    def _finalize(self) -> None:
        for b in self.buckets:
            b.work.wait()
        globally_unused = set()
        if self.used_work is not None:
            self.used_work.Wait()
            globally_unused = set(np.flatnonzero(self.used_map == 0).tolist())
        for i, p in enumerate(self.params):
            if i in globally_unused:
                continue
            b, off, n = self.where[i]
            avg = b.flat[off:off + n].reshape(p.data.shape)
            if self.as_view:
                if p.grad is not self.views[i]:
                    self.views[i] = _wrap(avg)
                    p.grad = self.views[i]
                else:
                    p.grad._version += 1
            elif p.grad is None or p.grad.grad_fn is not None or not p.grad.data.flags.writeable:
                p.grad = _wrap(avg.copy())
            else:
                p.grad.data[...] = avg
                p.grad._version += 1
        self.armed = False
        if not self.rebuilt and self.first_order is None:
            self.first_order = self.arrival
        self._reset()

    def _unfinished_error(self) -> None:
        missing = [f"{i} ({self.names[i]})" for i, r in enumerate(self.ready) if not r]
        rank = self.comm.Get_rank()
        self.armed = False
        self._reset()
        raise RuntimeError(
            "DistributedDataParallel: expected to have finished reduction in the prior "
            "iteration before starting a new one. This error indicates that your module has "
            "parameters that were not used in producing loss. You can enable unused parameter "
            "detection by passing find_unused_parameters=True to DistributedDataParallel, and "
            "by making sure all forward outputs participate in calculating loss. Parameters "
            f"which did not receive grad on rank {rank}: {', '.join(missing)}"
        )


class DistributedDataParallel(Module):
    """Data parallelism across the ranks of ``kiln.distributed`` (``torch.nn.parallel.
    DistributedDataParallel``): gradients are averaged over ranks in buckets while backward
    runs. See the module docstring for the mechanics.

    Call ``kiln.distributed.init_process_group("mpi")`` first. ``device_ids`` and
    ``output_device`` must stay None (the MPI backend runs CPU modules); ``dim`` is kept
    for PyTorch compatibility (DDP itself never splits the input).
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, init_sync: bool = True, process_group=None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False,
                 static_graph: bool = False, **kwargs) -> None:
        super().__init__()
        name = "DistributedDataParallel"
        if kwargs:
            raise TypeError(f"{name}: unsupported arguments {sorted(kwargs)}")
        if not isinstance(module, Module):
            raise TypeError(f"{name}: module must be a kiln.nn.Module, got "
                            f"{type(module).__name__}")
        if device_ids not in (None, []) or output_device is not None:
            raise ValueError(
                f"{name}: device_ids and output_device must be None for CPU modules (the MPI "
                f"backend reduces CPU tensors), got device_ids={device_ids!r}, "
                f"output_device={output_device!r}")
        if process_group is not None:
            raise ValueError(f"{name}: only the default process group exists (process_group="
                             "None)")
        if bucket_cap_mb is None:
            bucket_cap_mb = 25
        if not bucket_cap_mb > 0:
            raise ValueError(f"{name}: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        comm = _c._comm(name)
        MPI = _c._mpi()
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError(f"{name} is not needed when a module doesn't have any "
                               "parameter that requires a gradient.")
        for n, p in named:
            if type(p.data) is not np.ndarray:
                raise ValueError(f"{name}: parameter {n!r} is on {p.device}; the MPI backend "
                                 "handles CPU modules only")
        self.module = module
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.static_graph = static_graph
        self.bucket_bytes_cap = int(bucket_cap_mb * 1024 * 1024)
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self._comm = comm
        self._MPI = MPI
        states = [t for _, t in module.named_parameters()] + \
                 [t for _, t in module.named_buffers()]
        # every rank must wrap the same model: agree on all shapes and dtypes first
        _c._agree(comm, name, tuple(tuple(t.shape) + (t.data.dtype.str,) for t in states),
                  np.dtype(np.float64), len(states))
        if init_sync:
            _broadcast_packed(comm, MPI, states)
        self._buffers_list = [t for _, t in module.named_buffers()]
        self.reducer = _Reducer(comm, MPI, [p for _, p in named], [n for n, _ in named],
                                self.bucket_bytes_cap, find_unused_parameters,
                                gradient_as_bucket_view)

    def forward(self, *inputs, **kwargs):
        sync = is_grad_enabled() and self.require_backward_grad_sync
        self.require_forward_param_sync = sync
        if sync and self.broadcast_buffers and self._buffers_list:
            _broadcast_packed(self._comm, self._MPI, self._buffers_list)
        if sync and self.reducer.started:
            self.reducer._unfinished_error()
        out = self.module(*inputs, **kwargs)
        if sync:
            self.reducer.prepare_for_backward(out)
        else:
            self.reducer.armed = False
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward accumulates gradients locally without communicating; the
        first synchronised backward after it reduces the accumulated gradients.

        >>> import kiln, kiln.distributed as dist
        >>> from kiln import nn
        >>> dist.init_process_group("mpi")
        >>> ddp = nn.parallel.DistributedDataParallel(nn.Linear(2, 1))
        >>> with ddp.no_sync():
        ...     ddp(kiln.ones(1, 2)).sum().backward()
        >>> ddp(kiln.ones(1, 2)).sum().backward()
        >>> ddp.module.bias.grad.tolist() == [2.0 * 1]
        True
        >>> dist.destroy_process_group()
        """
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def extra_repr(self) -> str:
        return ""
