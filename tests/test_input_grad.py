"""The input gradient grads["X"] is computed only when asked for, and never silently missing when asked."""

import numpy as np
import pytest

import grusym
from grusym.errors import InputError

VARIANTS = ["gru", "lstm"]


def _problem(m, seed=0):
    rng = np.random.default_rng(seed)
    p = m.init_params(5, 4, 5, seed=seed, scale=0.5)
    ids = rng.integers(0, 5, (3, 2))
    return p, ids, np.eye(5)[ids], rng.integers(0, 5, (3, 2))


@pytest.mark.parametrize("name", VARIANTS)
def test_float_inputs_get_dx_by_default_and_skip_it_when_declined(name):
    m = grusym.load(name)
    p, _, X, Y = _problem(m)
    value, full, _ = m.loss_and_grads(p, X, Y)
    value_no, lean, _ = m.loss_and_grads(p, X, Y, input_grad=False)
    assert "X" in full and full["X"].shape == X.shape and "X" not in lean
    assert value_no == value and set(full) - set(lean) == {"X"}
    for k, g in lean.items():
        np.testing.assert_array_equal(g, full[k])
    H, cache = m.forward(p, X)
    dH = np.ones_like(H)
    assert "X" in m.backward(p, cache, dH) and "X" not in m.backward(p, cache, dH, input_grad=False)
    asked = m.backward(p, cache, dH, input_grad=True)["X"]
    np.testing.assert_array_equal(asked, m.backward(p, cache, dH)["X"])


@pytest.mark.parametrize("name", VARIANTS)
def test_asking_for_dx_of_token_ids_is_an_error_not_a_missing_key(name):
    m = grusym.load(name)
    p, ids, _, Y = _problem(m)
    assert "X" not in m.loss_and_grads(p, ids, Y)[1]
    with pytest.raises(InputError, match="token ids have no gradient"):
        m.loss_and_grads(p, ids, Y, input_grad=True)
    _, cache = m.forward(p, ids)
    with pytest.raises(InputError, match="token ids have no gradient"):
        m.backward(p, cache, np.ones((3, 2, 4)), input_grad=True)


def test_input_grad_must_be_a_flag():
    m = grusym.load("gru")
    p, _, X, Y = _problem(m)
    with pytest.raises(InputError, match="input_grad must be True, False or None, got str"):
        m.loss_and_grads(p, X, Y, input_grad="yes")
