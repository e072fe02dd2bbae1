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
    h0 = tuple(rng.normal(0, 0.5, (k, n, H)) for _ in m.STATES)
    if m.structure.batch_first:
        X, Y = X.swapaxes(0, 1), Y.swapaxes(0, 1)
    return p, X, Y, (h0[0] if len(h0) == 1 else h0)


def _states(s):
    """A state stack, or a tuple of them (multi-state cells), as a tuple."""
    return (s,) if isinstance(s, np.ndarray) else tuple(s)


def _batch(s, i):
    """Sequence i's states, as a batch of one, in the form the model takes."""
    parts = tuple(a[:, i : i + 1] for a in _states(s))
    return parts[0] if len(parts) == 1 else parts


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


CELLS = ["gru_reset_after", "lstm"]  # one single-state cell, one with two states


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token-ids"])
@pytest.mark.parametrize("structure", STRUCTURES, ids=_ids)
@pytest.mark.parametrize("name", CELLS)
def test_a_padded_batch_computes_what_each_sequence_computes_alone(name, structure, tokens):
    _check_padding(_model(structure, name), tokens)


@pytest.mark.parametrize("cell", ["peephole_lstm", "mingru"])
def test_a_users_cell_stacks_like_a_built_in(cell):
    """A cell declared in a user's file (grusym/examples/cells), derived in memory: no name of it anywhere."""
    from pathlib import Path

    from grusym.model import build
    from grusym.symbolic.usercell import derive_module, load_cell

    path = Path(grusym.__file__).parent / "examples" / "cells" / f"{cell}.py"
    module = derive_module(load_cell(f"{path}:{cell}"))
    _check_padding(build(module, 2, ("forward", "reverse"), batch_first=True), tokens=False)


def _check_padding(m, tokens):
    p, X, Y, h0 = _problem(m, tokens=tokens)
    Hb, cache = m.forward(p, X, h0, LENGTHS)
    last = _states(m.final_states(cache))
    loss, grads, last2 = m.loss_and_grads(p, X, Y, h0, LENGTHS)
    assert all(np.array_equal(a, b) for a, b in zip(last, _states(last2), strict=True))
    assert np.isclose(m.loss(p, X, Y, h0, LENGTHS), loss, rtol=1e-13)
    initial = [s + "0" for s in m.STATES]
    want_loss, want = 0.0, {k: np.zeros_like(v) for k, v in grads.items() if k not in (*initial, "X")}
    total = LENGTHS.sum()
    for i, L in enumerate(LENGTHS):
        Hi, ci = m.forward(p, _seq(m, X, i, L), _batch(h0, i))
        np.testing.assert_allclose(_seq(m, Hb, i, L), Hi, rtol=1e-12, atol=1e-14)
        assert not (Hb[i, L:] if m.structure.batch_first else Hb[L:, i]).any(), "zero after the end"
        for got, alone in zip(last, _states(m.final_states(ci)), strict=True):
            np.testing.assert_allclose(got[:, i], alone[:, 0], rtol=1e-12, atol=1e-14)
        li, gi, _ = m.loss_and_grads(p, _seq(m, X, i, L), _seq(m, Y, i, L), _batch(h0, i))
        want_loss += L / total * li
        for k in want:
            want[k] += L / total * gi[k]
        for k in initial:
            np.testing.assert_allclose(grads[k][:, i], L / total * gi[k][:, 0], rtol=1e-10, atol=1e-15)
        if not tokens:
            got_x = _seq(m, grads["X"], i, L)
            np.testing.assert_allclose(got_x, L / total * gi["X"], rtol=1e-10, atol=1e-15)
            pad = grads["X"][i, L:] if m.structure.batch_first else grads["X"][L:, i]
            assert not pad.any(), "padded inputs get no gradient"
    assert np.isclose(loss, want_loss, rtol=1e-12)
    for k, v in want.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-9, atol=1e-14, err_msg=k)


@pytest.mark.parametrize(
    ("name", "structure", "lengths", "method"),
    [
        ("gru_reset_after", (2, True, True), LENGTHS, "fd"),
        ("gru_reset_after", (2, True, True), None, "directional"),
        ("gru_reset_after", (2, False, False), LENGTHS, "fd"),
        ("lstm", (2, True, True), LENGTHS, "directional"),
        pytest.param("lstm", (2, True, True), LENGTHS, "fd", marks=pytest.mark.slow),
    ],
    ids=[
        "gru-2layer-bi-nT-padded-fd",
        "gru-2layer-bi-nT-full-directional",
        "gru-2layer-uni-Tn-padded-fd",
        "lstm-2layer-bi-nT-padded-directional",
        "lstm-2layer-bi-nT-padded-fd",
    ],
)
def test_gradients_match_finite_differences(name, structure, lengths, method):
    # batch-first X is a transposed view here: gradcheck must perturb a C-ordered copy (regression)
    m = _model(structure, name)
    p, X, Y, h0 = _problem(m, T=5, n=4)
    initial = [s + "0" for s in m.STATES]

    def split(x):
        states = tuple(x[k] for k in initial)
        return {k: x[k] for k in p}, x["X"], (states[0] if len(states) == 1 else states)

    def fun(x):
        q, Xq, hq = split(x)
        return m.loss(q, Xq, Y, hq, lengths)

    def grad_fun(x):
        q, Xq, hq = split(x)
        return m.loss_and_grads(q, Xq, Y, hq, lengths)[1]

    inputs = {**p, "X": X, **dict(zip(initial, _states(h0), strict=True))}
    report = grusym.check_gradients(fun, grad_fun, inputs, method=method)
    report.raise_if_failed()
    assert {e.name for e in report.entries} == set(inputs)


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
@pytest.mark.parametrize("name", CELLS)
def test_step_streams_what_forward_computes(name, batch_first):
    m = grusym.load(name, num_layers=3, batch_first=batch_first)
    p, X, _, h0 = _problem(m, T=6, n=2)
    Hf, cache = m.forward(p, X, h0)
    out = m.STATES.index(m.OUTPUT)
    state = h0
    for t in range(6):
        state = m.step(p, X[:, t] if batch_first else X[t], state)
        top = _states(state)[out][-1]
        np.testing.assert_allclose(top, Hf[:, t] if batch_first else Hf[t], rtol=1e-13, atol=1e-15)
    for got, want in zip(_states(state), _states(m.final_states(cache)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    fresh = _states(m.step(p, X[:, 0] if batch_first else X[0]))  # state None: zeros
    assert [a.shape for a in fresh] == [(3, 2, H)] * len(m.STATES)


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


def _lstm():
    return grusym.load("lstm", num_layers=2, bidirectional=True, batch_first=True)


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
    (
        lambda m, p, X, Y, h0: _lstm().forward(_lstm().init_params(D, H, Q), X, h0),
        InputError,
        ["tuple of 2 stacks", "h0, c0", "(4, 4, 4)"],
    ),
    (
        lambda m, p, X, Y, h0: _lstm().forward(_lstm().init_params(D, H, Q), X, (h0, h0[:2])),
        ShapeError,
        ["c0", "= 4", "got (2, 4, 4)"],
    ),
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


def test_the_bench_times_whole_models():
    from grusym import bench

    result = bench.run("toy", "float64", ["gru"], repeat=1, torch=None, extras=False, pause=0, models=True,
                       out=lambda s: None)  # fmt: skip
    assert {f"model:{row}" for row in bench.MODELS} <= set(result.times)
    assert "grusym gru, 2 layers |" in result.report and "step time over the 1-layer step" in result.report
