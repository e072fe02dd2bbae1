"""The gradient checker: every method catches every planted error and says where (parameter, element,
time step); it passes right gradients of every variant, of saturated cells and of a user's own NumPy code."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import pytest

import grusym
from grusym.cli import main
from grusym.errors import GradientCheckError, InputError, ShapeError
from grusym.gradcheck import (
    METHODS,
    TOLERANCES,
    check_gradients,
    check_recurrent,
    check_variant,
    estimate_noise,
    locate_time_step,
)
from grusym.symbolic.variants import CELLS, VARIANTS

NAMES = list(VARIANTS)
SIZES = {"T": 3, "n": 2, "d": 3, "h": 3, "q": 3}  # within the oracle's limits; W_h* are square (h, h)
ALL_METHODS = (*METHODS, "oracle")


# planted errors: each wraps a correct loss_and_grads ------------------------------------------------


def off_by_a_tenth_of_a_percent(lag, key="W_hz"):
    """Scale the largest element of ``key`` by 1.001; the element is fixed on the first (full) call."""
    chosen = {}

    def planted(params, X, Y, h0):
        loss, grads, h_T = lag(params, X, Y, h0)
        g = np.array(grads[key], copy=True)
        chosen.setdefault("index", np.unravel_index(int(np.argmax(np.abs(g))), g.shape))
        g[chosen["index"]] *= 1.001
        return loss, {**grads, key: g}, h_T

    return planted, chosen


def transposed(lag, key="W_hh"):
    """Return the transpose of a square weight's gradient (a classic layout bug)."""

    def planted(params, X, Y, h0):
        loss, grads, h_T = lag(params, X, Y, h0)
        return loss, {**grads, key: np.array(grads[key]).T.copy()}, h_T

    return planted


def missing_step(m, k, key="W_hz"):
    """Drop the contribution of time step k to ``key``, computed independently of the checker's locator:
    the contribution of steps >= t is the gradient w.r.t. a copy of ``key`` used only from step t on, i.e.
    (T - t)/T times the gradient of the suffix problem X[t:], Y[t:] started from h_t."""

    def from_step(params, X, Y, h0, t):
        T = X.shape[0]
        if t >= T:
            return 0.0
        h_t = m.forward(params, X[:t], h0)[0][-1] if t else h0
        return (T - t) / T * m.loss_and_grads(params, X[t:], Y[t:], h_t)[1][key]

    def planted(params, X, Y, h0):
        loss, grads, h_T = m.loss_and_grads(params, X, Y, h0)
        drop = from_step(params, X, Y, h0, k) - from_step(params, X, Y, h0, k + 1)
        return loss, {**grads, key: grads[key] - drop}, h_T

    return planted


def _element(text):
    return tuple(int(i) for i in text.split(", "))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_one_element_off_by_a_tenth_of_a_percent_is_caught_and_located(method):
    m = grusym.load("gru")
    planted, chosen = off_by_a_tenth_of_a_percent(m.loss_and_grads)
    report = check_variant("gru", method=method, seed=1, loss_and_grads=planted, **SIZES)
    assert [e.name for e in report.failures] == ["W_hz"], str(report)
    i, j = chosen["index"]
    assert report.worst.index == (i, j)
    reference = "oracle" if method == "oracle" else "numeric"
    pattern = rf"W_hz\[{i}, {j}\]: analytic (\S+) vs {reference} (\S+) .*first wrong at t = 1 \(X\[0\]\)"
    with pytest.raises(GradientCheckError, match=pattern) as info:
        report.raise_if_failed()
    analytic, numeric = (float(v) for v in re.search(pattern, str(info.value)).groups())
    assert analytic / numeric == pytest.approx(1.001, rel=1e-6)  # the analytic side is the planted one
    assert "FAIL" in str(report)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_transposed_weight_gradient_is_caught(method):
    m = grusym.load("gru")
    report = check_variant("gru", method=method, seed=1, loss_and_grads=transposed(m.loss_and_grads), **SIZES)
    assert [e.name for e in report.failures] == ["W_hh"], str(report)
    i, j = report.worst.index
    assert i != j  # the diagonal of a transpose is right
    good = m.loss_and_grads(*_problem_args("gru", seed=1, method=method))[1]["W_hh"]
    assert report.worst.analytic == pytest.approx(good[j, i], rel=1e-12)
    with pytest.raises(GradientCheckError, match=rf"W_hh\[{i}, {j}\]: analytic .* first wrong at t = \d"):
        report.raise_if_failed()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_gradient_missing_one_time_step_is_located_at_that_step(method):
    m = grusym.load("gru")
    report = check_variant("gru", method=method, seed=1, loss_and_grads=missing_step(m, 1), **SIZES)
    assert [e.name for e in report.failures] == ["W_hz"], str(report)
    # missing_step(m, 1) drops the term of the step that reads X[1]: t = 2, counted from 1
    assert report.worst.time_step == 2 and report.worst.step_index == 1
    with pytest.raises(
        GradientCheckError, match=r"W_hz\[\d, \d\]: analytic \S+ vs \w+ \S+ .*first wrong at t = 2 \(X\[1\]\)"
    ):
        report.raise_if_failed()


def _problem_args(name, *, seed, method):
    """The (params, X, Y, h0) that check_variant uses (rounded like the oracle's point for "oracle")."""
    from grusym.gradcheck import _variant_data

    _, params, X, Y, h0 = _variant_data(name, seed=seed, scale=1.0, tokens=False, **SIZES)
    if method == "oracle":
        params = {k: np.round(v * 4096) / 4096 for k, v in params.items()}
        X, h0 = np.round(X * 4096) / 4096, np.round(h0 * 4096) / 4096
    return params, X, Y, h0


def test_locate_time_step_reports_per_step_contributions():
    m = grusym.load("rnn_tanh")
    params, X, Y, h0 = _problem_args("rnn_tanh", seed=2, method="fd")
    where = locate_time_step(m.loss, missing_step(m, 2, "W_hh"), params, X, Y, h0, "W_hh", (0, 1))
    assert where.first_wrong == 3  # the step that reads X[2], counted from 1
    assert np.allclose(where.analytic[:2], where.numeric[:2], rtol=1e-6)  # steps t = 1, 2 agree
    # the per-step contributions add up to the full gradient (numeric side against the generated one)
    full = m.loss_and_grads(params, X, Y, h0)[1]["W_hh"][0, 1]
    assert where.numeric.sum() == pytest.approx(full, rel=1e-7)
    assert "first wrong at t = 3 (X[2]); t counts from 1" in str(where)
    right = locate_time_step(m.loss, m.loss_and_grads, params, X, Y, h0, "W_hh", (0, 1))
    assert right.first_wrong is None


# passing checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", NAMES)
def test_every_method_passes_every_variant(name, method):
    report = check_variant(name, method=method, seed=3)
    assert report.ok, str(report)
    if method == "taylor":
        assert all(e.rate >= 1.9 for e in report.entries), str(report)


@pytest.mark.parametrize("method", METHODS)
def test_token_inputs_are_checked_without_an_X_entry(method):
    report = check_variant("gru_reset_after", method=method, tokens=True, seed=4)
    assert report.ok, str(report)
    assert "X" not in [e.name for e in report.entries]


def test_taylor_rates_are_two_for_a_right_gradient_and_one_for_a_wrong_one():
    m = grusym.load("mgu")
    planted, _ = off_by_a_tenth_of_a_percent(m.loss_and_grads, key="W_hf")
    wrong = check_variant("mgu", method="taylor", seed=5, loss_and_grads=planted, localize=False)
    rates = {e.name: e.rate for e in wrong.entries}
    assert rates["W_hf"] == pytest.approx(1.0, abs=0.1)
    assert all(r == pytest.approx(2.0, abs=0.1) for k, r in rates.items() if k != "W_hf"), rates
    assert "Taylor rate 1.0" in wrong.worst.describe()


# special values: saturated pre-activations, one row per value; exceptions would live in the row -------

SPECIAL = [  # (pre-activation of every gate and candidate, methods expected to pass there)
    (30.0, METHODS),
    (-30.0, METHODS),
    (1000.0, METHODS),
    (-1000.0, METHODS),
]


@pytest.mark.parametrize(("value", "methods"), SPECIAL)
@pytest.mark.parametrize("name", NAMES)
def test_saturated_pre_activations(name, value, methods):
    m = grusym.load(name)
    rng = np.random.default_rng(6)
    params = m.init_params(2, 2, 3, seed=6, scale=0.01)
    for key in m.CELL_PARAMS:
        if params[key].ndim == 1:
            params[key][:] = value  # every pre-activation is value + O(0.01)
    params["b_q"] = rng.normal(size=3)
    params["W_hq"] = rng.normal(size=(2, 3))
    X, Y, h0 = rng.normal(size=(2, 1, 2)), rng.integers(0, 3, (2, 1)), rng.normal(0, 0.5, (1, 2))
    for method in methods:
        report = check_recurrent(m.loss, m.loss_and_grads, params, X, Y, h0, method=method, localize=False)
        assert report.ok, f"{method} at {value}:\n{report}"


# a user's own plain NumPy code ----------------------------------------------------------------------


class ElmanRNN:
    """A user's own tanh RNN with a softmax head, plain NumPy, hand-written BPTT; ``skip`` drops the
    parameter contributions of one time step (a planted bug). Complex-analytic for the complex step."""

    SPEC: ClassVar = {"U": ("d", "h"), "V": ("h", "h"), "c": ("h",), "Wo": ("h", "q"), "bo": ("q",)}

    def __init__(self, skip=None):
        self.skip = skip

    @staticmethod
    def _states(p, X, h0):
        H, h = [], h0
        for x in X:
            h = np.tanh(x @ p["U"] + h @ p["V"] + p["c"])
            H.append(h)
        return np.stack(H)

    def loss(self, p, X, Y, h0):
        logits = self._states(p, X, h0) @ p["Wo"] + p["bo"]
        shifted = logits - logits.real.max(axis=-1, keepdims=True)
        picked = np.take_along_axis(shifted, Y[..., None], axis=-1)[..., 0]
        return np.mean(np.log(np.exp(shifted).sum(axis=-1)) - picked)

    def loss_and_grads(self, p, X, Y, h0):
        H = self._states(p, X, h0)
        T, n, _ = H.shape
        logits = H @ p["Wo"] + p["bo"]
        prob = np.exp(logits - logits.max(axis=-1, keepdims=True))
        prob /= prob.sum(axis=-1, keepdims=True)
        loss = -np.mean(np.log(np.take_along_axis(prob, Y[..., None], axis=-1)))
        dlogits = (prob - np.eye(p["bo"].size)[Y]) / (T * n)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        g["Wo"] = np.einsum("tnh,tnq->hq", H, dlogits)
        g["bo"] = dlogits.sum(axis=(0, 1))
        dH = dlogits @ p["Wo"].T
        g["X"] = np.zeros_like(X)
        dh_next = np.zeros_like(h0)
        for t in reversed(range(T)):
            h_prev = H[t - 1] if t else h0
            da = (dH[t] + dh_next) * (1 - H[t] ** 2)
            if t != self.skip:
                g["U"] += X[t].T @ da
                g["V"] += h_prev.T @ da
                g["c"] += da.sum(axis=0)
            g["X"][t] = da @ p["U"].T
            dh_next = da @ p["V"].T
        g["h0"] = dh_next
        return loss, g, H[-1]


def _elman_problem(seed=7, T=4, n=2, d=3, h=3, q=4):
    rng = np.random.default_rng(seed)
    p = {
        "U": rng.normal(0, 0.8, (d, h)),
        "V": rng.normal(0, 0.8, (h, h)),
        "c": rng.normal(0, 0.3, h),
        "Wo": rng.normal(0, 1, (h, q)),
        "bo": rng.normal(0, 0.3, q),
    }
    return p, rng.normal(size=(T, n, d)), rng.integers(0, q, (T, n)), rng.normal(0, 0.5, (n, h))


@pytest.mark.parametrize("method", METHODS)
def test_a_users_own_rnn_passes_and_a_skipped_step_is_located(method):
    p, X, Y, h0 = _elman_problem()
    right = ElmanRNN()
    report = check_recurrent(right.loss, right.loss_and_grads, p, X, Y, h0, method=method)
    assert report.ok, str(report)
    buggy = ElmanRNN(skip=2)
    report = check_recurrent(buggy.loss, buggy.loss_and_grads, p, X, Y, h0, method=method)
    assert {e.name for e in report.failures} <= {"U", "V", "c"}
    assert report.failures and all(e.time_step == 3 for e in report.failures), str(report)  # X[2]: t = 3
    with pytest.raises(GradientCheckError, match=r"(U|V|c)\[[\d, ]+\]: analytic .* first wrong at t = 3"):
        report.raise_if_failed()


def _logistic(inputs):
    A, y = np.linspace(-1, 1, 15).reshape(5, 3), np.array([1, -1, 1, 1, -1])
    margin = y * (A @ inputs["w"] + inputs["b"])
    return A, y, margin


def _logistic_loss(inputs):
    return np.mean(np.log(1 + np.exp(-_logistic(inputs)[2])))


def _logistic_grad(inputs):
    A, y, margin = _logistic(inputs)
    s = -y / (1 + np.exp(margin)) / y.size
    return {"w": A.T @ s, "b": np.array(s.sum())}


@pytest.mark.parametrize("method", METHODS)
def test_a_users_plain_numpy_function(method):
    inputs = {"w": np.array([0.3, -1.2, 2.0]), "b": np.array(0.1)}
    assert check_gradients(_logistic_loss, _logistic_grad, inputs, method=method).ok

    def wrong(x):
        g = _logistic_grad(x)
        g["w"] = g["w"] * np.array([1, 1.001, 1])
        return g

    report = check_gradients(_logistic_loss, wrong, inputs, method=method)
    assert [e.name for e in report.failures] == ["w"] and report.worst.index == (1,)
    with pytest.raises(GradientCheckError, match=r"w\[1\]: analytic .* vs numeric"):
        report.raise_if_failed()
    assert inputs["w"].tolist() == [0.3, -1.2, 2.0]  # the caller's arrays are never modified


def test_auto_picks_directional_for_big_arrays():
    big = {"w": np.linspace(-1, 1, 5000)}
    report = check_gradients(
        lambda x: np.sum(np.sin(x["w"])), lambda x: {"w": np.cos(x["w"])}, big, method="auto"
    )
    assert report.method == "directional" and report.ok


# bad input gives grusym errors naming the argument -------------------------------------------------


def test_bad_input_is_reported():
    inputs = {"w": np.ones(3), "b": np.array(0.0)}
    with pytest.raises(InputError, match="unknown method 'bogus'"):
        check_gradients(_logistic_loss, _logistic_grad, inputs, method="bogus")
    with pytest.raises(InputError, match="oracle needs a variant"):
        check_gradients(_logistic_loss, _logistic_grad, inputs, method="oracle")
    with pytest.raises(InputError, match=r"wrt names \['v'\]"):
        check_gradients(_logistic_loss, _logistic_grad, inputs, wrt=["v"])
    with pytest.raises(InputError, match="no gradient for 'b'"):
        check_gradients(_logistic_loss, lambda x: {"w": np.ones(3)}, inputs)
    with pytest.raises(ShapeError, match=r"gradient of 'w' has shape \(2,\)"):
        check_gradients(_logistic_loss, lambda x: {"w": np.ones(2), "b": 0.0}, inputs)
    with pytest.raises(InputError, match=r"inputs\['w'\] holds NaN"):
        check_gradients(_logistic_loss, _logistic_grad, {"w": np.array([np.nan, 0, 0]), "b": 0.0})
    with pytest.raises(InputError, match=r"complex step refused: fun.* returned a real float"):
        check_gradients(lambda x: float(np.real(_logistic_loss(x))), _logistic_grad, inputs, method="complex")
    m = grusym.load("gru")
    with pytest.raises(InputError, match="'W_zz' is not a parameter"):
        locate_time_step(m.loss, m.loss_and_grads, *_problem_args("gru", seed=0, method="fd"), "W_zz", (0, 0))


def test_tolerances_live_in_one_table():
    assert set(ALL_METHODS) <= set(TOLERANCES)
    assert all(t.rtol > 0 and t.atol > 0 for m, t in TOLERANCES.items() if m != "taylor")
    assert TOLERANCES["taylor"] == (0, 0)  # taylor's verdict is its fitted error; rtol, atol only loosen it


# the command line ----------------------------------------------------------------------------------


def test_cli_prints_one_table_per_method_and_exit_codes(capsys):
    assert main(["gradcheck", "--variant", "rnn_tanh", "--method", ",".join(ALL_METHODS)]) == 0
    out = capsys.readouterr().out
    for method in ALL_METHODS:
        assert f"[rnn_tanh] gradient check ({method}," in out
    assert out.count("all gradients agree") == len(ALL_METHODS)
    assert main(["gradcheck", "--method", "fd,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_all_variants_all_methods(capsys):
    assert main(["gradcheck", "--all", "--method", ",".join(ALL_METHODS), "--scale", "3"]) == 0
    out = capsys.readouterr().out  # every built-in cell, lstm included
    assert out.count("all gradients agree") == len(CELLS) * len(ALL_METHODS) and "[lstm]" in out


# the measured resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1e-12, 1e-9, 1e-6])
def test_estimate_noise_finds_injected_noise(sigma):
    rng = np.random.default_rng(0)

    def noisy(x):  # a smooth function plus independent noise of known size at every call
        return float(np.sum(np.sin(x["w"])) + sigma * rng.standard_normal())

    found = estimate_noise(noisy, {"w": np.linspace(-1, 1, 5)})
    assert sigma / 3 <= found <= 3 * sigma


def test_estimate_noise_sees_float32_rounding_inside_a_float64_function():
    A = np.random.default_rng(1).normal(size=(6, 4))

    def clean(x):
        return float(np.sum(np.tanh(A @ x["w"]) ** 2))

    def rounded(x):  # one float32 cast in the middle
        return float(np.sum(np.tanh((A @ x["w"]).astype(np.float32)).astype(np.float64) ** 2))

    w = {"w": np.array([0.3, -0.2, 0.5, 0.1])}
    f0 = clean(w)
    assert estimate_noise(clean, w) < 1e-14 * f0
    assert 1e-9 * f0 < estimate_noise(rounded, w) < 1e-6 * f0
