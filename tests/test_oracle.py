"""The symbolic oracle: built from the declared cells only, it agrees with the generated gradients of every
variant and with the independent tape autograd, and it stays within its size limits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import grusym
from grusym.errors import InputError
from grusym.gradcheck import TOLERANCES
from grusym.oracle import LIMITS, check_oracle, oracle_gradients, unrolled_loss
from grusym.symbolic.variants import VARIANTS

from . import reference_autograd

NAMES = list(VARIANTS)


@pytest.mark.parametrize("name", NAMES)
def test_oracle_agrees_with_every_generated_variant(name):
    report = check_oracle(name, seed=11)
    assert report.ok, str(report)
    assert report.worst.error <= TOLERANCES["oracle"].rtol
    m = grusym.load(name)
    assert [e.name for e in report.entries] == ["loss", *m.PARAMS, "h0", "X"]


@pytest.mark.parametrize("name", ["gru", "gru_reset_after"])
def test_oracle_with_token_inputs_and_saturated_gates(name):
    report = check_oracle(name, T=2, d=2, h=3, q=2, tokens=True, scale=3.0, seed=12)
    assert report.ok, str(report)
    assert "X" not in [e.name for e in report.entries]


def _reference_problem(name, seed=13, T=3, n=2, d=3, h=3, q=3):
    rng = np.random.default_rng(seed)
    m = grusym.load(name)
    # dyadic values: the oracle and the float64 tape see exactly the same point
    p = {k: np.round(rng.normal(size=v.shape) * 64) / 64 for k, v in m.init_params(d, h, q).items()}
    X = np.round(rng.normal(size=(T, n, d)) * 64) / 64
    h0 = np.round(rng.normal(0, 0.5, (n, h)) * 64) / 64
    return p, X, rng.integers(0, q, (T, n)), h0


@pytest.mark.parametrize("name", NAMES)
def test_oracle_agrees_with_the_independent_tape_autograd(name):
    """Two implementations that share only the declared equations: the symbolic unrolled loss and the tape."""
    p, X, Y, h0 = _reference_problem(name)
    value, grads, _ = oracle_gradients(name, p, X, Y, h0)
    tape_value, tape = reference_autograd.loss_and_grads(VARIANTS[name].cell(), p, X, Y, h0)
    assert value == pytest.approx(tape_value, rel=1e-13)
    for key, g in grads.items():
        np.testing.assert_allclose(tape[key], g, rtol=1e-9, atol=1e-13, err_msg=key)


def test_sympy_backend_agrees_with_symengine():
    p, X, Y, h0 = _reference_problem("gru", T=1, n=1, d=1, h=2, q=2)
    se_value, se_grads, _ = oracle_gradients("gru", p, X, Y, h0, backend="symengine")
    sp_value, sp_grads, _ = oracle_gradients("gru", p, X, Y, h0, backend="sympy")
    assert sp_value == pytest.approx(se_value, rel=1e-15)
    for key in se_grads:
        np.testing.assert_allclose(sp_grads[key], se_grads[key], rtol=1e-14, atol=1e-300, err_msg=key)


def test_unrolled_loss_has_one_symbol_per_element():
    loss, symbols = unrolled_loss("rnn_tanh", {"T": 2, "n": 1, "d": 2, "h": 2, "q": 3}, np.zeros((2, 1), int))
    assert {k: v.shape for k, v in symbols.items()} == {
        "W_xh": (2, 2), "W_hh": (2, 2), "b_h": (2,), "W_hq": (2, 3), "b_q": (3,), "h0": (1, 2), "X": (2, 1, 2)
    }  # fmt: skip
    free = {str(s) for s in loss.free_symbols}
    assert free == {str(s) for v in symbols.values() for s in v.reshape(-1)}


def test_oracle_limits_and_bad_input():
    for key, limit in LIMITS.items():
        with pytest.raises(InputError, match=rf"{key} must be in \[1, {limit}\]"):
            check_oracle("gru", **{key: limit + 1})
    with pytest.raises(InputError, match="unknown variant 'gru_x'"):
        unrolled_loss("gru_x", dict.fromkeys(LIMITS, 1), np.zeros((1, 1), int))  # lstm is built in now
    with pytest.raises(InputError, match="backend must be"):
        check_oracle("gru", T=1, backend="maple")


def test_oracle_shares_nothing_with_the_generator():
    """Building and differentiating the oracle never imports the derivation, the rules' users or codegen."""
    code = (
        "import sys; import numpy as np; from grusym.oracle import unrolled_loss;"
        "loss, symbols = unrolled_loss('gru', dict(T=2, n=1, d=2, h=2, q=2), np.zeros((2, 1), int));"
        "loss.diff(symbols['W_hh'][0, 0]);"
        "print(sorted(m for m in sys.modules if m.startswith('grusym')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "grusym.symbolic.derive" not in out and "grusym.symbolic.codegen" not in out, out
    assert "grusym.generated" not in out, out
