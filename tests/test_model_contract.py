"""The contract a cell module or model offers as one block of a user's program, without any framework:
``predict`` (forward only, nothing kept), ``backward(params, cache, dH, dstates)`` (a loss on the last
states), headless params, torch's state layout from ``load``'s layout arguments, masks with padding in
front (Keras), merge modes and stacked user cells. Oracles: finite differences of the quantity the
gradient belongs to, and each sequence run alone.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import grusym
from grusym.errors import InputError, ParameterError, ShapeError
from grusym.model import Model, build
from grusym.symbolic.usercell import derive_module, load_cell

D, H, Q = 3, 4, 5
LENGTHS = np.array([5, 1, 3, 4])
BUILTINS = ["gru", "gru_reset_after", "lstm", "rnn_tanh", "mgu"]
EXAMPLES = Path(grusym.__file__).parent / "examples" / "cells"


def _headless(p):
    return {k: v for k, v in p.items() if k not in ("W_hq", "b_q")}


def _states(s):
    return (s,) if isinstance(s, np.ndarray) else tuple(s)


def _problem(m, T=5, n=4, seed=0, stacked=False):
    rng = np.random.default_rng(seed)
    p = m.init_params(D, H, Q, seed=seed, scale=0.6)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.3, v.shape)) for k, v in p.items()}
    X = rng.normal(size=(T, n, D))
    lead = (len(m.structure.cells),) if isinstance(m, Model) else ((1,) if stacked else ())
    h0 = tuple(rng.normal(0, 0.5, (*lead, n, H)) for _ in m.STATES)
    if isinstance(m, Model) and m.structure.batch_first:
        X = X.swapaxes(0, 1).copy()
    return p, X, (h0[0] if len(h0) == 1 else h0)


def _user_cell(name):
    return derive_module(load_cell(f"{EXAMPLES / name}.py:{name}"))


# ---- predict


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("name", BUILTINS)
def test_predict_is_forward_and_final_states(name, lengths):
    m = grusym.load(name)
    p, X, h0 = _problem(m)
    H_f, cache = m.forward(p, X, h0, lengths)
    H_p, last = m.predict(_headless(p), X, h0, lengths)
    assert np.array_equal(H_p, H_f)
    assert all(
        np.array_equal(a, b) for a, b in zip(_states(last), _states(m.final_states(cache)), strict=True)
    )


@pytest.mark.parametrize("name", ["gru_reset_after", "lstm"])
def test_a_models_predict_is_its_forward_and_final_states(name):
    m = grusym.load(name, num_layers=2, bidirectional=True, batch_first=True)
    p, X, h0 = _problem(m)
    H_f, cache = m.forward(p, X, h0, LENGTHS)
    H_p, last = m.predict(p, X, h0, LENGTHS)
    assert np.array_equal(H_p, H_f)
    assert all(
        np.array_equal(a, b) for a, b in zip(_states(last), _states(m.final_states(cache)), strict=True)
    )


@pytest.mark.parametrize("backend", ["numpy", "fused"])
@pytest.mark.parametrize("name", ["gru_reset_after", "lstm"])
def test_a_one_cell_models_predict_shortcut_is_its_general_path(name, backend):
    """Model.predict hands one forward cell (no h0, lengths, mask, flip) straight to the cell's predict:
    the general path's bits and last states, and the general path's error for bad params."""
    if backend == "fused":
        pytest.importorskip("numba")
    m = grusym.load(name, num_layers=1, backend=backend)
    p, X, h0 = _problem(m)
    zeros = tuple(np.zeros_like(a) for a in _states(h0))
    H_s, last_s = m.predict(p, X)  # the shortcut
    H_g, last_g = m.predict(p, X, zeros if len(zeros) > 1 else zeros[0])  # h0 given: the general path
    assert np.array_equal(H_s, H_g)
    for a, b in zip(_states(last_s), _states(last_g), strict=True):
        assert a.shape == b.shape == (1, *X.shape[1:2], H) and np.array_equal(a, b)
    assert np.array_equal(m.predict(_headless(p), X)[0], H_s)
    bad = {**p, "W_hz_l1": p[next(iter(p))]}
    with pytest.raises(ParameterError) as shortcut:
        m.predict(bad, X)
    with pytest.raises(ParameterError) as general:
        m.forward(bad, X)
    assert "look like" in str(general.value) and str(shortcut.value) == str(general.value)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_predict_keeps_nothing_for_backward(name):
    """What predict allocates is H (and its last states); forward also keeps every step's gate values."""
    m = grusym.load(name)
    T, n = 300, 8
    p, X, h0 = _problem(m, T=T, n=n)
    m.predict(p, X, h0)  # the workspace's buffers (input projections, one step's values) exist now

    def peak(call):
        tracemalloc.start()
        try:
            call()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    H_bytes = (T + 1) * n * H * 8
    assert peak(lambda: m.predict(p, X, h0)) < 1.3 * H_bytes
    assert peak(lambda: m.forward(p, X, h0)) > 2.5 * H_bytes


# ---- backward with dstates


def _check_backward(m, p, X, h0, lengths, seed=3):
    """backward(p, cache, dH, dstates) against directional finite differences of
    sum(dH * H) + sum(dstates * final_states), with respect to params, X and the initial states."""
    H0, cache = m.forward(p, X, h0, lengths)
    rng = np.random.default_rng(seed)
    dH = rng.normal(size=H0.shape)
    last = _states(m.final_states(cache))
    ds = tuple(rng.normal(size=a.shape) for a in last)
    initial = [s + "0" for s in m.STATES]

    def split(x):
        states = tuple(x[k] for k in initial)
        return {k: x[k] for k in p}, x["X"], (states[0] if len(states) == 1 else states)

    def fun(x):
        q, Xq, hq = split(x)
        Hq, c = m.forward(q, Xq, hq, lengths)
        last_q = _states(m.final_states(c))
        return float(np.sum(dH * Hq) + sum(np.sum(a * b) for a, b in zip(last_q, ds, strict=True)))

    def grad_fun(x):
        q, Xq, hq = split(x)
        return m.backward(q, m.forward(q, Xq, hq, lengths)[1], dH, ds[0] if len(ds) == 1 else ds)

    inputs = {**p, "X": X, **dict(zip(initial, _states(h0), strict=True))}
    grusym.check_gradients(fun, grad_fun, inputs, method="directional").raise_if_failed()
    # dH alone and dstates alone add up to both
    both = m.backward(p, cache, dH, ds[0] if len(ds) == 1 else ds)
    alone = m.backward(p, cache, dH), m.backward(p, cache, None, ds[0] if len(ds) == 1 else ds)
    for k in both:
        np.testing.assert_allclose(both[k], alone[0][k] + alone[1][k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("name", BUILTINS)
def test_dstates_is_the_gradient_on_the_last_states(name, lengths):
    m = grusym.load(name)
    p, X, h0 = _problem(m)
    _check_backward(m, _headless(p), X, h0, lengths)


@pytest.mark.parametrize("structure", [(2, True, True), (3, False, False), (1, True, False)])
@pytest.mark.parametrize("name", ["gru_reset_after", "lstm"])
def test_a_models_dstates_is_the_gradient_on_its_final_states(name, structure):
    m = grusym.load(name, *structure)
    p, X, h0 = _problem(m)
    _check_backward(m, p, X, h0, LENGTHS)


def test_a_user_cells_dstates_and_predict():
    m = _user_cell("peephole_lstm")
    p, X, h0 = _problem(m)
    _check_backward(m, _headless(p), X, h0, LENGTHS)
    H_f, cache = m.forward(p, X, h0, LENGTHS)
    H_p, last = m.predict(p, X, h0, LENGTHS)
    assert np.array_equal(H_p, H_f) and np.array_equal(last[1], m.final_states(cache)[1])


def test_one_state_of_several_may_carry_no_gradient():
    m = grusym.load("lstm")
    p, X, h0 = _problem(m)
    _, cache = m.forward(p, X, h0, LENGTHS)
    dc = np.random.default_rng(1).normal(size=(4, H))
    got = m.backward(p, cache, dstates=(None, dc))
    want = m.backward(p, cache, dstates=(np.zeros((4, H)), dc))
    assert all(np.array_equal(got[k], want[k]) for k in want)


# ---- headless params, layouts, states


@pytest.mark.parametrize("model", [False, True], ids=["cell", "model"])
def test_forward_backward_and_predict_need_only_the_cells(model):
    """Regression: a headless import (nn.GRU without a Linear) was refused by its own forward and backward
    ("missing ['W_hq', 'b_q']")."""
    m = grusym.load("gru_reset_after", num_layers=2) if model else grusym.load("gru_reset_after")
    p, X, h0 = _problem(m)
    cells = _headless(p)
    H_h, cache = m.forward(cells, X, h0)
    assert np.array_equal(H_h, m.forward(p, X, h0)[0])
    grads = m.backward(cells, cache, np.ones_like(H_h))
    assert "W_hq" not in grads and set(cells) <= set(grads)
    assert np.array_equal(m.predict(cells, X, h0)[0], H_h)
    for call in (lambda: m.head(cells, H_h), lambda: m.loss(cells, X, np.zeros(X.shape[:2], int))):
        with pytest.raises(ParameterError, match="W_hq"):
            call()


def test_half_a_head_is_refused():
    m = grusym.load("gru")
    p, X, _ = _problem(m)
    with pytest.raises(ParameterError, match=r"'b_q' but not 'W_hq'"):
        m.forward({k: v for k, v in p.items() if k != "W_hq"}, X)


@pytest.mark.parametrize("kwargs", [{"num_layers": 1}, {"bidirectional": False}, {"batch_first": False}])
def test_any_layout_argument_gives_a_model_in_torchs_state_layout(kwargs):
    m = grusym.load("lstm", **kwargs)
    assert isinstance(m, Model) and grusym.load("lstm") is not m
    p, X, h0 = _problem(m)
    assert h0[0].shape == (1, 4, H)
    _, cache = m.forward(p, X, h0)
    assert all(s.shape == (1, 4, H) for s in m.final_states(cache))
    _, grads, last = m.loss_and_grads(p, X, np.zeros(X.shape[:2], int), h0)
    assert grads["h0"].shape == grads["c0"].shape == (1, 4, H) and last[0].shape == (1, 4, H)
    # one cell: the cell module's own (n, h) is accepted too, and gives the same
    assert np.array_equal(m.forward(p, X, (h0[0][0], h0[1][0]))[0], m.forward(p, X, h0)[0])


def test_the_bare_cell_module_accepts_torchs_one_layer_states():
    m = grusym.load("lstm")
    p, X, h0 = _problem(m, stacked=True)  # (1, n, h) each
    H1, cache = m.forward(p, X, h0, LENGTHS)
    assert np.array_equal(H1, m.forward(p, X, (h0[0][0], h0[1][0]), LENGTHS)[0])
    ds = tuple(np.ones((1, 4, H)) for _ in range(2))
    assert np.array_equal(
        m.backward(p, cache, None, ds)["h0"], m.backward(p, cache, None, (ds[0][0], ds[1][0]))["h0"]
    )


LAYOUT_TELLS = [  # a batch-first X given to a time-major model (and the reverse), where the sizes tell
    ("cell, h0", lambda: grusym.load("gru"), lambda X, h0, L: dict(h0=h0), ["h0", "batch-first"]),
    (
        "cell, lengths",
        lambda: grusym.load("gru"),
        lambda X, h0, L: dict(lengths=L),
        ["lengths", "batch-first"],
    ),
    ("model, h0", lambda: grusym.load("gru", 2), lambda X, h0, L: dict(h0=h0), ["h0", "other layout"]),
    (
        "model, lengths",
        lambda: grusym.load("gru", 2),
        lambda X, h0, L: dict(lengths=L),
        ["lengths", "other layout"],
    ),
]


@pytest.mark.parametrize(("label", "make", "args", "words"), LAYOUT_TELLS, ids=[c[0] for c in LAYOUT_TELLS])
def test_an_array_in_the_other_layout_is_named_where_the_sizes_tell(label, make, args, words):
    m = make()
    T, n = 6, 3
    X = np.random.default_rng(0).normal(size=(n, T, D))  # batch-first, to a time-major model
    lead = (len(m.structure.cells),) if isinstance(m, Model) else ()
    h0, L = np.zeros((*lead, n, H)), np.full(n, T)
    p = m.init_params(D, H, Q)
    with pytest.raises(ShapeError) as info:
        m.forward(p, X, **args(X, h0, L))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_time_major_array_given_to_a_batch_first_model_is_named():
    m = grusym.load("gru", batch_first=True)
    p = m.init_params(D, H, Q)
    X = np.zeros((6, 3, D))  # time-major (T, n, d) to a batch-first model
    with pytest.raises(ShapeError, match="other layout"):
        m.forward(p, X, lengths=np.full(3, 6))


# ---- masks: padding before the real steps (Keras' pre-padded batches)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", ["gru_reset_after", "lstm"])
def test_a_mask_with_padding_in_front_computes_what_each_sequence_computes_alone(name, batch_first):
    m = grusym.load(name, num_layers=2, bidirectional=True, batch_first=batch_first)
    T, n = 6, 4
    p, X, h0 = _problem(m, T=T, n=n)
    starts, lengths = np.array([0, 2, 5, 1]), np.array([6, 4, 1, 3])  # pre-, post-, both-sides padded
    real = (np.arange(T)[:, None] >= starts) & (np.arange(T)[:, None] < starts + lengths)  # (T, n)
    mask = real.T if batch_first else real
    Hm, cache = m.forward(p, X, h0, mask)
    last = _states(m.final_states(cache))
    Y = np.random.default_rng(2).integers(0, Q, X.shape[:2])
    value, _, _ = m.loss_and_grads(p, X, Y, h0, mask)
    total, want = lengths.sum(), 0.0

    def sequence(a, i, s, L):
        return a[i : i + 1, s : s + L] if batch_first else a[s : s + L, i : i + 1]

    for i, (s, L) in enumerate(zip(starts, lengths, strict=True)):

        def seq(a, i=i, s=s, L=L):
            return sequence(a, i, s, L)

        hi = tuple(a[:, i : i + 1] for a in _states(h0))
        hi = hi[0] if len(hi) == 1 else hi
        Hi, ci = m.forward(p, seq(X), hi)
        np.testing.assert_allclose(seq(Hm), Hi, rtol=1e-12, atol=1e-14)
        pad = np.delete(Hm[i] if batch_first else Hm[:, i], np.arange(s, s + L), axis=0)
        assert not pad.any(), "padded positions are zero"
        for a, b in zip(last, _states(m.final_states(ci)), strict=True):
            np.testing.assert_allclose(a[:, i], b[:, 0], rtol=1e-12)
        want += L / total * m.loss_and_grads(p, seq(X), seq(Y), hi)[0]
    assert np.isclose(value, want, rtol=1e-12)
    _check_backward(m, p, X, h0, mask)


MASKS = [
    ("a gap", np.array([[1, 0, 1, 1]], bool).T, ["sequence 0", "gap at step 1"]),
    ("no real step", np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool).T, ["sequence 1", "no real step"]),
    ("the wrong shape", np.ones((3, 4), bool), ["mask", "(4, 1)"]),
]


@pytest.mark.parametrize(("label", "mask", "words"), MASKS, ids=[c[0] for c in MASKS])
def test_a_mask_grusym_cannot_run_is_refused_by_name(label, mask, words):
    m = grusym.load("gru", num_layers=1)
    p = m.init_params(D, H, Q)
    n = 2 if label == "no real step" else 1
    with pytest.raises(InputError) as info:
        m.forward(p, np.zeros((4, n, D)), lengths=mask)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# ---- merge modes, reversed outputs


@pytest.mark.parametrize("merge", ["sum", "ave", "mul"])
def test_a_merged_layer_is_the_concatenated_one_combined(merge):
    m = build(grusym.load("gru"), 1, True, merge=merge)
    both = grusym.load("gru", bidirectional=True)
    p, X, h0 = _problem(both)
    p = _headless(p)
    Hc = both.forward(p, X, h0, LENGTHS)[0]
    f, b = Hc[..., :H], Hc[..., H:]
    want = {"sum": f + b, "ave": (f + b) / 2, "mul": f * b}[merge]
    assert np.array_equal(m.forward(p, X, h0, LENGTHS)[0], want)


@pytest.mark.parametrize("merge", ["sum", "ave", "mul", "concat"])
def test_merged_stacks_have_the_gradients_of_their_outputs(merge):
    m = build(grusym.load("lstm"), 2, True, True, merge=merge)
    p, X, h0 = _problem(m)
    assert p["W_xi_l1"].shape == ((2 * H if merge == "concat" else H), H)
    _check_backward(m, p, X, h0, LENGTHS)


def test_flip_output_returns_the_outputs_last_step_first():
    m = build(grusym.load("gru"), 1, ("reverse",), True, flip_output=True)
    plain = build(grusym.load("gru"), 1, ("reverse",), True)
    p, X, h0 = _problem(m)
    assert np.array_equal(m.forward(p, X, h0)[0], plain.forward(p, X, h0)[0][:, ::-1])
    _check_backward(m, p, X, h0, LENGTHS)


# ---- your own cell, stacked the one way the README shows


def test_load_stacks_a_user_cell_module_and_a_cell_file():
    """Regression (issue 29 item 11): grusym.load(<a derived user cell>) raised UnknownVariantError and
    build(m, num_layers=2, bidirectional=True) a TypeError."""
    module = _user_cell("mingru")
    by_module = grusym.load(module, num_layers=2, bidirectional=True)
    by_file = grusym.load(f"{EXAMPLES / 'mingru'}.py:mingru", num_layers=2, bidirectional=True)
    by_build = build(module, num_layers=2, bidirectional=True)
    assert grusym.load(module) is module
    p, X, h0 = _problem(by_module)
    H_ref = by_module.forward(p, X, h0, LENGTHS)[0]
    for m in (by_file, by_build):
        assert m.structure == by_module.structure and np.array_equal(m.forward(p, X, h0, LENGTHS)[0], H_ref)
    _check_backward(by_module, p, X, h0, LENGTHS)


def test_an_unknown_name_says_how_to_load_a_cell_of_your_own():
    with pytest.raises(grusym.UnknownVariantError, match=r"FILE\.py:NAME"):
        grusym.load("leaky_rnn", num_layers=2)
    with pytest.raises(InputError, match="not a grusym cell module"):
        build(np)


@pytest.mark.parametrize("directions", [("forward",), ("reverse",), ("forward", "reverse")])
def test_carried_padded_outputs_and_their_gradients(directions):
    """pad_outputs="carry" (a Keras layer with a mask): after a sequence's real steps its last real output,
    before them zeros (the reverse direction: before them the output at its first real step)."""
    m = build(grusym.load("gru"), 2, directions, True, pad_outputs="carry")
    zeros = build(grusym.load("gru"), 2, directions, True)
    T, n = 6, 4
    p, X, h0 = _problem(m, T=T, n=n)
    starts, lengths = np.array([0, 2, 5, 1]), np.array([6, 4, 1, 3])
    real = ((np.arange(T)[:, None] >= starts) & (np.arange(T)[:, None] < starts + lengths)).T  # (n, T)
    Hc, Hz = m.forward(p, X, h0, real)[0], zeros.forward(p, X, h0, real)[0]
    for i, (s, L) in enumerate(zip(starts, lengths, strict=True)):
        for j, d in enumerate(directions):
            cols = slice(j * H, (j + 1) * H)
            assert np.array_equal(Hc[i, s : s + L, cols], Hz[i, s : s + L, cols])
            first, last = Hz[i, s, cols], Hz[i, s + L - 1, cols]
            before, after = (0 * first, last) if d == "forward" else (first, 0 * last)
            assert all(np.array_equal(Hc[i, t, cols], before) for t in range(s))
            assert all(np.array_equal(Hc[i, t, cols], after) for t in range(s + L, T))
    _check_backward(m, p, X, h0, real)


@pytest.mark.parametrize("name", BUILTINS)
def test_the_fused_backend_gives_predict_and_dstates_as_the_plain_one(name):
    """The fused modules (Numba kernels) run the same emitted statements: predict and a backward with
    dstates (LSTM's c enters through its per-step upstream) equal the plain module's."""
    pytest.importorskip("numba")
    plain, fused = grusym.load(name), grusym.load(name, backend="fused")
    p, X, h0 = _problem(plain)
    Hp, lp = plain.predict(p, X, h0, LENGTHS)
    Hf, lf = fused.predict(p, X, h0, LENGTHS)
    np.testing.assert_allclose(Hf, Hp, rtol=1e-13, atol=1e-15)
    for a, b in zip(_states(lf), _states(lp), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    ds = tuple(np.random.default_rng(4).normal(size=a.shape) for a in _states(lp))
    ds = ds[0] if len(ds) == 1 else ds
    dH = np.random.default_rng(5).normal(size=Hp.shape)
    gp = plain.backward(p, plain.forward(p, X, h0, LENGTHS)[1], dH, ds)
    gf = fused.backward(p, fused.forward(p, X, h0, LENGTHS)[1], dH, ds)
    for k in gp:
        np.testing.assert_allclose(gf[k], gp[k], rtol=1e-12, atol=1e-15, err_msg=k)
