"""The core contract: generated modules agree with an independent autograd, keep dtypes, and match the
finite-difference checker; the checker itself catches planted errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import grusym
from grusym.gradcheck import check_gradients, variant_problem
from grusym.symbolic.variants import VARIANTS

from . import reference_autograd

NAMES = list(VARIANTS)


def _problem(name: str, T=3, n=2, d=3, h=4, q=5, seed=0, scale=1.0):
    m = grusym.load(name)
    rng = np.random.default_rng(seed)
    p = m.init_params(d, h, q, seed=seed, scale=scale)
    p = {k: (v if v.ndim == 2 else rng.normal(0, scale / 2, v.shape)) for k, v in p.items()}
    X = rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    h0 = rng.normal(0, 0.5, (n, h))
    return m, p, X, Y, h0


def test_variants_listed_and_loadable():
    assert grusym.variants() == NAMES
    for name in NAMES:
        assert name == grusym.load(name).VARIANT


def test_contract_parameter_names_of_the_reference_gru():
    m = grusym.load("gru")
    p = m.init_params(input_size=4, hidden_size=2, output_size=4, seed=0, dtype=np.float64)
    assert list(p) == ["W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h", "W_hq", "b_q"]
    assert {k: v.shape for k, v in p.items()} == {
        "W_xz": (4, 2), "W_hz": (2, 2), "b_z": (2,), "W_xr": (4, 2), "W_hr": (2, 2), "b_r": (2,),
        "W_xh": (4, 2), "W_hh": (2, 2), "b_h": (2,), "W_hq": (2, 4), "b_q": (4,),
    }  # fmt: skip


def test_init_params_is_seeded_d2l_normal_with_zero_biases():
    m = grusym.load("gru")
    a = m.init_params(30, 40, 50, seed=7)
    b = m.init_params(30, 40, 50, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W_xz"], m.init_params(30, 40, 50, seed=8)["W_xz"])
    weights = np.concatenate([v.ravel() for v in a.values() if v.ndim == 2])
    assert abs(weights.std() - 0.01) < 0.0005 and abs(weights.mean()) < 0.0005
    assert all(not v.any() for v in a.values() if v.ndim == 1)


@pytest.mark.parametrize("name", NAMES)
def test_matches_independent_autograd(name):
    """Guards the whole derive -> codegen chain against a tape autograd of the same equations (1e-9)."""
    m, p, X, Y, h0 = _problem(name, T=4, n=3, scale=1.5)
    loss, grads, h_T = m.loss_and_grads(p, X, Y, h0)
    ref_loss, ref = reference_autograd.loss_and_grads(VARIANTS[name].cell(), p, X, Y, h0)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert set(grads) == set(ref) == {*p, "h0", "X"}
    for key in ref:
        err = np.abs(grads[key] - ref[key]).max() / max(np.abs(ref[key]).max(), 1e-300)
        assert err < 1e-9, f"{name}: d{key} differs from the tape autograd by {err:.2e} (relative)"
    H, _ = m.forward(p, X, h0)
    assert np.array_equal(h_T, H[-1])


@pytest.mark.parametrize("name", NAMES)
def test_backward_of_forward_matches_loss_and_grads(name):
    m, p, X, Y, h0 = _problem(name)
    _, grads, _ = m.loss_and_grads(p, X, Y, h0)
    H, cache = m.forward(p, X, h0)
    T, n, h = H.shape
    logits = m.head(p, H).reshape(T * n, -1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    probs[np.arange(T * n), Y.reshape(-1)] -= 1
    dH = (probs / (T * n) @ p["W_hq"].T).reshape(T, n, h)
    back = m.backward(p, cache, dH)
    assert set(back) == {*p, "h0", "X"}
    for key in (*grads.keys() - {"W_hq", "b_q"},):
        np.testing.assert_allclose(back[key], grads[key], rtol=1e-12, atol=1e-15)
    assert not back["W_hq"].any() and not back["b_q"].any()


@pytest.mark.parametrize("name", NAMES)
def test_token_ids_equal_one_hot_inputs(name):
    m, p, _, Y, h0 = _problem(name, d=5)
    ids = np.random.default_rng(3).integers(0, 5, Y.shape)
    loss_ids, g_ids, _ = m.loss_and_grads(p, ids, Y, h0)
    loss_oh, g_oh, _ = m.loss_and_grads(p, np.eye(5)[ids], Y, h0)
    assert loss_ids == pytest.approx(loss_oh, rel=1e-14)
    assert "X" not in g_ids and "X" in g_oh
    for key in g_ids:
        np.testing.assert_allclose(g_ids[key], g_oh[key], rtol=1e-12, atol=1e-15)


def test_large_vocabulary_token_gradient_path():
    """Guards the sort-and-segment-sum path used above 512 tokens against the one-hot GEMM result."""
    m = grusym.load("gru")
    p = m.init_params(600, 3, 4, seed=1, scale=0.5)
    ids = np.random.default_rng(0).integers(0, 600, (5, 7))
    ids[0, 0] = ids[1, 1]  # repeated token ids must accumulate
    Y = np.random.default_rng(1).integers(0, 4, (5, 7))
    _, g_ids, _ = m.loss_and_grads(p, ids, Y, np.zeros((7, 3)))
    _, g_oh, _ = m.loss_and_grads(p, np.eye(600)[ids], Y, np.zeros((7, 3)))
    np.testing.assert_allclose(g_ids["W_xz"], g_oh["W_xz"], rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name", NAMES)
def test_float32_preserved_and_close_to_float64(name):
    m, p, X, Y, h0 = _problem(name)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    loss32, g32, h32 = m.loss_and_grads(p32, X.astype(np.float32), Y, h0.astype(np.float32))
    loss64, g64, _ = m.loss_and_grads(p, X, Y, h0)
    assert isinstance(loss32, float) and h32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in g32.values())
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for key in g64:
        np.testing.assert_allclose(g32[key], g64[key], rtol=2e-3, atol=1e-5)


def test_seed_toy_starts_at_uniform_loss():
    """At d2l's N(0, 0.01) init the softmax is nearly uniform: the loss is ln(vocabulary) = ln 4."""
    m = grusym.load("gru")
    p = m.init_params(4, 2, 4, seed=0)
    ids = np.array([3, 1, 2, 0] * 2)  # "MathMath" with {h: 0, a: 1, t: 2, M: 3}
    X, Y = ids[:6].reshape(2, 3).T, ids[1:7].reshape(2, 3).T
    loss, _, _ = m.loss_and_grads(p, X, Y, np.zeros((2, 2)))
    assert loss == pytest.approx(math.log(4), abs=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_saturated_gates_stay_finite_without_warnings(name):
    m, p, X, Y, h0 = _problem(name, scale=1.0)
    p = {k: v * 1000.0 for k, v in p.items()}  # pre-activations of order 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads, h_T = m.loss_and_grads(p, X * 30, Y, h0)
    assert np.isfinite(loss) and np.isfinite(h_T).all()
    assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_complex_analytic(name):
    """The complex-step derivative of ``loss`` equals the analytic gradient (no abs/max on the value)."""
    m, p, X, Y, h0 = _problem(name)
    _, grads, _ = m.loss_and_grads(p, X, Y, h0)
    key = next(iter(p))
    pc = {k: v.astype(complex) for k, v in p.items()}
    pc[key][0, 0] += 1e-30j
    cs = m.loss(pc, X, Y, h0).imag / 1e-30
    assert cs == pytest.approx(grads[key][0, 0], rel=1e-10)


sizes = st.fixed_dictionaries({
    "T": st.integers(1, 6), "n": st.integers(1, 4), "d": st.integers(1, 5), "h": st.integers(1, 5),
    "q": st.integers(2, 6), "scale": st.sampled_from([0.1, 1.0, 3.0]), "seed": st.integers(0, 2**16),
    "tokens": st.booleans(),
})  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@given(sizes=sizes)
def test_fd_gradient_check_property(name, sizes):
    fun, grad_fun, inputs = variant_problem(name, **sizes)
    report = check_gradients(fun, grad_fun, inputs)
    assert report.ok, str(report)


def test_checker_catches_one_element_off_by_a_tenth_of_a_percent():
    fun, grad_fun, inputs = variant_problem("gru", seed=1)
    good = grad_fun(inputs)
    key, idx = "W_hz", np.unravel_index(np.argmax(np.abs(good["W_hz"])), good["W_hz"].shape)

    def planted(x):
        g = grad_fun(x)
        g[key] = g[key].copy()
        g[key][idx] *= 1.001
        return g

    report = check_gradients(fun, planted, inputs)
    assert not report.ok
    assert [e.name for e in report.failures] == [key]
    assert report.worst.index == tuple(int(i) for i in idx)
    with pytest.raises(
        grusym.GradientCheckError, match=rf"W_hz\[{idx[0]}, {idx[1]}\]: analytic .* vs numeric"
    ):
        report.raise_if_failed()
    assert "FAIL" in str(report)
