"""Checkpoints: ``kiln.save(obj, path)`` / ``kiln.load(path)`` on safetensors files.

Nothing is ever pickled or unpickled. A checkpoint is a plain safetensors file:

* the tensors go into the safetensors payload. A flat ``{name: tensor}`` dict (a
  ``state_dict``) is written under exactly its own names, so the file loads with
  ``safetensors.torch.load_file`` into the same-shaped PyTorch model, and a file
  written by ``safetensors.torch.save_file(model.state_dict())`` loads into kiln
  (``model.load_state_dict(kiln.load(path))``). Nested objects get names joined
  from their path (``model/fc.weight``, ``optimizer/state/0/exp_avg``).
* the structure -- nested dicts (any int/str/float/bool/None keys), lists, tuples,
  ints (any size, e.g. a NumPy bit-generator state), floats (nan/inf too),
  strings, bools and None, with a placeholder for each tensor -- is JSON in the
  header metadata under ``__kiln__``, so ``kiln.load`` rebuilds the same object.

kiln Tensors come back as kiln Tensors (not requiring grad), NumPy arrays as NumPy
arrays (so uint8 / int32 data round-trips exactly even though kiln tensors hold
float32 / float64 / int64 / bool). A foreign safetensors file (no ``__kiln__``) loads
as ``{name: Tensor}`` in file order; its int32/uint8 tensors widen to int64.

Writes are atomic: the file is written to a temporary file in the same folder,
flushed to disk, then renamed over ``path`` (``os.replace``), so a crash during a
save leaves the previous checkpoint intact. A truncated, malformed or
non-safetensors file raises ``CheckpointError`` (a ``ValueError``) naming the file.

Example:
    >>> import kiln, tempfile, os
    >>> from kiln import nn
    >>> model = nn.Linear(3, 2)
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> kiln.save({"model": model.state_dict(), "step": 10}, path)
    >>> ckpt = kiln.load(path)
    >>> ckpt["step"], sorted(ckpt["model"])
    (10, ['bias', 'weight'])
    >>> model.load_state_dict(ckpt["model"])
    <All keys matched successfully>
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections import OrderedDict

import numpy as np

from kiln.tensor import Tensor

__all__ = ["save", "load", "CheckpointError"]

_META_KEY = "__kiln__"
_FORMAT_VERSION = 1
_M = "__kiln_"  # prefix of the structure's marker keys
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class CheckpointError(ValueError):
    """A checkpoint file that is not a valid kiln / safetensors checkpoint."""


# ---- encoding the structure -------------------------------------------------------------
class _Encoder:
    def __init__(self, flat_names: bool) -> None:
        self.flat_names = flat_names
        self.tensors: dict[str, np.ndarray] = {}

    def _name(self, path: tuple) -> str:
        base = str(path[-1]) if self.flat_names else "/".join(str(p) for p in path) or "tensor"
        name, i = base, 1
        while name in self.tensors:
            name, i = f"{base}#{i}", i + 1
        return name

    def _array(self, arr: np.ndarray, path: tuple, kind: str):
        if arr.dtype.kind not in "biuf" or arr.dtype.byteorder == ">":
            raise TypeError(f"save: array at {_where(path)} has unsupported dtype {arr.dtype}")
        name = self._name(path)
        # (np.ascontiguousarray would turn a 0-d array into 1-d)
        self.tensors[name] = arr if arr.flags.c_contiguous else arr.copy(order="C")
        return {_M + kind + "__": name}

    def encode(self, obj, path: tuple = ()):
        if isinstance(obj, Tensor):
            from kiln.device import to_host

            return self._array(to_host(obj.data), path, "tensor")
        if isinstance(obj, np.ndarray):
            return self._array(obj, path, "ndarray")
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {_M + "float__": repr(obj)}
        if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
            return self.encode(obj.item(), path)
        if isinstance(obj, list):
            return [self.encode(v, path + (i,)) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {_M + "tuple__": [self.encode(v, path + (i,)) for i, v in enumerate(obj)]}
        if isinstance(obj, dict):
            for k in obj:
                if not (k is None or isinstance(k, (bool, int, float, str))):
                    raise TypeError(f"save: dict key {k!r} at {_where(path)} is not a str, int, "
                                    "float, bool or None")
            plain = type(obj) is dict and all(
                isinstance(k, str) and not k.startswith(_M) for k in obj)
            if plain:
                return {k: self.encode(v, path + (k,)) for k, v in obj.items()}
            items = [[self.encode(k, path), self.encode(v, path + (k,))] for k, v in obj.items()]
            return {_M + ("odict__" if isinstance(obj, OrderedDict) else "dict__"): items}
        raise TypeError(f"save: cannot save an object of type {type(obj).__name__} at "
                        f"{_where(path)}; checkpoints hold tensors, arrays, dicts, lists, tuples, "
                        "ints, floats, strings, bools and None")


def _where(path: tuple) -> str:
    return "/".join(str(p) for p in path) if path else "the top level"


def _is_flat_state_dict(obj) -> bool:
    return isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, (Tensor, np.ndarray)) for k, v in obj.items())


# ---- save -------------------------------------------------------------------------------
def save(obj, f) -> None:
    """Write ``obj`` (a state_dict, or nested training state with tensors inside) to the
    safetensors file ``f`` (a path, or a binary file object), atomically for paths.

    >>> import kiln, io
    >>> buf = io.BytesIO()
    >>> kiln.save({"w": kiln.ones(2), "epoch": 3}, buf)
    >>> kiln.load(io.BytesIO(buf.getvalue()))
    {'w': tensor([1., 1.]), 'epoch': 3}
    """
    from safetensors.numpy import save as st_save
    from safetensors.numpy import save_file

    enc = _Encoder(flat_names=_is_flat_state_dict(obj))
    tree = enc.encode(obj)
    meta = {_META_KEY: json.dumps({"version": _FORMAT_VERSION, "tree": tree},
                                  separators=(",", ":"))}
    if hasattr(f, "write"):
        f.write(st_save(enc.tensors, metadata=meta))
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    os.close(fd)
    try:
        save_file(enc.tensors, tmp, metadata=meta)
        with open(tmp, "rb+") as fh:  # on disk before the rename makes it the checkpoint
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- load -------------------------------------------------------------------------------
def _read_header(data_len: int, head: bytes, name: str) -> tuple[dict, int]:
    """Validate the safetensors layout: u64 header size, JSON header, every tensor's
    byte range inside the file and the payload exactly covered."""
    if len(head) < 8:
        raise CheckpointError(f"{name}: not a safetensors checkpoint (file is {data_len} bytes, "
                              "shorter than the 8-byte header size)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > _MAX_HEADER or 8 + n > data_len:
        raise CheckpointError(f"{name}: not a safetensors checkpoint or truncated (header claims "
                              f"{n} bytes, file is {data_len} bytes)")
    try:
        header = json.loads(head[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{name}: not a safetensors checkpoint (header is not JSON: "
                              f"{exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: malformed safetensors header (not a JSON object)")
    payload = data_len - 8 - n
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            lo, hi = (int(v) for v in info["data_offsets"])
            shape = [int(s) for s in info["shape"]]
            str(info["dtype"])
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{name}: malformed safetensors header entry for tensor "
                                  f"{key!r}") from None
        if not 0 <= lo <= hi or min(shape, default=0) < 0:
            raise CheckpointError(f"{name}: malformed safetensors header entry for tensor "
                                  f"{key!r}")
        if hi > payload:
            raise CheckpointError(f"{name}: truncated checkpoint: tensor {key!r} needs bytes "
                                  f"{lo}..{hi} of a {payload}-byte payload")
        end = max(end, hi)
    if end != payload:
        raise CheckpointError(f"{name}: malformed or truncated checkpoint: tensors cover {end} "
                              f"of {payload} payload bytes")
    return header, n


def _decode(node, arrays: dict, name: str):
    if isinstance(node, list):
        return [_decode(v, arrays, name) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (k, v), = node.items()
        if k.startswith(_M):
            kind = k[len(_M):-2]
            if kind in ("tensor", "ndarray"):
                if v not in arrays:
                    raise CheckpointError(f"{name}: checkpoint structure names tensor {v!r}, "
                                          "which the file does not hold")
                arr = _writable(arrays[v])
                return Tensor(arr) if kind == "tensor" else arr
            if kind == "float":
                return float(v)
            if kind == "tuple":
                return tuple(_decode(x, arrays, name) for x in v)
            if kind in ("dict", "odict"):
                pairs = ((_decode(a, arrays, name), _decode(b, arrays, name)) for a, b in v)
                return OrderedDict(pairs) if kind == "odict" else dict(pairs)
            raise CheckpointError(f"{name}: unknown entry {k!r} in the checkpoint structure")
    return {k: _decode(v, arrays, name) for k, v in node.items()}


def _writable(arr: np.ndarray) -> np.ndarray:
    """Loaded tensors are updated in place later (optimizer state): never read-only."""
    return arr if arr.flags.writeable and arr.flags.c_contiguous else np.array(arr)


def _map(obj, map_location):
    if map_location is None or map_location == "cpu":
        return obj
    if callable(map_location):
        return _walk(obj, map_location)
    if isinstance(map_location, str):
        return _walk(obj, lambda t: t.to(map_location))
    raise TypeError(f"load: map_location must be None, a device string or a callable, got "
                    f"{type(map_location).__name__}")


def _walk(obj, fn):
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, list):
        return [_walk(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_walk(v, fn) for v in obj)
    if isinstance(obj, dict):
        return type(obj)((k, _walk(v, fn)) for k, v in obj.items())
    return obj


def load(f, map_location=None):
    """Read a checkpoint written by :func:`save` (or any safetensors file) back.

    ``map_location``: None or "cpu" keeps tensors on the CPU; another device string
    moves every tensor there; a callable is applied to every tensor.

    >>> import kiln, io
    >>> buf = io.BytesIO()
    >>> kiln.save({"a": [kiln.tensor(1.5), (1, None)]}, buf)
    >>> kiln.load(io.BytesIO(buf.getvalue()))
    {'a': [tensor(1.5000), (1, None)]}
    """
    from safetensors.numpy import load as st_load

    if hasattr(f, "read"):
        data = f.read()
        name = repr(getattr(f, "name", "<file object>"))
        header, _ = _read_header(len(data), data[:8 + _MAX_HEADER], name)
        loader = lambda: st_load(data)  # noqa: E731
    else:
        path = os.fspath(f)
        name = repr(path)
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                head += fh.read(min(n, _MAX_HEADER))
        header, _ = _read_header(size, head, name)

        def loader():
            from safetensors.numpy import load_file

            return load_file(path)
    try:
        arrays = loader()
    except Exception as exc:  # safetensors' own checks (dtype names, sizes...)
        raise CheckpointError(f"{name}: not a valid safetensors checkpoint: {exc}") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or _META_KEY not in meta:
        obj = OrderedDict((k, Tensor(_writable(arrays[k]))) for k in header
                          if k != "__metadata__")
        return _map(obj, map_location)
    try:
        doc = json.loads(meta[_META_KEY])
        tree = doc["tree"]
        version = doc["version"]
    except (TypeError, KeyError, ValueError):
        raise CheckpointError(f"{name}: malformed kiln structure in the checkpoint's "
                              "metadata") from None
    if version != _FORMAT_VERSION:
        raise CheckpointError(f"{name}: checkpoint format version {version!r}; this kiln reads "
                              f"version {_FORMAT_VERSION}")
    try:
        obj = _decode(tree, arrays, name)
    except CheckpointError:
        raise
    except (TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{name}: malformed kiln structure in the checkpoint's "
                              "metadata") from None
    return _map(obj, map_location)
