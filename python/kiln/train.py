"""``kiln.train.fit``: the training loop -- progress bar, validation metrics, early
stopping, per-epoch checkpoints that resume bit-exactly, and a ``History`` of the curves.

One epoch: ``model.train()``; for each batch ``(*inputs, target)`` from ``train_loader``:
``loss = loss_fn(model(*inputs), target)``, ``optimizer.zero_grad()``, ``loss.backward()``,
optional gradient clipping, ``optimizer.step()`` (and ``scheduler.step()`` when
``scheduler_interval="step"``). Then validation under ``model.eval()`` and ``no_grad``
(mean loss over samples, plus accuracy when the target holds class indices), the epoch's
scheduler step (``ReduceLROnPlateau`` gets the monitored value), the callbacks, and the
checkpoint.

Distributed. Under ``mpirun`` with ``kiln.distributed`` initialised and more than one
rank (the model typically wrapped in ``kiln.nn.parallel.DistributedDataParallel``, the
train loader given a ``kiln.data.DistributedSampler``): every rank runs the loop on its
shard; the sampler's ``set_epoch(epoch)`` is called each epoch; the loss sums, correct
counts and sample counts of training (and of validation, when the val loader is sharded
with a ``DistributedSampler``; unsharded, every rank evaluates all of it) are summed over
ranks (the epoch time is the slowest rank's), so every rank gets the same logs, the same
``History`` and the same early-stopping and ``ReduceLROnPlateau`` decisions; only rank 0
shows progress bars and writes the checkpoint, which holds the wrapped module's state
(``ddp.module``) and loads into a plain model. Callbacks run on every rank (``trainer.rank``
tells them which one they are on). Resuming needs the checkpoint visible to every rank.

Resume. The checkpoint (``kiln.save``, safetensors) holds the model, optimizer, scheduler,
history and callback states, the epoch, kiln's global RNG state and the train loader's
generator state -- everything the next epoch's random draws (shuffle order, transforms,
dropout masks) depend on -- so ``fit(..., checkpoint=p, resume=True)`` after an
interruption continues with exactly the parameters an uninterrupted run would have.

Example:
    >>> import kiln
    >>> from kiln import nn
    >>> from kiln.data import DataLoader, TensorDataset
    >>> from kiln.train import fit
    >>> _ = kiln.manual_seed(0)
    >>> x = kiln.randn(64, 4); y = (x[:, 0] > 0).long()
    >>> model = nn.Linear(4, 2)
    >>> opt = kiln.optim.SGD(model.parameters(), lr=0.5)
    >>> loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=0)
    >>> hist = fit(model, nn.CrossEntropyLoss(), opt, loader, loader, epochs=5, progress=False)
    >>> len(hist["train_loss"]), hist["val_accuracy"][-1] > 0.9
    (5, True)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np

import kiln
from kiln._fit_dist import World, unwrap
from kiln.tensor import Tensor

__all__ = ["fit", "evaluate", "History", "Callback", "EarlyStopping"]


# ---- history ------------------------------------------------------------------------------------
class History:
    """Per-epoch values: ``history["val_loss"]`` is a list with one entry per epoch
    (``history.history`` is the dict, ``history.epoch`` the epoch numbers)."""

    def __init__(self, history: Mapping[str, list] | None = None) -> None:
        self.history: dict[str, list] = {k: list(v) for k, v in (history or {}).items()}

    @property
    def epoch(self) -> list[int]:
        return self.history.get("epoch", [])

    def append(self, logs: Mapping[str, float]) -> None:
        n = len(self.epoch)
        for k, v in logs.items():
            col = self.history.setdefault(k, [math.nan] * n if k != "epoch" else [])
            col.append(v)
        for col in self.history.values():  # keys missing this epoch
            if len(col) < n + 1:
                col.append(math.nan)

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def keys(self):
        return self.history.keys()

    def best(self, key: str, mode: str = "auto") -> tuple[int, float]:
        """``(epoch, value)`` of the best ``key`` (min for losses, else max)."""
        vals = np.asarray(self.history[key], np.float64)
        mode = _mode(key, mode)
        i = int(np.nanargmin(vals) if mode == "min" else np.nanargmax(vals))
        return self.epoch[i], float(vals[i])

    def plot(self, path: str | os.PathLike) -> str:
        """Write a PNG of the curves: losses in one panel, each other metric in its own.
        Needs matplotlib (``pip install "kiln[plot]"``)."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install \"kiln[plot]\"") \
                from exc
        ep = self.epoch
        skip = {"epoch", "time", "lr", "samples_per_s"}
        losses = [k for k in self.history if k.endswith("loss")]
        others = sorted({k.removeprefix("train_").removeprefix("val_")
                         for k in self.history if k not in skip and k not in losses})
        panels = [("loss", losses)] + [(m, [k for k in (f"train_{m}", f"val_{m}", m)
                                            if k in self.history]) for m in others]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        for ax, (title, keys) in zip(axes[0], panels):
            for k in keys:
                ax.plot(ep, self.history[k], marker="o", ms=3, label=k)
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return str(path)

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


def _mode(monitor: str, mode: str) -> str:
    if mode == "auto":
        return "min" if "loss" in monitor or "error" in monitor else "max"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


# ---- callbacks ----------------------------------------------------------------------------------
class Callback:
    """Hooks called by :func:`fit`: ``on_train_begin(trainer)``,
    ``on_epoch_end(trainer, epoch, logs)``, ``on_train_end(trainer)``. Set
    ``trainer.stop_training = True`` to stop. ``state_dict`` / ``load_state_dict`` make
    the callback's state part of the checkpoint."""

    def on_train_begin(self, trainer) -> None: ...

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None: ...

    def on_train_end(self, trainer) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def _copy_state(model) -> dict:
    return {k: np.array(v.numpy(force=True), copy=True) for k, v in model.state_dict().items()}


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best_weights`` the model ends with the best epoch's weights."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True) -> None:
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(min_delta)
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if _mode(self.monitor, self.mode) == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitored value {self.monitor!r} is not among the "
                           f"epoch's logs {sorted(logs)} (a val_ metric needs val_loader)")
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = _copy_state(unwrap(trainer.model))
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            unwrap(trainer.model).load_state_dict(
                {k: kiln.from_numpy(v) for k, v in self.best_weights.items()})

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        bw = state.get("best_weights")
        self.best_weights = None if bw is None else {
            k: (v.numpy() if isinstance(v, Tensor) else np.asarray(v)) for k, v in bw.items()}


# ---- the loop -----------------------------------------------------------------------------------
class _Trainer:
    def __init__(self, model, world: World | None = None) -> None:
        self.model = model
        self.stop_training = False
        world = world or World()
        self.rank, self.world_size = world.rank, world.size


def _to(x, device):
    if device is None:
        return x
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def _split(batch):
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return tuple(batch[:-1]), batch[-1]
    raise TypeError("fit: each batch must be a tuple (*inputs, target); got "
                    f"{type(batch).__name__}")


def _n(t) -> int:
    return int(t.shape[0]) if isinstance(t, Tensor) and t.dim() else 1


def _correct(out: Tensor, target: Tensor) -> int | None:
    """Correct argmax predictions when ``target`` holds class indices, else None."""
    if not isinstance(out, Tensor) or not isinstance(target, Tensor):
        return None
    if target.dtype != kiln.int64 or out.dim() != target.dim() + 1:
        return None
    o, t = out.detach().numpy(), target.numpy()
    if o.shape[:1] + o.shape[2:] == t.shape:
        pred = o.argmax(axis=1)
    elif o.shape[:-1] == t.shape:
        pred = o.argmax(axis=-1)
    else:
        return None
    return int((pred == t).sum())


def evaluate(model, loss_fn: Callable | None, loader: Iterable, device=None,
             metrics: Mapping[str, Callable] | None = None) -> dict:
    """Mean loss over samples (``loss``), ``accuracy`` for class-index targets, and each
    ``metrics`` entry ``fn(y_true, outputs)`` on the concatenated NumPy outputs.
    Runs under ``model.eval()`` and ``no_grad``; restores the model's mode. When the
    loader is sharded over the ranks of ``kiln.distributed`` (its sampler is a
    ``DistributedSampler`` with ``num_replicas > 1``) the sums and counts, and the
    ``metrics`` inputs, are combined over ranks -- a collective: every rank must call
    it -- so every rank returns the whole data set's figures; an unsharded loader is
    evaluated by this rank alone (so ``if rank == 0: evaluate(...)`` works)."""
    was_training = getattr(model, "training", False)
    model.eval()
    total, n, correct, counted = 0.0, 0, 0, 0
    outs, targets = [], []
    try:
        with kiln.no_grad():
            for batch in loader:
                inputs, target = _split(_to(batch, device))
                out = model(*inputs)
                b = _n(target)
                if loss_fn is not None:
                    total += float(loss_fn(out, target).item()) * b
                n += b
                c = _correct(out, target)
                if c is not None:
                    correct, counted = correct + c, counted + target.numel()
                if metrics:
                    outs.append(out.numpy())
                    targets.append(target.numpy())
    finally:
        model.train(was_training)
    world = World()
    if world.active and getattr(getattr(loader, "sampler", None), "num_replicas", 1) > 1:
        total, n, correct, counted = world.sum([total, n, correct, counted])
        if metrics:
            parts = world.all_gather_object((outs, targets))
            outs = [o for p, _ in parts for o in p]
            targets = [t for _, p in parts for t in p]
    logs = {}
    if loss_fn is not None and n:
        logs["loss"] = total / n
    if counted:
        logs["accuracy"] = correct / counted
    for name, fn in (metrics or {}).items():
        logs[name] = float(fn(np.concatenate(targets), np.concatenate(outs)))
    return logs


def _save_checkpoint(path, model, optimizer, scheduler, history, callbacks, epoch, loader,
                     ranks=None):
    gen = getattr(loader, "generator", None)
    ckpt = {"epoch": epoch, "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history.history, "rng": kiln.get_rng_state(),
            "loader_rng": gen.bit_generator.state if gen is not None else None,
            "callbacks": [cb.state_dict() for cb in callbacks]}
    if ranks is not None:  # every rank's (kiln RNG, loader RNG) states, in rank order
        ckpt["rank_rng"] = [r for r, _ in ranks]
        ckpt["rank_loader_rng"] = [g for _, g in ranks]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    kiln.save(ckpt, path)


def _load_checkpoint(path, model, optimizer, scheduler, callbacks, loader,
                     world: World) -> tuple[int, dict]:
    ckpt = kiln.load(path)
    unwrap(model).load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    rng, loader_rng = ckpt["rng"], ckpt.get("loader_rng")
    if len(ckpt.get("rank_rng") or []) == world.size:  # saved by a job of the same size
        rng, loader_rng = ckpt["rank_rng"][world.rank], ckpt["rank_loader_rng"][world.rank]
    kiln.set_rng_state(rng)
    gen = getattr(loader, "generator", None)
    if gen is not None and loader_rng is not None:
        gen.bit_generator.state = loader_rng
    saved = ckpt.get("callbacks") or []
    if len(saved) != len(callbacks):
        raise ValueError(f"fit: checkpoint {path} has {len(saved)} callback states but fit "
                         f"got {len(callbacks)} callbacks")
    for cb, st in zip(callbacks, saved):
        cb.load_state_dict(st)
    return int(ckpt["epoch"]), ckpt["history"]


def fit(model, loss_fn: Callable, optimizer, train_loader: Iterable, val_loader=None,
        epochs: int = 10, scheduler=None, callbacks: Iterable[Callback] = (), device=None, *,
        metrics: Mapping[str, Callable] | None = None, checkpoint: str | None = None,
        resume: bool = False, progress: bool = True, clip_grad_norm: float | None = None,
        scheduler_interval: str = "epoch", monitor: str = "val_loss") -> History:
    """Train ``model`` for ``epochs`` epochs and return its :class:`History`.

    Logs per epoch: ``train_loss`` (mean over samples), ``train_accuracy`` (class-index
    targets), ``val_loss`` / ``val_accuracy`` / ``val_<metric>`` with ``val_loader``
    (``metrics``: name -> ``fn(y_true, outputs)`` on NumPy arrays), ``lr``, ``time`` (s)
    and ``samples_per_s``. ``checkpoint``: a path written after every epoch;
    ``resume=True`` continues from it when it exists (bit-exactly; see the module
    docstring). ``monitor`` is what ``ReduceLROnPlateau`` steps on. ``progress``: a tqdm
    bar per epoch with the running loss and throughput.
    """
    from tqdm.auto import tqdm

    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got "
                         f"{scheduler_interval!r}")
    if int(epochs) != epochs or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs}")
    callbacks = list(callbacks)
    if device is not None:
        model.to(device)
    world = World()
    trainer = _Trainer(model, world)
    history = History()
    start = 0
    found = bool(resume and checkpoint and os.path.exists(checkpoint))
    if resume and checkpoint and world.active:
        seen = int(world.sum([float(found)])[0])
        if 0 < seen < world.size:  # the same verdict on every rank: no rank waits forever
            raise RuntimeError(f"fit: resume checkpoint {checkpoint} exists on {seen} of "
                               f"{world.size} ranks; every rank must see it (a shared "
                               "filesystem, or a copy at the same path on each host)")
    if found:
        last, hist = _load_checkpoint(checkpoint, model, optimizer, scheduler, callbacks,
                                      train_loader, world)
        history, start = History(hist), last + 1
        trainer.stop_training = any(getattr(cb, "stopped_epoch", None) is not None
                                    for cb in callbacks)
    plateau = type(scheduler).__name__ == "ReduceLROnPlateau"
    for cb in callbacks:
        cb.on_train_begin(trainer)
    sampler = getattr(train_loader, "sampler", None)
    show = progress and world.main
    for epoch in range(start, int(epochs)):
        if trainer.stop_training:
            break
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: this epoch's shuffle
            sampler.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        total, n, correct, counted = 0.0, 0, 0, 0
        bar = tqdm(total=len(train_loader) if hasattr(train_loader, "__len__") else None,
                   desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not show,
                   leave=True, dynamic_ncols=True)
        for batch in train_loader:
            inputs, target = _split(_to(batch, device))
            out = model(*inputs)
            loss = loss_fn(out, target)
            optimizer.zero_grad()
            loss.backward()
            if clip_grad_norm is not None:
                kiln.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            if scheduler is not None and scheduler_interval == "step" and not plateau:
                scheduler.step()
            b = _n(target)
            lv = float(loss.item())
            if not math.isfinite(lv):
                bar.close()
                raise FloatingPointError(f"fit: loss became {lv} in epoch {epoch + 1}; lower "
                                         "the learning rate or check the data")
            total, n = total + lv * b, n + b
            c = _correct(out, target)
            if c is not None:
                correct, counted = correct + c, counted + target.numel()
            bar.update(1)
            if show:
                dt = time.perf_counter() - t0
                bar.set_postfix(loss=f"{total / n:.4f}", samples_s=f"{n / max(dt, 1e-9):.0f}",
                                refresh=False)
        dt = time.perf_counter() - t0
        if world.active:  # the whole job's figures, identical on every rank
            total, n, correct, counted = world.sum([total, n, correct, counted])
            dt = world.max(dt)
        logs = {"epoch": epoch + 1, "train_loss": total / max(n, 1)}
        if counted:
            logs["train_accuracy"] = correct / counted
        if val_loader is not None:
            for k, v in evaluate(model, loss_fn, val_loader, device, metrics).items():
                logs[f"val_{k}"] = v
        logs["lr"] = float(optimizer.param_groups[0]["lr"])
        logs["time"] = dt
        logs["samples_per_s"] = n / max(dt, 1e-9)
        if show:
            bar.set_postfix({k.replace("train_", ""): f"{v:.4f}" for k, v in logs.items()
                             if k.startswith(("train_", "val_"))}, refresh=True)
        bar.close()
        if scheduler is not None and (scheduler_interval == "epoch" or plateau):
            if plateau:
                if monitor not in logs:
                    raise KeyError(f"fit: ReduceLROnPlateau monitors {monitor!r}, which is not "
                                   f"among the logs {sorted(logs)}")
                scheduler.step(logs[monitor])
            else:
                scheduler.step()
        history.append(logs)
        for cb in callbacks:
            cb.on_epoch_end(trainer, epoch + 1, logs)
        if checkpoint:
            ranks = None
            if world.active:
                gen = getattr(train_loader, "generator", None)
                ranks = world.all_gather_object(
                    (kiln.get_rng_state(), gen.bit_generator.state if gen is not None else None))
            if world.main:
                _save_checkpoint(checkpoint, model, optimizer, scheduler, history, callbacks,
                                 epoch, train_loader, ranks)
    for cb in callbacks:
        cb.on_train_end(trainer)
    return history
