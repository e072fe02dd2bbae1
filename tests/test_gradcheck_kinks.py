"""Kinks (relu, max) near the point: never taken for noise, never a FAIL of a right gradient, whatever the
distance; a wrong one still fails. And ``gradcheck --cell`` on the relu cells of the literature: every
method runs, a refusal does not stop the others, the exit status follows the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grusym.checks import check_gradients
from grusym.checks.noise import EPS, estimate_noise
from grusym.cli import main
from grusym.commands.gradcheck import _Outcome
from grusym.errors import InputError

from . import literature_cells

CELLS_FILE = literature_cells.__file__
DISTANCES = [0.0, 1e-15, 1e-12, 1e-9, 1e-7, 1e-5, 1e-4, 3e-4, 1e-3, 1e-2]


def _relu_problem(seed, distance, side):
    """f(w, b) = sum c relu(A w + b) + sum tanh(A w)^2 with pre-activation 0 at ``side * distance``."""
    rng = np.random.default_rng(seed)
    A, c = rng.normal(size=(5, 4)), rng.normal(size=5)
    w, b = rng.normal(size=4), rng.normal(size=5)
    j = int(rng.integers(5))
    b[j] = side * distance - A[j] @ w  # the kink of unit j sits this far from the point

    def f(w, b):
        z = A @ w + b
        return np.sum(c * np.maximum(z, 0)) + np.sum(np.tanh(A @ w) ** 2)

    def grad(w, b, factor=1.0):
        z = A @ w + b
        t = np.tanh(A @ w)
        dz = c * (z > 0)  # relu'(0) = 0
        dw = A.T @ dz + A.T @ (2 * t * (1 - t**2))
        dw[0] *= factor
        return dw, dz

    return f, grad, (w, b)


@given(
    distance=st.sampled_from(DISTANCES),
    side=st.sampled_from([-1.0, 1.0]),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(["fd", "directional", "complex", "taylor"]),
)
def test_a_right_gradient_is_never_failed_near_a_kink(distance, side, seed, method):
    f, grad, inputs = _relu_problem(seed, distance, side)
    # at exactly 0 the complex step takes the side its imaginary part points to (np.maximum compares
    # complex numbers lexicographically) and relu'(0) = 0 the other: judged one-sided, like fd
    report = check_gradients(f, grad, inputs, method=method)
    assert report.ok, str(report)


@given(distance=st.sampled_from(DISTANCES), side=st.sampled_from([-1.0, 1.0]), seed=st.integers(0, 10_000))
def test_a_wrong_gradient_near_a_kink_still_fails(distance, side, seed):
    f, grad, inputs = _relu_problem(seed, distance, side)

    def wrong(w, b):
        return grad(w, b, factor=1.01)

    report = check_gradients(f, wrong, inputs)
    assert [e.name for e in report.failures] == ["w"] and report.worst.index == (0,), str(report)
    right = grad(*inputs)[0]
    planted = 1e-2 * abs(right[0]) / np.mean(np.abs(right))  # per element of average size, as rows state
    for method in ("directional", "taylor"):  # FAIL, or a resolution that says it could not see it
        [entry] = [e for e in check_gradients(f, wrong, inputs, method=method).entries if e.name == "w"]
        assert not entry.ok or entry.resolution >= planted, str(entry)


def test_a_kink_within_the_probe_is_not_taken_for_float32_noise():
    # the noise probe moves x by up to 4e-4; a relu input of 1.2e-4 used to read as noise of ~1e-7
    f, _, (w, b) = _relu_problem(3, 1.2e-4, 1.0)
    noise = estimate_noise(lambda x: f(x["w"], x["b"]), {"w": w, "b": b})
    assert noise < 1e3 * EPS * abs(f(w, b))


# gradcheck --cell ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["irnn", "light_gru"])
@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_gradcheck_cell_never_fails_a_right_relu_cell(capsys, cell, seed):
    methods = "fd,directional,complex,taylor,oracle"
    code = main(["gradcheck", "--cell", f"{CELLS_FILE}:{cell}", "--method", methods, "--seed", str(seed)])
    out = capsys.readouterr().out
    assert code == 0 and out.count("all gradients agree") == 5, out  # light_gru at seed 0 used to FAIL


def test_a_refusal_is_reported_and_the_methods_after_it_still_run(capsys):
    def refuses():
        raise InputError("complex step refused: at cell.py:3 `abs(x)`")

    def agrees():
        return check_gradients(lambda x: np.sum(x**2), lambda x: 2 * x, (np.ones(3),))

    outcome = _Outcome()
    outcome.add("cell", "complex", refuses)
    outcome.add("cell", "fd", agrees)
    out = capsys.readouterr().out
    assert (
        "[cell] complex: refused: complex step refused: at cell.py:3" in out and "all gradients agree" in out
    )
    assert outcome.status() == 0  # a refusal alone does not fail the run while another method judged


def test_the_exit_status_is_2_when_every_method_refused_and_1_on_a_fail(capsys):
    def refuses():
        raise InputError("complex step refused")

    outcome = _Outcome()
    outcome.add("cell", "complex", refuses)
    assert outcome.status() == 2 and "nothing was checked" in capsys.readouterr().err
    outcome.add("cell", "fd", lambda: check_gradients(lambda x: np.sum(x**2), lambda x: 3 * x, (np.ones(3),)))
    assert outcome.status() == 1
