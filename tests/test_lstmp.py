"""lstmp (LSTM with projection, torch's nn.LSTM(proj_size=p)) without torch: the bare module against the tape
autograd of tests/reference_autograd.py (which shares no code with the generated lstm), a whole model
against central differences, init_params, and the refusals. The real nn.LSTM(proj_size) checks are in
tests/test_lstmp_torch.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import grusym
from grusym.errors import InputError, ParameterError, ShapeError
from grusym.interop import from_torch_gru, from_torch_lstm, to_torch_lstm
from grusym.symbolic.primitives import PRIMITIVES

from .reference_autograd import Node, backprop

T, N, D, C, P = 5, 3, 4, 6, 2
GATES = ("i", "f", "g", "o")


def _params(seed: int = 0) -> dict[str, np.ndarray]:
    """The cell's parameters, no head."""
    m = grusym.load("lstmp")
    p = m.init_params(D, C, 1, seed=seed, scale=0.6, proj_size=P)
    return {k: p[k] for k in m.CELL_PARAMS}


def _tape(params, X, h0, c0, lengths, w_H, w_h, w_c):
    """sum(w_H * H) + sum(w_h * h_last) + sum(w_c * c_last) of LSTMP on the tape, and its leaves."""
    leaves = {k: Node(v) for k, v in params.items()} | {"h0": Node(h0), "c0": Node(c0), "X": Node(X)}
    sig, tanh = PRIMITIVES["sigmoid"], PRIMITIVES["tanh"]
    h, c = leaves["h0"], leaves["c0"]
    loss = Node(np.zeros(()))
    for t in range(T):
        x = Node(X[t], ((leaves["X"], lambda g, t=t: np.eye(T)[t][:, None, None] * g[None]),))
        a = {
            g: x @ leaves[f"W_x{g}"] + h @ leaves[f"W_h{g}"] + leaves[f"b_x{g}"] + leaves[f"b_h{g}"]
            for g in GATES
        }
        i, f, o, g = a["i"].apply(sig), a["f"].apply(sig), a["o"].apply(sig), a["g"].apply(tanh)
        c_new = f * c + i * g
        h_new = (o * c_new.apply(tanh)) @ leaves["W_hr"]
        live = Node((t < lengths).astype(float)[:, None])
        dead = Node((t >= lengths).astype(float)[:, None])
        loss = loss + _dot(Node(w_H[t]), live * h_new)
        h, c = live * h_new + dead * h, live * c_new + dead * c
    loss = loss + _dot(Node(w_h), h) + _dot(Node(w_c), c)
    backprop(loss)
    return loss.value, leaves


def _dot(w: Node, v: Node) -> Node:
    s = w * v
    return Node(s.value.sum(), ((s, lambda g: g * np.ones_like(s.value)),))


@pytest.mark.parametrize("lengths", [None, [5, 1, 3], [1, 1, 1]])
def test_lstmp_module_matches_the_tape_autograd(lengths):
    params = _params()
    rng = np.random.default_rng(1)
    X, h0, c0 = rng.normal(size=(T, N, D)), rng.normal(size=(N, P)), rng.normal(size=(N, C))
    w_H, w_h, w_c = rng.normal(size=(T, N, P)), rng.normal(size=(N, P)), rng.normal(size=(N, C))
    L = np.full(N, T) if lengths is None else np.array(lengths)
    value, leaves = _tape(params, X, h0, c0, L, w_H, w_h, w_c)
    m = grusym.load("lstmp")
    H, cache = m.forward(params, X, (h0, c0), lengths)
    h, c = m.final_states(cache)
    assert abs(np.sum(w_H * H) + np.sum(w_h * h) + np.sum(w_c * c) - value) <= 1e-12 * abs(value)
    grads = m.backward(params, cache, w_H, (w_h, w_c))
    assert set(grads) == set(leaves)
    errors = {k: np.abs(grads[k] - v.grad).max() / np.abs(v.grad).max() for k, v in leaves.items()}
    assert all(e <= 1e-12 for e in errors.values()), errors  # a NaN fails too


def test_lstmp_model_matches_central_differences():
    """2 layers, bidirectional, batch-first, padded: cross-entropy plus a loss on h_n, c_n, along random
    directions."""
    model = grusym.load("lstmp", 2, True, True)
    params = model.init_params(D, C, 3, seed=2, scale=0.6, proj_size=P)
    assert params["W_xi_l1"].shape == (2 * P, C) and params["W_hq"].shape == (2 * P, 3)
    rng = np.random.default_rng(3)
    X, Y, L = rng.normal(size=(N, T, D)), rng.integers(0, 3, (N, T)), np.array([5, 1, 3])
    s0 = (rng.normal(size=(4, N, P)), rng.normal(size=(4, N, C)))
    w_h, w_c = rng.normal(size=(4, N, P)), rng.normal(size=(4, N, C))

    def total(p, x, s):
        h, c = model.predict(p, x, s, L)[1]
        return model.loss(p, x, Y, s, L) + np.sum(w_h * h) + np.sum(w_c * c)

    _, grads, _ = model.loss_and_grads(params, X, Y, s0, L)
    _, cache = model.forward(params, X, s0, L)
    extra = model.backward(params, cache, None, (w_h, w_c))
    eps = 1e-6
    for k in [*params, "h0", "c0", "X"]:
        v = rng.normal(size=grads[k].shape)

        def at(e, k=k, v=v):
            p = {j: a + e * v if j == k else a for j, a in params.items()}
            s = (s0[0] + e * v if k == "h0" else s0[0], s0[1] + e * v if k == "c0" else s0[1])
            return total(p, X + e * v if k == "X" else X, s)

        numeric = (at(eps) - at(-eps)) / (2 * eps)
        analytic = np.sum((grads[k] + extra[k]) * v)
        assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic)), (k, numeric, analytic)


def test_lstmp_round_trip_through_torch_layout():
    model = grusym.load("lstmp", 2, True)
    params = model.init_params(D, C, 3, seed=4, proj_size=P)
    state, linear = to_torch_lstm(params)
    assert state["weight_hr_l1_reverse"].shape == (P, C) and state["weight_hh_l0"].shape == (4 * C, P)
    assert state["weight_ih_l1"].shape == (4 * C, 2 * P) and linear is not None
    back = from_torch_lstm(state, head=linear)
    assert back.keys() == params.keys() and all(np.array_equal(back[k], params[k]) for k in params)


def test_lstmp_refusals():
    """Each unsupported input is refused in one line naming it."""
    m = grusym.load("lstmp")
    with pytest.raises(InputError, match=r"lstmp needs proj_size, an integer in \[1, hidden_size = 6\)"):
        m.init_params(D, C, 1)
    with pytest.raises(InputError, match="init_params of a 'lstm' model takes no proj_size"):
        grusym.load("lstm", 2).init_params(D, C, 1, proj_size=P)
    with pytest.raises(InputError, match="backend='fused' is not available"):
        grusym.load("lstmp", backend="fused")
    wide = _params() | {"W_hr": np.zeros((C, C))} | {f"W_h{g}": np.zeros((C, C)) for g in GATES}
    with pytest.raises(ShapeError, match=r"lstmp projects the cell's c = 6 units to fewer, h < c"):
        m.forward(wide, np.zeros((T, N, D)))
    with pytest.raises(ShapeError, match=r"needs h < c \(proj_size < hidden_size\)"):
        to_torch_lstm(wide)
    with pytest.raises(ShapeError, match=r"c0 must have shape \(n=3, h=6\)"):
        m.forward(_params(), np.zeros((T, N, D)), (np.zeros((N, P)), np.zeros((N, P))))
    with pytest.raises(
        ShapeError, match=r"c0 must have shape \(num_layers \* num_directions = 2, n = 3, c = 6\)"
    ):
        grusym.load("lstmp", 2).forward(
            grusym.load("lstmp", 2).init_params(D, C, 1, proj_size=P),
            np.zeros((T, N, D)),
            (np.zeros((2, N, P)), np.zeros((2, N, P))),
        )
    with pytest.raises(InputError, match="an LSTMCell has no proj_size"):
        to_torch_lstm(_params(), cell=True)
    state, _ = to_torch_lstm(_params())
    with pytest.raises(ParameterError, match=r"'weight_hr_l0', the projection of an nn.LSTM\(proj_size=p\)"):
        from_torch_gru(state)


def test_lstmp_float32_stays_float32_and_a_masked_batch_is_each_sequence_alone():
    model = grusym.load("lstmp", 2, True)
    p32 = model.init_params(3, C, 4, proj_size=P, dtype=np.float32, scale=0.5)
    X = np.random.default_rng(5).normal(size=(6, 3, 3))
    H, cache = model.forward(p32, X.astype(np.float32), lengths=np.array([6, 2, 4]))
    grads = model.backward(p32, cache, np.ones_like(H))
    assert H.dtype == np.float32 and {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    params = {k: v.astype(np.float64) for k, v in p32.items()}
    mask = np.zeros((6, 3), bool)
    mask[2:, 0], mask[:, 1], mask[1:4, 2] = True, True, True  # padding in front, none, around
    Hm, (hm, cm) = model.predict(params, X, lengths=mask)
    for i in range(3):
        steps = np.nonzero(mask[:, i])[0]
        Hi, (hi, ci) = model.predict(params, X[steps, i : i + 1])
        assert np.abs(Hm[steps, i] - Hi[:, 0]).max() <= 1e-13 and not Hm[~mask[:, i], i].any()
        assert np.abs(hm[:, i] - hi[:, 0]).max() <= 1e-13 and np.abs(cm[:, i] - ci[:, 0]).max() <= 1e-13
