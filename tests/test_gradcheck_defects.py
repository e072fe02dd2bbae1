"""Regression tests for the checker's defects on foreign code (issue 12); each failed before its fix.

They use only the original API (dict inputs, ``check_recurrent(loss, loss_and_grads, params, X, Y, h0)``),
so the same file runs against the old checker and shows the defect."""

from __future__ import annotations

import numpy as np
import pytest

from grusym.checks import Entry, GradientReport
from grusym.errors import GradientCheckError, InputError
from grusym.gradcheck import check_gradients, check_recurrent

RNG = np.random.default_rng(12)
A = RNG.normal(size=(6, 4))
W0 = RNG.normal(size=4)


def _tanh_loss(x):
    return np.sum(np.tanh(A @ x["w"]) ** 2)


def _tanh_grad(x):
    t = np.tanh(A @ x["w"])
    return {"w": A.T @ (2 * t * (1 - t**2))}


# 1. the complex step through real buffers, silent losses and user code that raises ---------------------


def _buffered_loss(x):
    h = np.zeros(6)
    h[:] = np.tanh(A @ x["w"])  # a preallocated real buffer: the imaginary part is discarded here
    return np.sum(h**2)


def _out_buffer_loss(x):
    out = np.empty((2, 3))
    for t in range(2):
        out[t] = np.tanh(A[3 * t : 3 * t + 3] @ x["w"])
    return np.sum(out**2)


@pytest.mark.parametrize("fun", [_buffered_loss, _out_buffer_loss])
def test_complex_step_refuses_code_that_stores_into_real_buffers(fun):
    with pytest.raises(InputError, match=r"complex step refused: .*ComplexWarning.*method='fd'"):
        check_gradients(fun, _tanh_grad, {"w": W0}, method="complex")
    assert check_gradients(fun, _tanh_grad, {"w": W0}, method="fd").ok  # the gradient itself is right


def test_complex_step_refuses_a_silent_loss_of_the_imaginary_part():
    def fun(x):  # abs() drops the imaginary part of its argument, the result stays complex
        return np.sum(x["w"] * np.abs(x["w"]))

    def grad(x):
        return {"w": 2 * np.abs(x["w"])}

    inputs = {"w": np.array([0.5, 1.5, 2.0])}
    with pytest.raises(InputError, match=r"complex step refused: .*imaginary part is wrong.*method='fd'"):
        check_gradients(fun, grad, inputs, method="complex")
    assert check_gradients(fun, grad, inputs, method="fd").ok


def test_complex_step_names_what_it_saw_when_fun_returns_a_real():
    with pytest.raises(InputError) as info:
        check_gradients(lambda x: float(np.real(_tanh_loss(x))), _tanh_grad, {"w": W0}, method="complex")
    message = str(info.value)
    assert "returned a real float" in message and "method='fd'" in message
    assert "no abs, max, comparisons" not in message  # causes that were not observed are not blamed


def test_user_code_that_raises_because_its_input_is_complex_is_refused_naming_the_line():
    def fun(x):
        acc = np.zeros(6)
        acc += A @ x["w"]  # complex into a float array in place: NumPy raises
        return np.sum(np.tanh(acc) ** 2)

    with pytest.raises(
        InputError, match=r"complex step refused: .*test_gradcheck_defects.py:\d+ `acc \+= A @"
    ) as info:
        check_gradients(fun, _tanh_grad, {"w": W0}, method="complex")
    assert "in-place update of a real array" in str(info.value) and "method='fd'" in str(info.value)


def test_user_code_that_raises_for_another_reason_is_reraised_with_a_note():
    def fun(x):
        assert not np.iscomplexobj(x["w"]), "no complex here"
        return _tanh_loss(x)

    with pytest.raises(AssertionError) as info:
        check_gradients(fun, _tanh_grad, {"w": W0}, method="complex")
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "complex step" in notes and "method='fd'" in notes and "test_gradcheck_defects.py:" in notes


# 2. functions noisier than float64 ---------------------------------------------------------------------


def _float32_problem(seed, n=4):
    """f(w) = sum tanh(A w)^2 through float32 arithmetic behind a float64 interface; its float64 gradient."""
    rng = np.random.default_rng(seed)
    A, w = rng.normal(size=(8 if n > 4 else 6, n)), rng.normal(size=n)
    A32 = A.astype(np.float32)

    def fun(x):
        return float(np.sum(np.tanh(A32 @ x["w"].astype(np.float32)) ** 2))

    def grad(x, k=None, factor=1.0):
        t = np.tanh(A @ x["w"])
        g = A.T @ (2 * t * (1 - t**2))
        if k is not None:
            g[k] *= factor
        return {"w": g}

    return fun, grad, {"w": w}


@pytest.mark.parametrize("method", ["fd", "directional"])
@pytest.mark.parametrize("seed", [0, 11, 29])
def test_a_right_gradient_of_float32_arithmetic_passes(method, seed):
    fun, grad, inputs = _float32_problem(seed)
    report = check_gradients(fun, grad, inputs, method=method)
    assert report.ok, str(report)


def test_a_planted_error_in_float32_arithmetic_is_found_at_its_element():
    fun, grad, inputs = _float32_problem(0)
    report = check_gradients(fun, lambda x: grad(x, k=2, factor=1.001), inputs, method="fd")
    assert not report.ok and report.worst.index == (2,), str(report)


def test_taylor_never_passes_an_error_above_the_resolution_it_states():
    fun, grad, inputs = _float32_problem(11)
    for factor in (1.001, 1.05):
        report = check_gradients(fun, lambda x, f=factor: grad(x, k=2, factor=f), inputs, method="taylor")
        [entry] = report.entries
        # FAIL, or ok stating a resolution coarser than the planted error: never a silent pass
        assert not entry.ok or entry.resolution >= factor - 1, str(report)
    assert not report.ok  # 5 % is well above what the sweep resolves in float32


def test_taylor_passes_a_right_float32_gradient_when_the_sweep_shows_the_rate():
    fun, grad, inputs = _float32_problem(0)  # the old sweep, started at e = 1e-2, never left the noise
    report = check_gradients(fun, grad, inputs, method="taylor")
    [entry] = report.entries
    assert report.ok and entry.rate == pytest.approx(2, abs=0.1) and entry.resolution < 1e-1, str(report)


def test_an_inconclusive_row_is_never_a_fail():
    open_ = Entry(
        "w", (), 1.0, 1.0, 0.0, False, 2, projected=True, inconclusive="the sweep stayed in the noise"
    )
    report = GradientReport("taylor", 0.2, [open_, Entry("b", (0,), 1.0, 1.0, 0.0, True, 1)])
    assert "FAIL" not in str(report) and "1 of 2 inconclusive" in str(report)
    with pytest.raises(GradientCheckError, match=r"could not decide: w along 2 random directions") as info:
        report.raise_if_failed()
    assert "failed" not in str(info.value)


# 3. tolerances that work forwards ----------------------------------------------------------------------


def _tiny_element_problem(offset):
    """f = sum(w[:3]^2) + 1e-9 w[3]: the last gradient element is 1e-9; the planted error is absolute."""

    def fun(x):
        return np.sum(x["w"][:3] ** 2) + 1e-9 * x["w"][3]

    def grad(x):
        return {"w": np.concatenate([2 * x["w"][:3], [1e-9 + offset]])}

    return fun, grad, {"w": np.array([0.3, -0.7, 1.1, 0.2])}


def test_loosening_a_tolerance_never_moves_the_printed_error_and_only_turns_fail_into_ok():
    fun, grad, inputs = _tiny_element_problem(1e-8)
    previous_ok = False
    for rtol in (1e-7, 1e-5, 1e-4, 1e-3):
        report = check_gradients(fun, grad, inputs, rtol=rtol, atol=1e-12)
        entry = report.entries[0]
        assert entry.index == (3,)
        assert entry.error == pytest.approx(abs(1e-8) / (1e-9 + 1e-8), rel=1e-3)  # |a - n| / max(|a|, |n|)
        assert report.ok >= previous_ok
        previous_ok = report.ok


def test_atol_decides_for_elements_near_zero():
    fun, grad, inputs = _tiny_element_problem(1e-8)
    assert not check_gradients(fun, grad, inputs, rtol=1e-5, atol=1e-12).ok
    assert check_gradients(fun, grad, inputs, rtol=1e-5, atol=1e-6).ok


# 4. a Taylor row prints the rate its verdict used ------------------------------------------------------


def _taylor_rows(report):
    """(printed rate, verdict) of every row of the table (the columns before it: rate, resolves, verdict)."""
    rows = str(report).splitlines()[2 : 2 + len(report.entries)]
    return [(float(r.split()[-3]) if r.split()[-3] != "-" else None, r.split()[-1]) for r in rows]


def test_a_failing_taylor_row_shows_a_failing_rate():
    B = RNG.normal(size=(5, 5))

    def fun(x):
        return np.sum(np.tanh(x["W"] @ B) ** 2)

    def grad(x):  # transposed: wrong off the diagonal only
        t = np.tanh(x["W"] @ B)
        return {"W": ((2 * t * (1 - t**2)) @ B.T).T}

    report = check_gradients(fun, grad, {"W": RNG.normal(size=(5, 5)) * 0.5}, method="taylor")
    [(rate, verdict)] = _taylor_rows(report)
    assert verdict == "FAIL" and rate < 2 - report.rtol, str(report)


def test_a_right_gradient_in_float32_noise_is_never_a_fail_row_with_a_passing_rate():
    fun, grad, inputs = _float32_problem(29, n=11)  # the old checker printed FAIL next to rate 2.05 here
    report = check_gradients(fun, grad, inputs, method="taylor")
    [(rate, verdict)] = _taylor_rows(report)
    assert verdict == "ok" and rate >= 1.8, str(report)  # a rate of 2 is a right gradient


# 5. messages name the function the user passed --------------------------------------------------------


def test_check_recurrent_names_loss_and_grads_in_its_messages():
    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(2, 2))}
    X, Y, h0 = rng.normal(size=(3, 1, 2)), rng.integers(0, 2, (3, 1)), rng.normal(size=(1, 2))

    def loss(p, X, Y, h0):
        return float(np.sum(np.tanh(X @ p["W"])))

    def my_loss_and_grads(p, X, Y, h0):
        t = np.tanh(X @ p["W"])
        return loss(p, X, Y, h0), {"W": np.einsum("tnd,tnh->dh", X, 1 - t**2)}

    with pytest.raises(InputError, match=r"^loss_and_grads .*returned no gradient for 'h0'"):
        check_recurrent(loss, my_loss_and_grads, params, X, Y, h0)
