"""Collectives over MPI on CPU tensors, with ``torch.distributed``'s names and semantics.

The transport is MPI (Open MPI from Debian's packages through ``mpi4py``): rank and
world size come from the launcher (``mpirun``, ``srun``, ``kiln launch``). Every
collective works in place on the tensor's NumPy buffer, which MPI reads and writes
directly when it is contiguous (no staging copy); a non-contiguous tensor goes
through one contiguous copy and back.

Checked collectives (the public functions) first agree on the shape and dtype with one
small ``MPI_Allreduce`` of a signature, so a mismatch raises the same ``RuntimeError``
on every rank instead of hanging or reading past a buffer; ``DistributedDataParallel``
builds identical buckets on every rank by construction and calls the unchecked
``_iall_reduce`` instead, so its bucket all-reduces cost exactly one MPI call each.

A rank that raises an uncaught exception prints the rank and the error and aborts the
whole job (``MPI_Abort``), so the other ranks never block forever in a collective.

Example (a single process is a world of size 1; under ``mpirun -n 2`` it sums ranks):
    >>> import kiln, kiln.distributed as dist
    >>> dist.init_process_group("mpi")
    >>> t = kiln.ones(3)
    >>> dist.all_reduce(t, op=dist.ReduceOp.SUM)
    >>> t.tolist() == [float(dist.get_world_size())] * 3
    True
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

import enum
import sys
import traceback
import zlib

import numpy as np

from kiln.tensor import Tensor

_INSTALL_HINT = (
    "kiln.distributed needs Open MPI and mpi4py: `apt-get install openmpi-bin libopenmpi-dev` "
    "then `pip install \"kiln[distributed]\"`"
)


class ReduceOp(enum.Enum):
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MAX = "max"
    MIN = "min"


class _State:
    comm = None  # the world communicator (a duplicate of COMM_WORLD, so we own its traffic)
    MPI = None
    prev_excepthook = None


_S = _State()


def is_available() -> bool:
    """True when mpi4py (and so an MPI library) can be imported."""
    try:
        import mpi4py  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _mpi():
    if _S.MPI is None:
        try:
            from mpi4py import MPI  # noqa: PLC0415
        except ImportError as e:
            raise ImportError(f"{_INSTALL_HINT} ({e})") from e
        _S.MPI = MPI
    return _S.MPI


def _comm(op: str):
    if _S.comm is None:
        raise RuntimeError(
            f"{op}: the default process group has not been initialized; "
            "call kiln.distributed.init_process_group('mpi') first"
        )
    return _S.comm


def _abort_on_exception(exc_type, exc, tb) -> None:
    comm = _S.comm
    rank = comm.Get_rank() if comm is not None else -1
    size = comm.Get_size() if comm is not None else -1
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(f"kiln.distributed: rank {rank} of {size} raised; aborting the job\n{text}")
    sys.stderr.flush()
    if comm is not None and size > 1:
        comm.Abort(1)
    elif _S.prev_excepthook is not None:
        _S.prev_excepthook(exc_type, exc, tb)


def init_process_group(backend: str = "mpi", init_method=None, timeout=None,
                       world_size: int = -1, rank: int = -1) -> None:
    """Join the job's process group; rank and world size come from the MPI launcher.

    Only ``backend="mpi"`` exists (CPU tensors over MPI). ``world_size``/``rank`` may be
    given to assert what the launcher said; ``init_method`` and ``timeout`` are accepted
    for PyTorch compatibility and unused (MPI's launcher does the rendezvous).
    """
    if str(backend).lower() != "mpi":
        raise ValueError(
            f"init_process_group: backend {backend!r} is not supported; kiln.distributed runs "
            "on MPI (backend='mpi'); PyTorch's gloo/nccl are not part of kiln"
        )
    if _S.comm is not None:
        raise RuntimeError(
            "init_process_group: trying to initialize the default process group twice")
    MPI = _mpi()
    comm = MPI.COMM_WORLD.Dup()
    size, me = comm.Get_size(), comm.Get_rank()
    if world_size not in (-1, None) and world_size != size:
        comm.Free()
        raise ValueError(f"init_process_group: world_size={world_size} but the MPI launcher "
                         f"started {size} processes")
    if rank not in (-1, None) and rank != me:
        comm.Free()
        raise ValueError(f"init_process_group: rank={rank} but MPI says this is rank {me}")
    _S.comm = comm
    _S.prev_excepthook = sys.excepthook
    sys.excepthook = _abort_on_exception


def destroy_process_group(group=None) -> None:
    """Leave the process group (MPI itself stays initialised until the process exits)."""
    if _S.comm is None:
        return
    _S.comm.Free()
    _S.comm = None
    if sys.excepthook is _abort_on_exception:
        sys.excepthook = _S.prev_excepthook or sys.__excepthook__
    _S.prev_excepthook = None


def is_initialized() -> bool:
    return _S.comm is not None


def get_rank(group=None) -> int:
    return _comm("get_rank").Get_rank()


def get_world_size(group=None) -> int:
    return _comm("get_world_size").Get_size()


def get_backend(group=None) -> str:
    _comm("get_backend")
    return "mpi"


def barrier(group=None, async_op: bool = False):
    comm = _comm("barrier")
    if async_op:
        return Work(comm.Ibarrier())
    comm.Barrier()
    return None


class Work:
    """A pending non-blocking collective (``async_op=True``); ``wait()`` finishes it."""

    def __init__(self, request, finish=None) -> None:
        self._request, self._finish, self._done = request, finish, False

    def is_completed(self) -> bool:
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None) -> bool:
        if not self._done:
            self._request.Wait()
            self._complete()
        return True

    def _complete(self) -> None:
        self._done = True
        if self._finish is not None:
            self._finish()
            self._finish = None


class _Done(Work):
    def __init__(self) -> None:
        self._request, self._finish, self._done = None, None, True


# ---- argument handling --------------------------------------------------------------
def _array(t, op: str, name: str = "tensor") -> np.ndarray:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a kiln Tensor, got {type(t).__name__}")
    if type(t.data) is not np.ndarray:
        raise RuntimeError(
            f"{op}: {name} is on {t.device}; the MPI backend handles CPU tensors only")
    return t.data


def _writable(t: Tensor, arr: np.ndarray):
    """(buffer MPI writes into, function that copies it back into the tensor)."""
    t._version += 1
    if arr.flags.c_contiguous and arr.flags.writeable:
        return arr, None
    buf = np.ascontiguousarray(arr)

    def back() -> None:
        t.data[...] = buf

    return buf, back


def _mpi_op(op, name: str):
    MPI = _mpi()
    if not isinstance(op, ReduceOp):
        try:
            op = ReduceOp(str(op).lower().rsplit(".", 1)[-1])
        except ValueError:
            raise ValueError(
                f"{name}: unknown reduce op {op!r} (ReduceOp.SUM/AVG/PRODUCT/MAX/MIN)"
            ) from None
    return op, {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                ReduceOp.MAX: MPI.MAX, ReduceOp.MIN: MPI.MIN}[op]


def _agree(comm, op: str, shape, dtype: np.dtype, extra: int = 0) -> None:
    """Raise on every rank unless all ranks pass the same shape, dtype and ``extra``."""
    if comm.Get_size() == 1:
        return
    sig = np.array([len(shape), zlib.crc32(repr(tuple(shape)).encode()),
                    zlib.crc32(dtype.str.encode()), extra], np.int64)
    both = np.concatenate([sig, -sig])
    comm.Allreduce(_mpi().IN_PLACE, both, op=_mpi().MAX)
    if not np.array_equal(both[:4], -both[4:]):
        shapes = comm.allgather((tuple(shape), str(dtype), extra))
        listing = ", ".join(f"rank {r}: {s} {d}" + (f" ({e})" if extra else "")
                            for r, (s, d, e) in enumerate(shapes))
        raise RuntimeError(f"{op}: tensors differ across ranks ({listing}); every rank must pass "
                           f"the same shape and dtype (this is rank {comm.Get_rank()})")


def _avg(buf: np.ndarray, n: int, op: str) -> None:
    if buf.dtype.kind != "f":
        raise TypeError(f"{op}: ReduceOp.AVG needs a floating point tensor, got {buf.dtype}")
    buf /= n


# ---- collectives ----------------------------------------------------------------------
def all_reduce(tensor: Tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce ``tensor`` over all ranks, in place, leaving the result on every rank."""
    name = "all_reduce"
    comm, arr = _comm(name), _array(tensor, name)
    red, mop = _mpi_op(op, name)
    _agree(comm, name, arr.shape, arr.dtype, list(ReduceOp).index(red) + 1)
    if red is ReduceOp.AVG and arr.dtype.kind != "f":
        raise TypeError(f"{name}: ReduceOp.AVG needs a floating point tensor, got {arr.dtype}")
    return _iall_reduce(comm, tensor, arr, red, mop, async_op)


def _iall_reduce(comm, tensor: Tensor, arr: np.ndarray, red: ReduceOp, mop, async_op: bool):
    buf, back = _writable(tensor, arr)
    n = comm.Get_size()

    def finish() -> None:
        if red is ReduceOp.AVG:
            _avg(buf, n, "all_reduce")
        if back is not None:
            back()

    if buf.size == 0:
        return _Done() if async_op else None
    if async_op:
        return Work(comm.Iallreduce(_mpi().IN_PLACE, buf, op=mop), finish)
    comm.Allreduce(_mpi().IN_PLACE, buf, op=mop)
    finish()
    return None


def broadcast(tensor: Tensor, src: int = 0, group=None, async_op: bool = False):
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor``, in place."""
    name = "broadcast"
    comm, arr = _comm(name), _array(tensor, name)
    if not 0 <= src < comm.Get_size():
        raise ValueError(f"{name}: src={src} is not a rank of a world of size {comm.Get_size()}")
    _agree(comm, name, arr.shape, arr.dtype, src + 1)
    buf, back = _writable(tensor, arr)
    if buf.size == 0:
        return _Done() if async_op else None
    if async_op:
        return Work(comm.Ibcast(buf, root=src), back)
    comm.Bcast(buf, root=src)
    if back is not None:
        back()
    return None


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """Fill ``tensor_list[r]`` with rank r's ``tensor`` on every rank."""
    name = "all_gather"
    comm, arr = _comm(name), _array(tensor, name)
    n = comm.Get_size()
    if len(tensor_list) != n:
        raise ValueError(
            f"{name}: tensor_list has {len(tensor_list)} tensors for a world of size {n}")
    for i, t in enumerate(tensor_list):
        out = _array(t, name, f"tensor_list[{i}]")
        if out.shape != arr.shape or out.dtype != arr.dtype:
            raise ValueError(f"{name}: tensor_list[{i}] is {out.shape} {out.dtype} but tensor is "
                             f"{arr.shape} {arr.dtype}")
    _agree(comm, name, arr.shape, arr.dtype)
    gathered = np.empty((n, *arr.shape), arr.dtype)
    comm.Allgather(np.ascontiguousarray(arr), gathered)
    for t, part in zip(tensor_list, gathered):
        t._version += 1
        t.data[...] = part
    return _Done() if async_op else None


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None,
                           async_op: bool = False):
    """Concatenate every rank's ``input_tensor`` along dim 0 into ``output_tensor``."""
    name = "all_gather_into_tensor"
    comm, arr = _comm(name), _array(input_tensor, name, "input_tensor")
    out = _array(output_tensor, name, "output_tensor")
    n = comm.Get_size()
    if out.dtype != arr.dtype or out.size != n * arr.size:
        raise ValueError(f"{name}: output_tensor {out.shape} {out.dtype} must hold {n} x "
                         f"input_tensor {arr.shape} {arr.dtype}")
    _agree(comm, name, arr.shape, arr.dtype)
    buf, back = _writable(output_tensor, out)
    comm.Allgather(np.ascontiguousarray(arr), buf)
    if back is not None:
        back()
    return _Done() if async_op else None


def reduce_scatter(output: Tensor, input_list: list, op=ReduceOp.SUM, group=None,
                   async_op: bool = False):
    """Reduce ``input_list[r]`` over all ranks and leave the result on rank r in ``output``."""
    name = "reduce_scatter"
    comm, out = _comm(name), _array(output, name, "output")
    n = comm.Get_size()
    if len(input_list) != n:
        raise ValueError(
            f"{name}: input_list has {len(input_list)} tensors for a world of size {n}")
    parts = [_array(t, name, f"input_list[{i}]") for i, t in enumerate(input_list)]
    for i, p in enumerate(parts):
        if p.shape != out.shape or p.dtype != out.dtype:
            raise ValueError(f"{name}: input_list[{i}] is {p.shape} {p.dtype} but output is "
                             f"{out.shape} {out.dtype}")
    return _reduce_scatter(comm, name, output, out, np.stack(parts), op, async_op)


def reduce_scatter_tensor(output: Tensor, input: Tensor, op=ReduceOp.SUM, group=None,  # noqa: A002
                          async_op: bool = False):
    """Reduce ``input`` (world_size chunks along dim 0) and keep chunk ``rank`` in ``output``."""
    name = "reduce_scatter_tensor"
    comm, out, inp = _comm(name), _array(output, name, "output"), _array(input, name, "input")
    if inp.dtype != out.dtype or inp.size != comm.Get_size() * out.size:
        raise ValueError(f"{name}: input {inp.shape} {inp.dtype} must hold {comm.Get_size()} x "
                         f"output {out.shape} {out.dtype}")
    return _reduce_scatter(comm, name, output, out, inp, op, async_op)


def _reduce_scatter(comm, name, output, out, stacked, op, async_op):
    red, mop = _mpi_op(op, name)
    _agree(comm, name, out.shape, out.dtype, list(ReduceOp).index(red) + 1)
    buf, back = _writable(output, out)
    if buf.size:
        comm.Reduce_scatter_block(np.ascontiguousarray(stacked), buf, op=mop)
        if red is ReduceOp.AVG:
            _avg(buf, comm.Get_size(), name)
        if back is not None:
            back()
    return _Done() if async_op else None


# ---- picklable Python objects (small metadata: metrics, paths, flags) ------------------
def all_gather_object(object_list: list, obj, group=None) -> None:
    """Fill ``object_list`` (length world_size) with every rank's picklable ``obj``.

    Like torch's, it pickles: use it only between the job's own ranks, for small objects.
    """
    comm = _comm("all_gather_object")
    n = comm.Get_size()
    if len(object_list) != n:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} entries for a "
                         f"world of size {n}")
    object_list[:] = comm.allgather(obj)


def broadcast_object_list(object_list: list, src: int = 0, group=None) -> None:
    """Replace ``object_list``'s entries on every rank with rank ``src``'s (pickled)."""
    comm = _comm("broadcast_object_list")
    if not 0 <= src < comm.Get_size():
        raise ValueError(f"broadcast_object_list: src={src} is not a rank of a world of size "
                         f"{comm.Get_size()}")
    got = comm.bcast(list(object_list), root=src)
    if len(got) != len(object_list):
        raise ValueError(f"broadcast_object_list: rank {src} sent {len(got)} objects, this rank "
                         f"expected {len(object_list)}")
    object_list[:] = got
