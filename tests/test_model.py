"""Whole models (grusym.model) without any framework: padding against each sequence run alone, gradients
against finite differences, streaming against forward, layouts against each other, and bad input.

torch's own nn.GRU is the reference in tests/test_torch_crosscheck.py; here the checks are properties an
independent computation gives: a padded sequence must compute what it computes alone, unpadded.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import grusym
from grusym.errors import DTypeError, InputError, ParameterError, ShapeError
from grusym.model import Model

D, H, Q = 3, 4, 5
STRUCTURES = [  # (num_layers, bidirectional, batch_first)
    (1, False, True),
    (2, False, False),
    (1, True, False),
    (2, True, True),
    (3, True, False),
]
LENGTHS = np.array([5, 1, 3, 4])  # unsorted, one full, one of length 1


def _ids(s):
    return f"{s[0]}layer-{'bi' if s[1] else 'uni'}-{'nT' if s[2] else 'Tn'}"


def _model(structure, name="gru_reset_after"):
    return grusym.load(name, *structure)


def _problem(m, T=5, n=4, tokens=False, seed=0):
    rng = np.random.default_rng(seed)
    p = m.init_params(D, H, Q, seed=seed, scale=0.6)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.3, v.shape)) for k, v in p.items()}
    X = rng.integers(0, D, (T, n)) if tokens else rng.normal(size=(T, n, D))
    Y = rng.integers(0, Q, (T, n))
    k = m.structure.num_layers * len(m.structure.directions)
    h0 = rng.normal(0, 0.5, (k, n, H))
    if m.structure.batch_first:
        X, Y = X.swapaxes(0, 1), Y.swapaxes(0, 1)
    return p, X, Y, h0


def _seq(m, a, i, L):
    """Sequence i of a batch, cut to its first L steps, as a batch of one in the model's layout."""
    return a[i : i + 1, :L] if m.structure.batch_first else a[:L, i : i + 1]


def test_defaults_return_the_generated_module_itself():
    assert grusym.load("gru") is importlib.import_module("grusym.generated.gru")
    assert isinstance(grusym.load("gru", batch_first=True), Model)


def test_a_batch_first_cell_is_the_module_on_transposed_data():
    m, cell = grusym.load("gru", batch_first=True), grusym.load("gru")
    p = cell.init_params(D, H, Q, seed=1, scale=0.5)
    assert all(np.array_equal(p[k], v) for k, v in m.init_params(D, H, Q, seed=1, scale=0.5).items())
    X = np.random.default_rng(1).normal(size=(4, 6, D))  # (n, T, d)
    Hm, cm = m.forward(p, X)
    Hc, cc = cell.forward(p, X.swapaxes(0, 1))
    assert np.array_equal(Hm, Hc.swapaxes(0, 1))
    assert np.array_equal(m.final_states(cm)[0], cell.final_states(cc))


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token-ids"])
@pytest.mark.parametrize("structure", STRUCTURES, ids=_ids)
def test_a_padded_batch_computes_what_each_sequence_computes_alone(structure, tokens):
    m = _model(structure)
    p, X, Y, h0 = _problem(m, tokens=tokens)
    Hb, cache = m.forward(p, X, h0, LENGTHS)
    last = m.final_states(cache)
    loss, grads, last2 = m.loss_and_grads(p, X, Y, h0, LENGTHS)
    assert np.array_equal(last, last2)
    assert np.isclose(m.loss(p, X, Y, h0, LENGTHS), loss, rtol=1e-13)
    want_loss, want = 0.0, {k: np.zeros_like(v) for k, v in grads.items() if k not in ("h0", "X")}
    total = LENGTHS.sum()
    for i, L in enumerate(LENGTHS):
        Hi, ci = m.forward(p, _seq(m, X, i, L), h0[:, i : i + 1])
        np.testing.assert_allclose(_seq(m, Hb, i, L), Hi, rtol=1e-12, atol=1e-14)
        assert not (Hb[i, L:] if m.structure.batch_first else Hb[L:, i]).any(), "zero after the end"
        np.testing.assert_allclose(last[:, i], m.final_states(ci)[:, 0], rtol=1e-12, atol=1e-14)
        li, gi, _ = m.loss_and_grads(p, _seq(m, X, i, L), _seq(m, Y, i, L), h0[:, i : i + 1])
        want_loss += L / total * li
        for k in want:
            want[k] += L / total * gi[k]
        np.testing.assert_allclose(grads["h0"][:, i], L / total * gi["h0"][:, 0], rtol=1e-10, atol=1e-15)
        if not tokens:
            got_x = _seq(m, grads["X"], i, L)
            np.testing.assert_allclose(got_x, L / total * gi["X"], rtol=1e-10, atol=1e-15)
            pad = grads["X"][i, L:] if m.structure.batch_first else grads["X"][L:, i]
            assert not pad.any(), "padded inputs get no gradient"
    assert np.isclose(loss, want_loss, rtol=1e-12)
    for k, v in want.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-9, atol=1e-14, err_msg=k)


@pytest.mark.parametrize(
    ("structure", "lengths", "method"),
    [
        ((2, True, True), LENGTHS, "fd"),
        ((2, True, True), None, "directional"),
        ((2, False, False), LENGTHS, "fd"),
    ],
    ids=["2layer-bi-nT-padded-fd", "2layer-bi-nT-full-directional", "2layer-uni-Tn-padded-fd"],
)
def test_gradients_match_finite_differences(structure, lengths, method):
    # batch-first X is a transposed view here: gradcheck must perturb a C-ordered copy (regression)
    m = _model(structure)
    p, X, Y, h0 = _problem(m, T=5, n=4)

    def split(x):
        return {k: x[k] for k in p}, x["X"], x["h0"]

    def fun(x):
        q, Xq, hq = split(x)
        return m.loss(q, Xq, Y, hq, lengths)

    def grad_fun(x):
        q, Xq, hq = split(x)
        return m.loss_and_grads(q, Xq, Y, hq, lengths)[1]

    report = grusym.check_gradients(fun, grad_fun, {**p, "X": X, "h0": h0}, method=method)
    report.raise_if_failed()
    assert {e.name for e in report.entries} == {*p, "X", "h0"}


@pytest.mark.parametrize("name", ["gru", "mgu"])
def test_backward_is_the_gradient_of_sum_dH_times_H(name):
    """backward alone (dH from outside) against finite differences of sum(dH * H)."""
    m = grusym.load(name, num_layers=2, bidirectional=True)
    p, X, _, h0 = _problem(m)
    dH = np.random.default_rng(7).normal(size=(5, 4, 2 * H))

    def fun(x):
        return float(np.sum(dH * m.forward({k: x[k] for k in p}, x["X"], x["h0"], LENGTHS)[0]))

    def grad_fun(x):
        q = {k: x[k] for k in p}
        return m.backward(q, m.forward(q, x["X"], x["h0"], LENGTHS)[1], dH)

    grusym.check_gradients(fun, grad_fun, {**p, "X": X, "h0": h0}, method="directional").raise_if_failed()


@pytest.mark.parametrize("batch_first", [False, True])
def test_step_streams_what_forward_computes(batch_first):
    m = grusym.load("gru_reset_after", num_layers=3, batch_first=batch_first)
    p, X, _, h0 = _problem(m, T=6, n=2)
    Hf, cache = m.forward(p, X, h0)
    state = h0
    for t in range(6):
        state = m.step(p, X[:, t] if batch_first else X[t], state)
        np.testing.assert_allclose(state[-1], Hf[:, t] if batch_first else Hf[t], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state, m.final_states(cache), rtol=1e-13, atol=1e-15)
    assert m.step(p, X[:, 0] if batch_first else X[0]).shape == (3, 2, H)  # state None: zeros


def test_layers_see_the_concatenated_directions_below():
    """A 2-layer bidirectional model is two 1-layer bidirectional models, the second fed the first's H."""
    deep, shallow = grusym.load("gru", 2, True), grusym.load("gru", 1, True)
    p, X, _, h0 = _problem(deep)
    lower = {k.replace("_l0", "_l0"): v for k, v in p.items() if "_l0" in k}
    upper = {k.replace("_l1", "_l0"): v for k, v in p.items() if "_l1" in k}
    head = {"W_hq": p["W_hq"], "b_q": p["b_q"]}
    H1, c1 = shallow.forward({**lower, **head}, X, h0[:2], LENGTHS)
    H2, c2 = shallow.forward({**upper, **head}, H1, h0[2:], LENGTHS)
    Hd, cd = deep.forward(p, X, h0, LENGTHS)
    assert np.array_equal(Hd, H2)
    assert np.array_equal(
        deep.final_states(cd), np.concatenate([shallow.final_states(c1), shallow.final_states(c2)])
    )


def test_init_params_names_and_shapes_follow_torch():
    m = grusym.load("gru", num_layers=2, bidirectional=True)
    p = m.init_params(D, H, Q, seed=3)
    assert p["W_xz_l0"].shape == (D, H) and p["W_xz_l1_reverse"].shape == (2 * H, H)
    assert p["W_hq"].shape == (2 * H, Q)
    assert list(p) == list(m.PARAMS)
    again = m.init_params(D, H, Q, seed=3)
    assert all(np.array_equal(p[k], again[k]) for k in p)
    assert not np.array_equal(p["W_xz_l0"], p["W_xz_l0_reverse"])  # each cell draws its own weights


def _bad_model():
    m = grusym.load("gru_reset_after", num_layers=2, bidirectional=True, batch_first=True)
    p, X, Y, h0 = _problem(m)
    return m, p, X, Y, h0


BAD = [  # (call on (m, p, X, Y, h0), error, words the message must contain)
    (
        lambda m, p, X, Y, h0: m.forward(p, X, h0[:2]),
        ShapeError,
        ["h0", "(num_layers * num_directions = 4", "(2,"],
    ),
    (lambda m, p, X, Y, h0: m.forward(p, X, h0[0]), ShapeError, ["h0", "= 4", "got (4, 4)"]),
    (
        lambda m, p, X, Y, h0: m.forward(p, X, lengths=[5, 0, 3, 4]),
        InputError,
        ["lengths[1] = 0", "[1, T=5]"],
    ),
    (
        lambda m, p, X, Y, h0: m.forward(p, X, lengths=[5, 6, 3, 4]),
        InputError,
        ["lengths[1] = 6", "[1, T=5]"],
    ),
    (lambda m, p, X, Y, h0: m.forward(p, X, lengths=[5, 3]), ShapeError, ["lengths", "(n=4,)", "(2,)"]),
    (lambda m, p, X, Y, h0: m.forward(p, X, lengths=[5.0, 1, 3, 4]), DTypeError, ["lengths", "float64"]),
    (
        lambda m, p, X, Y, h0: m.forward({k: v for k, v in p.items() if "_l1" not in k}, X),
        ParameterError,
        ["2-layer bidirectional", "missing", "W_xz_l1"],
    ),
    (
        lambda m, p, X, Y, h0: m.forward(grusym.load("gru").init_params(D, H, Q), X),
        ParameterError,
        ["missing", "unexpected", "single cell"],
    ),
    (
        lambda m, p, X, Y, h0: m.forward({**p, "W_xz_l1": np.ones((H, H))}, X),
        ShapeError,
        ["o = 8", "o = 4"],
    ),
    (lambda m, p, X, Y, h0: m.step(p, X[:, 0]), InputError, ["step", "unidirectional", "bidirectional"]),
    (lambda m, p, X, Y, h0: m.backward(p, {"H": 1}, X), InputError, ["cache", "this model's forward"]),
    (lambda m, p, X, Y, h0: m.loss(p, X, Y.T), ShapeError, ["Y"]),
    (lambda m, p, X, Y, h0: m.forward(p, X[0]), ShapeError, ["X"]),
    (lambda m, p, X, Y, h0: grusym.load("gru", num_layers=0), InputError, ["num_layers", "0"]),
    (lambda m, p, X, Y, h0: grusym.load("gru", bidirectional="yes"), InputError, ["bidirectional", "'yes'"]),
]


@pytest.mark.parametrize(("call", "error", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_a_grusym_error_naming_it(call, error, words):
    with pytest.raises(error) as info:
        call(*_bad_model())
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_padded_targets_may_hold_anything():
    """Targets past a sequence's end are never read (torch pads them with ignore_index = -100)."""
    m = _model((2, True, True))
    p, X, Y, h0 = _problem(m)
    Yp = Y.copy()
    for i, L in enumerate(LENGTHS):
        Yp[i, L:] = -100
    assert m.loss_and_grads(p, X, Yp, h0, LENGTHS)[0] == m.loss_and_grads(p, X, Y, h0, LENGTHS)[0]
