"""The generated cell-module API (API.md): h0=None, lengths, final_states, step, STATES/OUTPUT and its errors.

Lengths are checked against an independent computation: each sequence run alone, truncated to its own
length, without any lengths argument.
"""

from __future__ import annotations

import numpy as np
import pytest

import grusym
from grusym.errors import DTypeError, InputError, ShapeError
from grusym.generated import CELLS

NAMES = list(CELLS)
LENGTHS = np.array([4, 1, 3])  # unsorted, one of them full length


def _problem(name: str, tokens: bool = False, seed: int = 0):
    m = grusym.load(name)
    rng = np.random.default_rng(seed)
    T, n, d, h, q = 4, 3, 5, 4, 6
    p = m.init_params(d, h, q, seed=seed, scale=0.7)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.3, v.shape)) for k, v in p.items()}
    X = rng.integers(0, d, (T, n)) if tokens else rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    h0 = tuple(rng.normal(0, 0.5, (n, h)) for _ in m.STATES)
    return m, p, X, Y, (h0[0] if len(h0) == 1 else h0)


def _rows(state, i):
    return state[i : i + 1] if isinstance(state, np.ndarray) else tuple(s[i : i + 1] for s in state)


def _as_tuple(state):
    return (state,) if isinstance(state, np.ndarray) else tuple(state)


@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_lengths_equal_running_each_sequence_alone(name, tokens):
    m, p, X, Y, h0 = _problem(name, tokens)
    H, cache = m.forward(p, X, h0, lengths=LENGTHS)
    loss, grads, last = m.loss_and_grads(p, X, Y, h0, lengths=LENGTHS)
    assert np.isclose(m.loss(p, X, Y, h0, lengths=LENGTHS), loss, rtol=1e-13)
    total = LENGTHS.sum()
    per_sequence = {"X", *(f"{s}0" for s in m.STATES)}
    want_loss, want_grads = 0.0, {k: np.zeros_like(v) for k, v in grads.items() if k not in per_sequence}
    for i, L in enumerate(LENGTHS):
        Xi = X[:L, i : i + 1]
        Hi, ci = m.forward(p, Xi, _rows(h0, i))
        np.testing.assert_allclose(H[:L, i], Hi[:, 0], rtol=1e-13, atol=1e-15)
        assert not H[L:, i].any(), "H is zero after the sequence's end"
        for got, want in zip(_as_tuple(m.final_states(cache)), _as_tuple(m.final_states(ci)), strict=True):
            np.testing.assert_allclose(got[i], want[0], rtol=1e-13, atol=1e-15)
        for got, want in zip(_as_tuple(last), _as_tuple(m.final_states(ci)), strict=True):
            np.testing.assert_allclose(got[i], want[0], rtol=1e-13, atol=1e-15)
        li, gi, _ = m.loss_and_grads(p, Xi, Y[:L, i : i + 1], _rows(h0, i))
        weight = L / total  # the mean over sum(lengths) positions, from per-sequence means over L
        want_loss += weight * li
        for k in want_grads:
            want_grads[k] += weight * gi[k]
        for s in m.STATES:
            np.testing.assert_allclose(grads[f"{s}0"][i], weight * gi[f"{s}0"][0], rtol=1e-12, atol=1e-15)
        if not tokens:
            np.testing.assert_allclose(grads["X"][:L, i], weight * gi["X"][:, 0], rtol=1e-12, atol=1e-15)
            assert not grads["X"][L:, i].any()
    assert np.isclose(loss, want_loss, rtol=1e-13)
    for k, want in want_grads.items():
        np.testing.assert_allclose(grads[k], want, rtol=1e-11, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_backward_ignores_dH_at_padded_positions(name):
    m, p, X, _, h0 = _problem(name)
    _, cache = m.forward(p, X, h0, lengths=LENGTHS)
    rng = np.random.default_rng(1)
    dH = rng.normal(size=(4, 3, 4))
    noisy = dH.copy()
    for i, L in enumerate(LENGTHS):
        noisy[L:, i] = 1e3 * rng.normal(size=noisy[L:, i].shape)
    a, b = m.backward(p, cache, dH), m.backward(p, cache, noisy)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_full_lengths_and_no_lengths_agree(name):
    m, p, X, Y, h0 = _problem(name)
    full = np.full(3, 4)
    a, b = m.loss_and_grads(p, X, Y, h0), m.loss_and_grads(p, X, Y, h0, lengths=full)
    assert np.isclose(a[0], b[0], rtol=1e-14)
    for k in a[1]:
        np.testing.assert_allclose(a[1][k], b[1][k], rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name", NAMES)
def test_h0_none_means_zeros(name):
    m, p, X, Y, _ = _problem(name)
    zeros = tuple(np.zeros((3, 4)) for _ in m.STATES)
    h0 = zeros[0] if len(zeros) == 1 else zeros
    np.testing.assert_array_equal(m.forward(p, X)[0], m.forward(p, X, h0)[0])
    assert m.loss(p, X, Y) == m.loss(p, X, Y, h0)
    a, b = m.loss_and_grads(p, X, Y), m.loss_and_grads(p, X, Y, h0)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_step_is_forward_with_one_step(name, tokens):
    m, p, X, _, h0 = _problem(name, tokens)
    assert m.OUTPUT in m.STATES
    H, cache = m.forward(p, X, h0)
    state = h0
    for t in range(X.shape[0]):
        _, one = m.forward(p, X[t : t + 1], state)
        new = m.step(p, X[t], state)
        for got, want in zip(_as_tuple(new), _as_tuple(m.final_states(one)), strict=True):
            np.testing.assert_array_equal(got, want)
        state = new
        np.testing.assert_allclose(_as_tuple(state)[m.STATES.index(m.OUTPUT)], H[t], rtol=1e-14, atol=1e-16)
    for got, want in zip(_as_tuple(state), _as_tuple(m.final_states(cache)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-16)
    zeros = tuple(np.zeros((3, 4)) for _ in m.STATES)
    for got, want in zip(
        _as_tuple(m.step(p, X[0])),
        _as_tuple(m.step(p, X[0], zeros[0] if len(zeros) == 1 else zeros)),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


def _expect(call, error, *fragments):
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


BAD_LENGTHS = [
    ("zero", [4, 0, 3], InputError, ("lengths[1] = 0", "[1, T=4]")),
    ("too long", [4, 5, 3], InputError, ("lengths[1] = 5", "[1, T=4]")),
    ("wrong count", [4, 3], ShapeError, ("lengths", "(n=3,)", "(2,)")),
    ("2-D", [[4, 3, 1]], ShapeError, ("lengths", "(1, 3)")),
    ("floats", [4.0, 2.0, 1.0], DTypeError, ("lengths must be integers", "float64")),
    ("bools", [True, True, True], DTypeError, ("lengths must be integers", "bool")),
]


@pytest.mark.parametrize(
    ("label", "lengths", "error", "fragments"), BAD_LENGTHS, ids=[r[0] for r in BAD_LENGTHS]
)
@pytest.mark.parametrize("entry", ["forward", "loss", "loss_and_grads"])
def test_bad_lengths_are_named(entry, label, lengths, error, fragments):
    m, p, X, Y, h0 = _problem("gru")
    calls = {
        "forward": lambda: m.forward(p, X, h0, lengths),
        "loss": lambda: m.loss(p, X, Y, h0, lengths),
        "loss_and_grads": lambda: m.loss_and_grads(p, X, Y, h0, lengths),
    }
    _expect(calls[entry], error, *fragments)


def test_batch_first_X_is_named_as_the_layout_problem():
    """Issue 16.10: X in (n, T, d) with a right h0 must not blame h0 alone; it names the accepted layouts."""
    m = grusym.load("gru")
    p = m.init_params(5, 4, 6)
    X = np.zeros((20, 35, 5))  # batch-first: n = 20, T = 35
    _expect(lambda: m.forward(p, X, np.zeros((20, 4))), ShapeError, "batch-first", "(T, n, d)", "(T, n)")


def test_step_errors_name_the_one_step_layout():
    m = grusym.load("gru")
    p = m.init_params(5, 4, 6)
    _expect(lambda: m.step(p, np.zeros((3, 2, 5))), ShapeError, "x_t", "(n, d=5)", "(n,)")
    _expect(lambda: m.step(p, np.zeros((3, 5)), np.zeros((2, 4))), ShapeError, "(n=3, h=4)", "(2, 4)")


def test_final_states_rejects_what_is_not_a_cache():
    m = grusym.load("gru")
    _expect(lambda: m.final_states({"X": 1}), InputError, "missing ['H']")
    _expect(lambda: m.final_states([1, 2]), InputError, "cache must be the dict")
