"""Checkpoints (kiln.save / kiln.load on safetensors): round trips of every dtype, 0-d
and empty tensors, nested training state with the RNG (bit-exact resume), kiln <->
PyTorch weight exchange through safetensors files in both directions, strict and
non-strict load_state_dict, corrupted files, atomic writes, and a transfer-learning
run (PyTorch body frozen in kiln, head fine-tuned)."""

import io
import json
import os
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import kiln
from kiln import nn
from kiln.io import CheckpointError

from helpers import assert_close


def _mlp(m):
    return m.Sequential(m.Linear(4, 16), m.ReLU(), m.Linear(16, 16), m.ReLU(), m.Linear(16, 3))


# ---- round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [kiln.float32, kiln.float64, kiln.int64, kiln.bool])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_tensor_round_trip(tmp_path, dtype, shape):
    arr = np.asarray(np.random.default_rng(0).standard_normal(shape) * 100).astype(dtype.np)
    path = tmp_path / "t.safetensors"
    kiln.save({"x": kiln.from_numpy(arr)}, path)
    out = kiln.load(path)["x"]
    assert isinstance(out, kiln.Tensor) and out.dtype == dtype and out.shape == shape
    assert np.array_equal(out.data, arr)
    assert not out.requires_grad
    out.data[...] = 0  # loaded tensors are writable (optimizer state is updated in place)


@pytest.mark.parametrize("np_dtype", [np.uint8, np.int32, np.int64, np.float32, np.float64,
                                      np.bool_])
def test_numpy_array_round_trip_keeps_dtype(np_dtype):
    arr = np.arange(-3, 9).reshape(3, 4).astype(np_dtype)
    buf = io.BytesIO()
    kiln.save({"a": arr, "z": np.zeros((), np_dtype)}, buf)
    out = kiln.load(io.BytesIO(buf.getvalue()))
    assert type(out["a"]) is np.ndarray and out["a"].dtype == np_dtype
    assert np.array_equal(out["a"], arr) and out["z"].shape == ()


def test_non_contiguous_and_parameter_tensors():
    lin = nn.Linear(3, 5)
    buf = io.BytesIO()
    kiln.save({"wt": lin.weight.T, "p": lin.weight}, buf)
    out = kiln.load(io.BytesIO(buf.getvalue()))
    assert np.array_equal(out["wt"].data, lin.weight.data.T)
    assert not out["p"].requires_grad and not isinstance(out["p"], nn.Parameter)


def test_nested_structure_round_trip(tmp_path):
    obj = {
        "model": nn.Linear(2, 2).state_dict(),  # OrderedDict stays an OrderedDict
        "optimizer": {"state": {0: {"step": kiln.tensor(3.0), "exp_avg": kiln.ones(2, 2)},
                                1: {"momentum_buffer": None}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1],
                                        "amsgrad": False, "foreach": None, "name": "g0"}]},
        "scheduler": {"last_epoch": 7, "_last_lr": [0.0005], "base_lrs": [1e-3]},
        "step": 1234, "epoch": 3, "big": 2**100, "floats": [float("inf"), -float("inf")],
        "nan": float("nan"), "tricky": {"__kiln_tensor__": "not a tensor", 1.5: "float key",
                                        None: True, True: 0},
        "empty": {}, "list_of_tensors": [kiln.zeros(1), kiln.ones(1)],
    }
    path = tmp_path / "state.safetensors"
    kiln.save(obj, path)
    out = kiln.load(path)
    assert type(out["model"]) is OrderedDict and list(out["model"]) == ["weight", "bias"]
    assert np.array_equal(out["model"]["weight"].data, obj["model"]["weight"].data)
    opt = out["optimizer"]
    assert set(opt["state"]) == {0, 1} and opt["state"][1] == {"momentum_buffer": None}
    assert opt["state"][0]["step"].item() == 3.0 and opt["state"][0]["step"].shape == ()
    assert opt["param_groups"] == obj["optimizer"]["param_groups"]  # tuples stay tuples
    assert out["scheduler"] == obj["scheduler"]
    assert (out["step"], out["epoch"], out["big"]) == (1234, 3, 2**100)
    assert out["floats"] == [float("inf"), -float("inf")] and np.isnan(out["nan"])
    assert out["tricky"] == obj["tricky"] and out["empty"] == {}
    assert [t.item() for t in out["list_of_tensors"]] == [0.0, 1.0]
    # tensor names in the payload are readable paths
    names = set(np_load_file(path))
    assert {"model/weight", "optimizer/state/0/exp_avg", "list_of_tensors/1"} <= names


def test_state_dict_names_are_exact_and_load_with_torch(tmp_path):
    k = _mlp(nn)
    path = tmp_path / "m.safetensors"
    kiln.save(k.state_dict(), path)
    assert set(np_load_file(path)) == set(k.state_dict())  # exactly the state_dict's names
    loaded = torch_load_file(path)
    assert set(loaded) == set(_mlp(torch.nn).state_dict())


def test_unsupported_objects_are_refused():
    with pytest.raises(TypeError, match="cannot save an object of type set at a/0"):
        kiln.save({"a": [{1, 2}]}, io.BytesIO())
    with pytest.raises(TypeError, match="dict key"):
        kiln.save({(1, 2): 3}, io.BytesIO())
    with pytest.raises(TypeError, match="unsupported dtype"):
        kiln.save({"c": np.ones(2, np.complex64)}, io.BytesIO())


# ---- kiln <-> PyTorch --------------------------------------------------------------------
def _train_kiln(model, steps=5, lr=0.05, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = kiln.from_numpy(rng.standard_normal((8, 4)).astype(np.float32))
        y = kiln.from_numpy(rng.integers(0, 3, 8))
        model.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        with kiln.no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data


def test_kiln_trained_model_loads_into_torch(tmp_path):
    kiln.manual_seed(1)
    k = _mlp(nn)
    _train_kiln(k)
    path = tmp_path / "kiln.safetensors"
    kiln.save(k.state_dict(), path)
    t = _mlp(torch.nn)
    t.load_state_dict(torch_load_file(path))  # strict: every name matches
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    assert_close(k(kiln.from_numpy(x)), t(torch.from_numpy(x)))


def test_torch_model_loads_into_kiln(tmp_path):
    torch.manual_seed(0)
    t = _mlp(torch.nn)
    path = tmp_path / "torch.safetensors"
    torch_save_file(t.state_dict(), str(path))
    k = _mlp(nn)
    result = k.load_state_dict(kiln.load(path))
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = np.random.default_rng(6).standard_normal((6, 4)).astype(np.float32)
    assert_close(k(kiln.from_numpy(x)), t(torch.from_numpy(x)))


def test_strict_and_non_strict_load_state_dict(tmp_path):
    src = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16))  # no final layer
    path = tmp_path / "partial.safetensors"
    state = dict(src.state_dict())
    state["extra.weight"] = kiln.zeros(1)
    kiln.save(state, path)
    k = _mlp(nn)
    before = k[4].weight.data.copy()
    with pytest.raises(RuntimeError, match=r'(?s)Missing key\(s\) in state_dict: "4.weight", '
                                           r'"4.bias".*Unexpected key\(s\).*"extra.weight"'):
        k.load_state_dict(kiln.load(path))
    result = k.load_state_dict(kiln.load(path), strict=False)
    assert result.missing_keys == ["4.weight", "4.bias"]
    assert result.unexpected_keys == ["extra.weight"]
    assert np.array_equal(k[0].weight.data, src[0].weight.data)
    assert np.array_equal(k[4].weight.data, before)
    bad = {"0.weight": kiln.zeros(3, 3)}
    kiln.save(bad, path)
    with pytest.raises(RuntimeError, match="size mismatch for 0.weight"):
        k.load_state_dict(kiln.load(path), strict=False)


# ---- resume: RNG and training state -----------------------------------------------------------
def test_rng_state_round_trip():
    kiln.manual_seed(3)
    kiln.rand(5)
    state = kiln.get_rng_state()
    a = (kiln.randn(4).data.copy(), kiln.randint(0, 100, (3,)).data.copy())
    kiln.rand(7)
    kiln.set_rng_state(state)
    assert np.array_equal(kiln.randn(4).data, a[0])
    assert np.array_equal(kiln.randint(0, 100, (3,)).data, a[1])
    with pytest.raises(TypeError, match="set_rng_state"):
        kiln.set_rng_state([1, 2])
    with pytest.raises(ValueError, match="unknown bit generator"):
        kiln.set_rng_state({"bit_generator": "Nope", "state": {}})


def _noisy_sgd_run(model, momentum, start, stop):
    """SGD with momentum on random mini-batches drawn from kiln's RNG."""
    x_all = kiln.from_numpy(np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32))
    y_all = kiln.from_numpy(np.random.default_rng(1).integers(0, 3, 64))
    params = list(model.parameters())
    for _ in range(start, stop):
        idx = kiln.randperm(64)[:16].data
        model.zero_grad()
        out = model(x_all[idx] + kiln.randn(16, 4) * 0.1)
        nn.CrossEntropyLoss()(out, y_all[idx]).backward()
        with kiln.no_grad():
            for i, p in enumerate(params):
                buf = momentum.get(i)
                momentum[i] = p.grad.data.copy() if buf is None else 0.9 * buf + p.grad.data
                p.data -= 0.05 * momentum[i]


def test_resume_is_bit_exact(tmp_path):
    kiln.manual_seed(7)
    ref = _mlp(nn)
    mom = {}
    _noisy_sgd_run(ref, mom, 0, 10)
    path = tmp_path / "ckpt.safetensors"
    kiln.save({"model": ref.state_dict(), "rng": kiln.get_rng_state(), "step": 10,
               "optimizer": {"state": {i: {"momentum_buffer": kiln.from_numpy(b)}
                                       for i, b in mom.items()}, "param_groups": [{"lr": 0.05}]}},
              path)
    _noisy_sgd_run(ref, mom, 10, 20)

    kiln.manual_seed(12345)  # a fresh process would start elsewhere
    resumed = _mlp(nn)
    ck = kiln.load(path)
    resumed.load_state_dict(ck["model"])
    kiln.set_rng_state(ck["rng"])
    mom2 = {i: s["momentum_buffer"].data for i, s in ck["optimizer"]["state"].items()}
    _noisy_sgd_run(resumed, mom2, ck["step"], 20)
    for (n, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert np.array_equal(a.data, b.data), n


# ---- corrupt files and atomic writes ---------------------------------------------------------
def _good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    kiln.save({"model": _mlp(nn).state_dict(), "step": 1}, path)
    return path


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_corrupt_files_raise_checkpoint_error(tmp_path):
    good = _good_file(tmp_path).read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8:8 + n])
    cases = {
        "empty.safetensors": b"",
        "short.safetensors": b"\x01\x02",
        "truncated.safetensors": good[:-10],
        "truncated_header.safetensors": good[:8 + n // 2],
        "garbage.safetensors": os.urandom(4096),
        "text.safetensors": b"hello world, this is not a checkpoint" * 10,
        "huge_header.safetensors": struct.pack("<Q", 2**40) + b"{}",
        "not_json.safetensors": struct.pack("<Q", 4) + b"{{{{",
        "json_list.safetensors": struct.pack("<Q", 2) + b"[]",
        "extra_bytes.safetensors": good + b"\x00" * 16,
    }
    bad_offsets = dict(header)
    key = next(k for k in bad_offsets if k != "__metadata__")
    bad_offsets[key] = dict(bad_offsets[key], data_offsets=[0, 10**9])
    hb = json.dumps(bad_offsets).encode()
    cases["bad_offsets.safetensors"] = struct.pack("<Q", len(hb)) + hb + good[8 + n:]
    bad_meta = dict(header, __metadata__={"__kiln__": "{not json"})
    hb = json.dumps(bad_meta).encode()
    cases["bad_meta.safetensors"] = struct.pack("<Q", len(hb)) + hb + good[8 + n:]
    missing = dict(header, __metadata__={"__kiln__": json.dumps(
        {"version": 1, "tree": {"w": {"__kiln_tensor__": "nope"}}})})
    hb = json.dumps(missing).encode()
    cases["missing_tensor.safetensors"] = struct.pack("<Q", len(hb)) + hb + good[8 + n:]
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)  # a pickle: never unpickled, refused
    cases["torch_pickle.pt"] = buf.getvalue()
    for name, data in cases.items():
        p = _write(tmp_path, name, data)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")) as info:
            kiln.load(p)
        assert isinstance(info.value, ValueError), name
    with pytest.raises(FileNotFoundError):
        kiln.load(tmp_path / "absent.safetensors")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = _good_file(tmp_path)
    before = path.read_bytes()
    import safetensors.numpy as snp

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("simulated crash mid-write")

    monkeypatch.setattr(snp, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        kiln.save({"model": _mlp(nn).state_dict()}, path)
    assert path.read_bytes() == before  # the previous checkpoint is intact
    assert sorted(os.listdir(tmp_path)) == ["good.safetensors"]  # no temp file left
    with pytest.raises(TypeError):
        kiln.save({"bad": object()}, path)
    assert path.read_bytes() == before


def test_map_location():
    buf = io.BytesIO()
    kiln.save({"a": kiln.ones(2), "n": [kiln.zeros(1)]}, buf)
    data = buf.getvalue()
    out = kiln.load(io.BytesIO(data), map_location="cpu")
    assert out["a"].device == "cpu"
    out = kiln.load(io.BytesIO(data), map_location=lambda t: t * 2)
    assert out["a"].data.tolist() == [2.0, 2.0]
    with pytest.raises(TypeError, match="map_location"):
        kiln.load(io.BytesIO(data), map_location=3)


def test_foreign_safetensors_file(tmp_path):
    """A safetensors file from elsewhere (no kiln metadata): {name: Tensor}."""
    path = tmp_path / "foreign.safetensors"
    torch_save_file({"b": torch.arange(3, dtype=torch.int32), "a": torch.ones(2, 2)}, str(path))
    out = kiln.load(path)
    assert set(out) == {"a", "b"}
    assert out["b"].dtype == kiln.int64 and out["b"].data.tolist() == [0, 1, 2]


# ---- transfer learning -----------------------------------------------------------------------
def test_transfer_learning_from_torch_weights(tmp_path):
    """A PyTorch model's weights (saved with safetensors.torch) load into the same kiln
    model; the body is frozen with requires_grad_(False) and only the new head is
    fine-tuned with plain SGD steps: the loss falls and the body does not move."""
    torch.manual_seed(0)
    body_t = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
                                 torch.nn.Linear(16, 16), torch.nn.ReLU())
    path = tmp_path / "pretrained.safetensors"
    torch_save_file(body_t.state_dict(), str(path))

    body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    body.load_state_dict(kiln.load(path))
    body.requires_grad_(False)
    kiln.manual_seed(0)
    head = nn.Linear(16, 3)
    model = nn.Sequential(body, head)
    frozen = {n: p.data.copy() for n, p in body.named_parameters()}

    rng = np.random.default_rng(0)
    x = kiln.from_numpy(rng.standard_normal((128, 4)).astype(np.float32))
    with torch.no_grad():  # labels the pretrained body can separate
        feats = body_t(torch.from_numpy(x.data.copy())).numpy()
    y = kiln.from_numpy((feats @ rng.standard_normal((16, 3))).argmax(1))
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(60):
        head.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        losses.append(loss.item())
        with kiln.no_grad():
            for p in head.parameters():
                p.data -= 0.5 * p.grad.data
    assert losses[-1] < 0.7 * losses[0], losses[::10]
    for n, p in body.named_parameters():
        assert p.grad is None and np.array_equal(p.data, frozen[n]), n
