"""The optimizer kernels (kiln._cpu.sgd_step / adam_step / rmsprop_step / adagrad_step)
directly: argument checks with clear errors, threads and instruction sets giving identical
results, mixed dtypes in one call; and the Python layer's errors (bad hyperparameters,
load_state_dict mismatches), as PyTorch raises them."""

import numpy as np
import pytest

import kiln
from kiln import _cpu

f32 = np.float32


def adam_args(n=3, shape=(4,), dtype=f32, amsgrad=False):
    ps = [np.ones(shape, dtype) for _ in range(n)]
    gs = [np.full(shape, 0.5, dtype) for _ in range(n)]
    m = [np.zeros(shape, dtype) for _ in range(n)]
    v = [np.zeros(shape, dtype) for _ in range(n)]
    mx = [np.zeros(shape, dtype) for _ in range(n)] if amsgrad else []
    st = [np.zeros((), f32) for _ in range(n)]
    return ps, gs, m, v, mx, st


def adam(ps, gs, m, v, mx, st, amsgrad=False):
    _cpu.adam_step(ps, gs, m, v, mx, st, 0.1, 0.9, 0.999, 1e-8, 0.0, False, amsgrad, False)


def test_adam_kernel_errors_name_kernel_and_index():
    ps, gs, m, v, mx, st = adam_args()
    with pytest.raises(ValueError, match="adam_step: grads has 2 arrays but params has 3"):
        adam(ps, gs[:2], m, v, mx, st)
    gs[1] = np.ones(5, f32)
    with pytest.raises(ValueError, match=r"adam_step: shape mismatch: params\[1\] .*grads\[1\]"):
        adam(ps, gs, m, v, mx, st)
    ps, gs, m, v, mx, st = adam_args()
    m[2] = np.zeros(4, np.float64)
    with pytest.raises(TypeError, match=r"adam_step: dtype mismatch: params\[2\].*exp_avgs\[2\]"):
        adam(ps, gs, m, v, mx, st)
    ps, gs, m, v, mx, st = adam_args()
    ps[0] = np.ones((4, 2), f32)[:, 0]
    gs[0] = np.ones(4, f32)
    with pytest.raises(ValueError, match=r"adam_step: params\[0\] .* C-contiguous"):
        adam(ps, gs, m, v, mx, st)
    ps, gs, m, v, mx, st = adam_args()
    v[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"adam_step: exp_avg_sqs\[1\] .* read-only"):
        adam(ps, gs, m, v, mx, st)
    ps, gs, m, v, mx, st = adam_args()
    with pytest.raises(ValueError, match="adam_step: max_exp_avg_sqs must be empty"):
        adam(ps, gs, m, v, [np.zeros(4, f32)] * 3, st)
    with pytest.raises(ValueError, match="adam_step: max_exp_avg_sqs has 0 arrays"):
        adam(ps, gs, m, v, [], st, amsgrad=True)
    st[2] = np.zeros((), np.int64)
    with pytest.raises(TypeError, match=r"adam_step: state_steps\[2\] .* float32 or float64"):
        adam(ps, gs, m, v, mx, st)
    # a failed call changed nothing (all checks run before any update)
    assert all(s == 0 for s in st[:2]) and all((p == 1).all() for p in ps)
    ps, gs, m, v, mx, st = adam_args(dtype=np.int64)
    with pytest.raises(TypeError, match=r"adam_step: params\[0\] .* float32 or float64"):
        adam(ps, gs, m, v, mx, st)
    with pytest.raises(TypeError):
        adam([[1.0]], gs, m, v, mx, st)  # not an array


def test_other_kernels_check_their_lists():
    p, g = [np.ones(3, f32)], [np.ones(3, f32)]
    with pytest.raises(ValueError, match="sgd_step: momentum_buffers has 0 arrays"):
        _cpu.sgd_step(p, g, [], 0.1, 0.9, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match="sgd_step: momentum_buffers must be empty"):
        _cpu.sgd_step(p, g, [np.ones(3, f32)], 0.1, 0.0, 0.0, 0.0, False, False, False)
    st = [np.zeros((), f32)]
    with pytest.raises(ValueError, match="rmsprop_step: grad_avgs has 0 arrays"):
        _cpu.rmsprop_step(p, g, [np.ones(3, f32)], [], [], st, 0.1, 0.9, 1e-8, 0, 0, True, False)
    with pytest.raises(ValueError, match=r"adagrad_step: shape mismatch: params\[0\].*state_sums"):
        _cpu.adagrad_step(p, g, [np.ones(4, f32)], st, 0.1, 0.0, 0.0, 1e-10, False)
    with pytest.raises(ValueError, match=r"adagrad_step: state_steps\[0\] .* one value"):
        _cpu.adagrad_step(p, g, [np.ones(3, f32)], [np.zeros(2, f32)], 0.1, 0, 0, 1e-10, False)
    _cpu.sgd_step([], [], [], 0.1, 0.9, 0.0, 0.0, False, False, False)  # empty group: no-op


def big_case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(300, 257), (5,), (0,), (70001,)]  # crosses the threading grain, odd sizes
    mk = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return [a.copy() for a in mk], [rng.standard_normal(s).astype(dtype) for s in shapes]


def run_all(dtype):
    """Two steps of every kernel; returns all resulting arrays."""
    out = []
    for kernel in ("sgd", "adam", "rmsprop", "adagrad"):
        ps, gs = big_case(dtype)
        z = [np.zeros_like(p) for p in ps]
        st = [np.zeros((), f32) for _ in ps]
        s2 = [np.zeros_like(p) for p in ps]
        s3 = [np.zeros_like(p) for p in ps]
        for first in (True, False):
            if kernel == "sgd":
                _cpu.sgd_step(ps, gs, z, 0.1, 0.9, 0.1, 0.01, False, False,
                              first)
            elif kernel == "adam":
                _cpu.adam_step(ps, gs, z, s2, s3, st, 0.1, 0.9, 0.99, 1e-8, 0.1, True, True, True)
            elif kernel == "rmsprop":
                _cpu.rmsprop_step(ps, gs, z, s2, s3, st, 0.01, 0.9, 1e-8, 0.1, 0.5, True, False)
            else:
                _cpu.adagrad_step(ps, gs, z, st, 0.1, 0.01, 0.1, 1e-10, True)
        out += ps + z
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_threads_and_isas_give_identical_results(dtype):
    isa, threads = _cpu.get_isa(), kiln.get_num_threads()
    levels = {"avx512": ["avx512", "avx2", "scalar"], "avx2": ["avx2", "scalar"]}.get(
        _cpu.supported_isa(), ["scalar"])
    try:
        kiln.set_num_threads(1)
        ref = run_all(dtype)
        for nt in (1, 2):
            kiln.set_num_threads(nt)
            for level in levels:
                _cpu.set_isa(level)
                got = run_all(dtype)
                for i, (a, b) in enumerate(zip(got, ref, strict=True)):
                    np.testing.assert_array_equal(a, b, err_msg=f"{level} threads={nt} #{i}")
    finally:
        _cpu.set_isa(isa)
        kiln.set_num_threads(threads)


def test_mixed_dtypes_in_one_call_match_separate_calls():
    rng = np.random.default_rng(2)
    a32, a64 = rng.standard_normal(1000).astype(f32), rng.standard_normal(999)
    g32, g64 = rng.standard_normal(1000).astype(f32), rng.standard_normal(999)
    ps = [a32.copy(), a64.copy()]
    _cpu.sgd_step(ps, [g32, g64], [], 0.1, 0.0, 0.0, 0.0, False, False, False)
    one32, one64 = a32.copy(), a64.copy()
    _cpu.sgd_step([one32], [g32], [], 0.1, 0.0, 0.0, 0.0, False, False, False)
    _cpu.sgd_step([one64], [g64], [], 0.1, 0.0, 0.0, 0.0, False, False, False)
    np.testing.assert_array_equal(ps[0], one32)
    np.testing.assert_array_equal(ps[1], one64)


# ---- the Python layer's errors ----------------------------------------------------------
def param():
    return kiln.randn(3, requires_grad=True)


@pytest.mark.parametrize("make, match", [
    (lambda: kiln.optim.SGD([param()], lr=-0.1), "Invalid learning rate"),
    (lambda: kiln.optim.SGD([param()], momentum=-0.5), "Invalid momentum value"),
    (lambda: kiln.optim.SGD([param()], weight_decay=-1), "Invalid weight_decay value"),
    (lambda: kiln.optim.SGD([param()], nesterov=True), "Nesterov momentum requires"),
    (lambda: kiln.optim.SGD([param()], momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires"),
    (lambda: kiln.optim.Adam([param()], betas=(1.0, 0.999)), "Invalid beta parameter at index 0"),
    (lambda: kiln.optim.Adam([param()], betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
    (lambda: kiln.optim.Adam([param()], eps=-1e-8), "Invalid epsilon value"),
    (lambda: kiln.optim.AdamW([param()], lr=-1), "Invalid learning rate"),
    (lambda: kiln.optim.AdamW([param()], weight_decay=-0.1), "Invalid weight_decay value"),
    (lambda: kiln.optim.RMSprop([param()], alpha=-0.1), "Invalid alpha value"),
    (lambda: kiln.optim.RMSprop([param()], momentum=-0.1), "Invalid momentum value"),
    (lambda: kiln.optim.Adagrad([param()], lr_decay=-0.1), "Invalid lr_decay value"),
    (lambda: kiln.optim.Adagrad([param()], initial_accumulator_value=-1),
     "Invalid initial_accumulator_value"),
    (lambda: kiln.optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda: kiln.optim.SGD([(param() * 2)], lr=0.1), "non-leaf"),
])  # fmt: skip
def test_bad_hyperparameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_params_raise_type_error():
    with pytest.raises(TypeError, match="iterable of Tensors"):
        kiln.optim.SGD(param())
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        kiln.optim.SGD([np.ones(3)])
    with pytest.raises(TypeError, match="ordered collections"):
        kiln.optim.SGD([param()]).add_param_group({"params": {param()}})
    with pytest.raises(NotImplementedError, match="differentiable"):
        kiln.optim.Adam([param()], differentiable=True)
    kiln.optim.Adam([param()], foreach=True, fused=True, capturable=False)  # accepted


def test_load_state_dict_mismatches_raise():
    a, b, c = param(), param(), kiln.randn(2, 2, requires_grad=True)
    opt = kiln.optim.Adam([{"params": [a, b]}, {"params": [c]}])
    for p in (a, b, c):
        p.grad = kiln.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    other = kiln.optim.Adam([a, b, c])
    with pytest.raises(ValueError, match="different number of parameter groups"):
        other.load_state_dict(sd)
    other = kiln.optim.Adam([{"params": [a]}, {"params": [b, c]}])
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        other.load_state_dict(sd)
    d = kiln.randn(5, requires_grad=True)  # same group sizes, wrong shapes
    other = kiln.optim.Adam([{"params": [a, b]}, {"params": [d]}])
    with pytest.raises(ValueError, match=r"parameter 2: .*shape \(2, 2\).*shape \(5,\)"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        other.load_state_dict({"state": {}})


def test_state_dict_format_and_step_dtype():
    a = param()
    opt = kiln.optim.Adam([a], lr=0.1)
    a.grad = kiln.ones_like(a)
    opt.step()
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == [0] and sd["param_groups"][0]["params"] == [0]
    step = sd["state"][0]["step"]
    assert isinstance(step, kiln.Tensor) and step.shape == () and step.dtype == kiln.float32
    assert step.item() == 2.0
    # a step saved as a plain number (older PyTorch) becomes a float32 0-d tensor
    sd = {"state": {0: dict(sd["state"][0], step=5)}, "param_groups": sd["param_groups"]}
    opt2 = kiln.optim.Adam([a])
    opt2.load_state_dict(sd)
    assert opt2.state[a]["step"].dtype == kiln.float32 and opt2.state[a]["step"].item() == 5
    opt2.step()
    assert opt2.state[a]["step"].item() == 6


def test_kernel_error_surfaces_through_step():
    a = param()
    opt = kiln.optim.Adam([a])
    a.grad = kiln.ones(4)
    with pytest.raises(ValueError, match=r"adam_step: shape mismatch: params\[0\]"):
        opt.step()
