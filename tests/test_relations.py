"""Exact relations between variants: converted parameters compute the same loss, hidden states and (after
the chain rule) gradients in two different generated modules; and where no relation exists, a
counterexample shows why."""

from __future__ import annotations

import numpy as np
import pytest

import grusym
from grusym.errors import InputError, ParameterError, UnknownVariantError
from grusym.interop import RELATIONS, convert, pull_back_grads

T, N, D, H, Q = 4, 3, 5, 6, 7
RTOL = 1e-12

# every ordered pair convert() must support, and no other: the relation table, composed
EXACT = {
    ("gru", "gru_chung"),
    ("gru_chung", "gru"),
    ("mgu", "gru_chung"),
    ("mgu", "gru"),
    ("rnn_tanh", "gru_reset_only"),
    ("gru_update_only", "gru"),
    ("gru_update_only", "gru_chung"),
    ("gru_update_only", "gru_reset_after"),
}


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    err = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


def _params(name, seed=0, h=H, scale=0.7):
    """Random weights large enough that no gate is near-linear, and nonzero biases."""
    rng = np.random.default_rng(seed + 100)
    p = grusym.load(name).init_params(D, h, Q, seed=seed, scale=scale)
    return {k: (v if v.ndim == 2 else rng.normal(0, 0.5, v.shape)) for k, v in p.items()}


def _data(seed=0, h=H, tokens=False):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, D, (T, N)) if tokens else rng.normal(size=(T, N, D))
    return X, rng.integers(0, Q, (T, N)), rng.normal(0, 0.5, (N, h))


def _run(name, params, X, Y, h0):
    m = grusym.load(name)
    loss, grads, h_T = m.loss_and_grads(params, X, Y, h0)
    return loss, grads, h_T, m.forward(params, X, h0)[0]


def test_convertible_pairs_are_exactly_the_table():
    found = set()
    for a in grusym.variants():
        for b in grusym.variants():
            if a != b:
                try:
                    convert(_params(a), a, b)
                except InputError:
                    continue
                found.add((a, b))
    assert found == EXACT


@pytest.mark.parametrize("relation", RELATIONS, ids=lambda r: f"{r.source}->{r.target}")
def test_each_relation_maps_every_parameter(relation):
    source = grusym.load(relation.source).CELL_PARAMS
    assert set(relation.rules) == set(grusym.load(relation.target).CELL_PARAMS)
    read = {src for terms in relation.rules.values() for _, src in terms}
    assert read == set(source)  # reads only source params, and all of them: the map is injective


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
@pytest.mark.parametrize(("source", "target"), sorted(EXACT))
def test_converted_params_compute_the_same_function_and_gradients(source, target, tokens):
    p = _params(source, seed=1)
    X, Y, h0 = _data(seed=2, tokens=tokens)
    loss_a, grads_a, hT_a, H_a = _run(source, p, X, Y, h0)
    loss_b, grads_b, hT_b, H_b = _run(target, convert(p, source, target), X, Y, h0)
    _close(loss_b, loss_a)
    _close(H_b, H_a)
    _close(hT_b, hT_a)
    pulled = pull_back_grads(grads_b, source, target)
    assert set(pulled) == set(grads_a)
    for key in grads_a:
        _close(pulled[key], grads_a[key])


def test_chung_gradients_are_the_negated_gru_gradients():
    """Chain rule for W_chung = -W_gru on the update gate: d/dW_chung = -d/dW_gru, all else equal."""
    p = _params("gru", seed=3)
    X, Y, h0 = _data(seed=4)
    _, g_gru, _, _ = _run("gru", p, X, Y, h0)
    _, g_chung, _, _ = _run("gru_chung", convert(p, "gru", "gru_chung"), X, Y, h0)
    for key in g_gru:
        sign = -1.0 if key in ("W_xz", "W_hz", "b_z") else 1.0
        _close(sign * g_chung[key], g_gru[key])


def test_mgu_forget_gate_gradient_is_the_sum_over_its_tied_copies():
    p = _params("mgu", seed=5)
    X, Y, h0 = _data(seed=6)
    _, g_mgu, _, _ = _run("mgu", p, X, Y, h0)
    _, g_chung, _, _ = _run("gru_chung", convert(p, "mgu", "gru_chung"), X, Y, h0)
    for s in ("W_x", "W_h", "b_"):
        _close(g_chung[s + "z"] + g_chung[s + "r"], g_mgu[s + "f"])


def test_half_reset_doubles_the_recurrent_weight_gradient():
    p = _params("rnn_tanh", seed=7)
    X, Y, h0 = _data(seed=8)
    q = convert(p, "rnn_tanh", "gru_reset_only")
    assert not q["W_xr"].any() and not q["W_hr"].any() and not q["b_r"].any()
    _close(q["W_hh"], 2 * p["W_hh"])
    _, g_rnn, _, _ = _run("rnn_tanh", p, X, Y, h0)
    _, g_ro, _, _ = _run("gru_reset_only", q, X, Y, h0)
    _close(2 * g_ro["W_hh"], g_rnn["W_hh"])  # W_hh' = 2 W_hh  =>  dL/dW_hh = 2 dL/dW_hh'
    _close(g_ro["W_xh"], g_rnn["W_xh"])


def test_gru_chung_round_trip_is_bitwise():
    p = _params("gru", seed=9)
    back = convert(convert(p, "gru", "gru_chung"), "gru_chung", "gru")
    assert all(np.array_equal(back[k], p[k]) for k in p)


def test_convert_copies_and_keeps_the_head_optional():
    p = _params("gru_update_only", seed=10)
    same = convert(p, "gru_update_only", "gru_update_only")
    assert all(np.array_equal(same[k], p[k]) and same[k] is not p[k] for k in p)
    q = convert(p, "gru_update_only", "gru")
    q["W_hq"][:] = 0.0
    q["W_xz"][:] = 0.0
    assert p["W_hq"].any() and p["W_xz"].any()
    cell = {k: v for k, v in p.items() if k not in ("W_hq", "b_q")}
    assert list(convert(cell, "gru_update_only", "gru")) == list(grusym.load("gru").CELL_PARAMS)
    f32 = convert({k: v.astype(np.float32) for k, v in p.items()}, "gru_update_only", "gru_reset_after")
    assert {v.dtype for v in f32.values()} == {np.dtype(np.float32)}


def _natural_reset_after(p):
    """gru params read as gru_reset_after: same weights, b_xh = b_h, b_hh = 0 (the tempting mapping)."""
    q = {k: v for k, v in p.items() if k != "b_h"}
    return {**q, "b_xh": p["b_h"], "b_hh": np.zeros_like(p["b_h"])}


def test_reset_placement_matters_counterexample():
    """(r*h) @ W gates the *inputs* of W_hh, r*(h @ W) its *outputs*. Keeping the gates, equality for all r
    and h forces W' = W (take r = 1/2 everywhere) and then W diagonal: off-diagonal W_hh breaks it."""
    p = _params("gru", seed=11)
    X, _, h0 = _data(seed=12)
    H_gru = grusym.load("gru").forward(p, X, h0)[0]
    H_after = grusym.load("gru_reset_after").forward(_natural_reset_after(p), X, h0)[0]
    assert np.max(np.abs(H_gru - H_after)) > 1e-2
    with pytest.raises(InputError, match="not equivalent in general"):
        convert(p, "gru", "gru_reset_after")
    with pytest.raises(InputError, match="not equivalent in general"):
        convert(_natural_reset_after(p), "gru_reset_after", "gru")


@pytest.mark.parametrize("h", [1, H])
def test_reset_placement_is_invisible_for_diagonal_W_hh(h):
    """The boundary of the counterexample: with W_hh diagonal (always so for h = 1) and b_hh = 0 the two
    placements agree, so the difference above is the coupling between hidden units, nothing else."""
    p = _params("gru", seed=13, h=h)
    p["W_hh"] = np.diag(np.diag(p["W_hh"]))
    X, _, h0 = _data(seed=14, h=h)
    H_gru = grusym.load("gru").forward(p, X, h0)[0]
    _close(grusym.load("gru_reset_after").forward(_natural_reset_after(p), X, h0)[0], H_gru, 1e-13)


def test_bad_variant_names_and_keys():
    p = _params("gru")
    with pytest.raises(UnknownVariantError, match="'gru_x'"):
        convert(p, "gru", "gru_x")  # lstm is a built-in cell since issue 13: a name that is none
    with pytest.raises(ParameterError, match=r"not 'mgu' parameters.*the keys match 'gru', 'gru_chung'"):
        convert(p, "mgu", "gru")
    with pytest.raises(ParameterError, match=r"grads are not 'gru_chung' parameters: missing \['b_z'\]"):
        pull_back_grads({k: v for k, v in p.items() if k != "b_z"}, "gru", "gru_chung")
    with pytest.raises(InputError, match="'rnn_tanh' converts exactly to: 'gru_reset_only'"):
        convert(_params("rnn_tanh"), "rnn_tanh", "gru")
