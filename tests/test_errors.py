"""Bad input gets a clear Python exception naming the op and the shapes: never a crash,
never a silent wrong answer."""

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F


def test_mismatched_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        kiln.ones(2, 3) + kiln.ones(4)
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied"):
        kiln.ones(2, 3) @ kiln.ones(4, 5)
    with pytest.raises(ValueError, match=r"matmul: batch dimensions of \(2, 3, 4\) and \(5, 4, 1\)"):
        kiln.ones(2, 3, 4) @ kiln.ones(5, 4, 1)
    with pytest.raises(ValueError, match=r"linear: input of shape \(3, 4\) and weight of shape \(2, 5\)"):
        F.linear(kiln.ones(3, 4), kiln.ones(2, 5))
    with pytest.raises(ValueError, match="cat: sizes of tensors must match"):
        kiln.cat([kiln.ones(2, 3), kiln.ones(2, 4)])
    with pytest.raises(RuntimeError, match=r"reshape: shape \(4, 2\) is invalid for input of shape \(7,\)"):
        kiln.ones(7).reshape(4, 2)
    with pytest.raises(ValueError, match="expand"):
        kiln.ones(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match=r"mse_loss: input of shape \(2,\) and target of shape \(3,\)"):
        F.mse_loss(kiln.ones(2), kiln.ones(3))


def test_wrong_dtypes():
    with pytest.raises(TypeError, match=r"matmul: expected both operands to have the same dtype"):
        kiln.ones(2, 2) @ kiln.ones(2, 2, dtype=kiln.float64)
    with pytest.raises(TypeError, match=r"relu: input must be a floating point tensor.*int64 of shape \(3,\)"):
        F.relu(kiln.arange(3))
    with pytest.raises(TypeError, match=r"softmax"):
        F.softmax(kiln.arange(3), 0)
    with pytest.raises(TypeError, match="unsupported dtype"):
        kiln.zeros(2, dtype="complex64")
    with pytest.raises(TypeError, match=r"where: condition must be a bool"):
        kiln.where(kiln.ones(2), kiln.ones(2), kiln.ones(2))


def test_float_labels_to_cross_entropy():
    with pytest.raises(ValueError, match=r"cross_entropy: float target must hold class probabilities.*\(4, 3\).*\(4,\)"):
        F.cross_entropy(kiln.randn(4, 3), kiln.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match=r"cross_entropy: target must be int64 class indices.*bool"):
        F.cross_entropy(kiln.randn(2, 3), kiln.tensor([True, False]))
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \(4,\).*got \(3,\)"):
        F.cross_entropy(kiln.randn(4, 3), kiln.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: weight must be a tensor of shape \(3,\)"):
        F.cross_entropy(kiln.randn(4, 3), kiln.tensor([0, 1, 2, 0]), kiln.ones(4))


def test_out_of_range_indices():
    with pytest.raises(IndexError, match=r"cross_entropy.*7.*3"):
        F.cross_entropy(kiln.randn(2, 3), kiln.tensor([0, 7]))
    with pytest.raises(IndexError, match=r"cross_entropy.*-1"):
        F.cross_entropy(kiln.randn(2, 3), kiln.tensor([0, -1]))
    x = kiln.ones(3, 4)
    with pytest.raises(IndexError, match=r"index 5 is out of bounds for dimension 0 with size 3.*\(3, 4\)"):
        x[5]
    with pytest.raises(IndexError, match="out of bounds"):
        x[kiln.tensor([0, 3])]
    with pytest.raises(IndexError, match=r"dimension out of range"):
        x.sum(2)
    with pytest.raises(IndexError, match=r"softmax: dimension out of range"):
        F.softmax(x, 3)


def test_devices():
    with pytest.raises(RuntimeError, match="CUDA"):
        kiln.zeros(2, device="cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        kiln.ones(2).to("tpu")
    with pytest.raises(TypeError):
        kiln._cpu.relu([1.0, 2.0], object())


def test_nan_propagates_never_silently_dropped():
    x = kiln.tensor([float("nan"), 1.0, -1.0])
    for f in (F.relu, F.sigmoid, F.tanh, F.gelu, F.silu, F.elu, F.softplus,
              lambda t: F.leaky_relu(t, 0.1)):
        assert np.isnan(f(x).numpy()[0]), f
    assert np.isnan(F.softmax(x, 0).numpy()).all()
    assert np.isnan((kiln.tensor([[float("nan"), 1.0]]) @ kiln.ones(2, 1)).item())


def test_kernel_level_errors_name_the_kernel():
    from kiln import _cpu

    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="matmul"):
        _cpu.matmul(a, np.ones((4, 2), np.float32), np.empty((2, 2), np.float32))
    with pytest.raises(TypeError, match="matmul"):
        _cpu.matmul(a, np.ones((3, 2), np.float64), np.empty((2, 2), np.float32))
    with pytest.raises(ValueError, match="relu"):
        _cpu.relu(a, np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _cpu.relu(a.T, np.empty((3, 2), np.float32))
    with pytest.raises(TypeError, match="relu"):
        _cpu.relu(np.ones(3, np.int64), np.empty(3, np.int64))


def test_empty_tensors():
    e = kiln.zeros(0)
    assert F.relu(e).shape == (0,)
    assert F.softmax(kiln.zeros(0, 3), 1).shape == (0, 3)
    assert (kiln.zeros(0, 3) @ kiln.zeros(3, 2)).shape == (0, 2)
    with pytest.raises(RuntimeError, match="non-empty"):
        e.max()
