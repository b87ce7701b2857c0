"""kiln.train.fit: learning, early stopping with best-weights restore, bit-exact resume,
history and its plot."""

import numpy as np
import pytest

import kiln
from kiln import nn
from kiln.data import DataLoader, TensorDataset
from kiln.data import transforms as T
from kiln.train import Callback, EarlyStopping, History, evaluate, fit


def _data(n=96, seed=0):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _model():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def test_fit_learns_and_logs():
    kiln.manual_seed(0)
    x, y = _data()
    ds = TensorDataset(x, y)
    model = _model()
    opt = kiln.optim.SGD(model.parameters(), lr=0.3)
    h = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(ds, 16, shuffle=True),
            DataLoader(ds, 32), epochs=6, progress=False,
            metrics={"err": lambda t, o: float((o.argmax(1) != t).mean())})
    assert h.epoch == [1, 2, 3, 4, 5, 6]
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.9
    assert h["val_err"][-1] == pytest.approx(1 - h["val_accuracy"][-1])
    ev = evaluate(model, nn.CrossEntropyLoss(), DataLoader(ds, 32))
    assert ev["accuracy"] == pytest.approx(h["val_accuracy"][-1])
    assert ev["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-5)
    assert model.training  # evaluate restored the mode


class _Scripted(Callback):
    """Overrides val_loss with a scripted sequence to drive EarlyStopping exactly."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, trainer, epoch, logs):
        logs["val_loss"] = self.values[epoch - 1]


def test_early_stopping_patience_and_best_weights_restore():
    kiln.manual_seed(0)
    x, y = _data()
    model = _model()
    snapshots = {}

    class Snap(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots[epoch] = {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}

    es = EarlyStopping(monitor="val_loss", patience=2)
    h = fit(model, nn.CrossEntropyLoss(), kiln.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(TensorDataset(x, y), 32), epochs=20, progress=False,
            callbacks=[_Scripted([5.0, 3.0, 2.0, 2.5, 2.1, 1.0, 0.5]), Snap(), es])
    # best 2.0 at epoch 3, no improvement at 4 and 5 -> stop after epoch 5
    assert h.epoch == [1, 2, 3, 4, 5]
    assert es.best == 2.0 and es.best_epoch == 3 and es.stopped_epoch == 5
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), snapshots[3][k])
    assert not np.array_equal(snapshots[3]["0.weight"], snapshots[5]["0.weight"])
    # min_delta and mode="max"
    es2 = EarlyStopping(monitor="acc", mode="max", patience=1, min_delta=0.1,
                        restore_best_weights=False)

    class Acc(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["acc"] = [0.5, 0.55, 0.7][epoch - 1]

    h = fit(model, nn.CrossEntropyLoss(), kiln.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(TensorDataset(x, y), 32), epochs=5, progress=False, callbacks=[Acc(), es2])
    assert h.epoch == [1, 2] and es2.best == 0.5  # 0.55 is not 0.1 better
    with pytest.raises(KeyError, match="val_accuracy"):
        fit(model, nn.CrossEntropyLoss(), kiln.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(TensorDataset(x, y), 32), epochs=1, progress=False,
            callbacks=[EarlyStopping(monitor="val_accuracy")])


def _run(tmp_path, epochs, resume, ckpt_name="ck.safetensors", loader_gen=None, stop_at=None):
    kiln.manual_seed(7)
    x, y = _data(80, seed=1)
    xi = x.reshape(80, 1, 2, 3)
    ds = kiln.data.ArrayDataset(xi, y, transform=T.Compose([T.GaussianNoise(0.05)]))
    model = nn.Sequential(nn.Flatten(), _model())
    opt = kiln.optim.Adam(model.parameters(), lr=0.01)
    sched = kiln.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    es = EarlyStopping(monitor="val_loss", patience=100)
    h = fit(model, nn.CrossEntropyLoss(), opt,
            DataLoader(ds, 16, shuffle=True, generator=loader_gen),
            DataLoader(TensorDataset(x.reshape(80, 1, 2, 3), y), 40), epochs=epochs,
            scheduler=sched, callbacks=[es], checkpoint=str(tmp_path / ckpt_name),
            resume=resume, progress=False)
    return model, h, opt


@pytest.mark.parametrize("loader_gen", [None, 5])
def test_resume_is_bit_exact(tmp_path, loader_gen):
    full, hf, _ = _run(tmp_path / "a", 5, False, loader_gen=loader_gen)
    _run(tmp_path / "b", 2, False, loader_gen=loader_gen)  # "interrupted" after epoch 2
    resumed, hr, opt = _run(tmp_path / "b", 5, True, loader_gen=loader_gen)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    assert hr.epoch == [1, 2, 3, 4, 5]
    assert hr["train_loss"] == hf["train_loss"] and hr["val_loss"] == hf["val_loss"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.25)
    # resuming a finished run trains no further
    again, h2, _ = _run(tmp_path / "b", 5, True, loader_gen=loader_gen)
    assert h2.epoch == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(again.state_dict()["1.0.weight"].numpy(),
                                  full.state_dict()["1.0.weight"].numpy())


def test_history_plot_and_best(tmp_path):
    h = History()
    for e, (tl, vl, va) in enumerate([(1.0, 1.1, 0.5), (0.6, 0.7, 0.8), (0.4, 0.8, 0.7)], 1):
        h.append({"epoch": e, "train_loss": tl, "val_loss": vl, "val_accuracy": va})
    assert h.best("val_loss") == (2, 0.7) and h.best("val_accuracy") == (2, 0.8)
    pytest.importorskip("matplotlib")
    path = h.plot(tmp_path / "curves.png")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_fit_rejects_bad_batches_and_diverging_loss():
    model = nn.Linear(2, 1)
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"tuple \(\*inputs, target\)"):
        fit(model, nn.MSELoss(), opt, [kiln.zeros(3, 2)], epochs=1, progress=False)
    x = kiln.tensor([[1e30, 1e30]])
    with pytest.raises(FloatingPointError, match="loss became"), np.errstate(over="ignore"):
        fit(model, nn.MSELoss(), kiln.optim.SGD(model.parameters(), lr=1e10),
            [(x, kiln.zeros(1, 1))] * 3, epochs=2, progress=False)
