"""The generated lstm against a real torch nn.LSTM + nn.Linear + cross-entropy, in float64.

The test maps nn.LSTM's weights itself (row blocks i, f, g, o of weight_ih_l0 / weight_hh_l0, bias_ih_l0 and
bias_hh_l0 kept apart as b_x<gate> and b_h<gate>), so it shares nothing with grusym.interop. Forward H, the
last states, the loss and every gradient (all parameters, h0, c0, X) agree to 1e-12, norm-wise per array;
for the plain module and for the fused one (when numba is installed).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import grusym  # noqa: E402

from .backends import BACKENDS  # noqa: E402

pytestmark = pytest.mark.torch

T, N, D, H, Q = 6, 3, 4, 5, 7
GATES = ("i", "f", "g", "o")  # nn.LSTM's row blocks
f64 = torch.float64


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours), ref.detach().numpy() if torch.is_tensor(ref) else np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300))


def _model(seed=0):
    gen = torch.Generator().manual_seed(seed)
    lstm, lin = torch.nn.LSTM(D, H, dtype=f64), torch.nn.Linear(H, Q, dtype=f64)
    with torch.no_grad():
        for p in (*lstm.parameters(), *lin.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=f64) * 0.5)
    return lstm, lin


def _ours(lstm, lin) -> dict[str, np.ndarray]:
    sd = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    params = {}
    for k, gate in enumerate(GATES):
        rows = slice(k * H, (k + 1) * H)
        params[f"W_x{gate}"] = sd["weight_ih_l0"][rows].T.copy()
        params[f"W_h{gate}"] = sd["weight_hh_l0"][rows].T.copy()
        params[f"b_x{gate}"] = sd["bias_ih_l0"][rows].copy()
        params[f"b_h{gate}"] = sd["bias_hh_l0"][rows].copy()
    params["W_hq"] = lin.weight.detach().numpy().T.copy()
    params["b_q"] = lin.bias.detach().numpy().copy()
    return params


def _torch_grads(lstm, lin) -> dict[str, np.ndarray]:
    g = {k: p.grad.numpy() for k, p in lstm.named_parameters()}
    out = {}
    for k, gate in enumerate(GATES):
        rows = slice(k * H, (k + 1) * H)
        out[f"W_x{gate}"] = g["weight_ih_l0"][rows].T
        out[f"W_h{gate}"] = g["weight_hh_l0"][rows].T
        out[f"b_x{gate}"] = g["bias_ih_l0"][rows]
        out[f"b_h{gate}"] = g["bias_hh_l0"][rows]
    out["W_hq"] = lin.weight.grad.numpy().T
    out["b_q"] = lin.bias.grad.numpy()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lengths", [None, [6, 2, 4]])
def test_lstm_matches_torch_nn_lstm(lengths, backend):
    m = grusym.load("lstm", backend=backend)
    assert m.STATES == ("h", "c") and m.OUTPUT == "h"
    lstm, lin = _model()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(T, N, D))
    Y = rng.integers(0, Q, (T, N))
    h0, c0 = rng.normal(0, 0.5, (N, H)), rng.normal(0, 0.5, (N, H))
    params = _ours(lstm, lin)
    assert set(params) == set(m.PARAMS)

    Xt = torch.tensor(X, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    if lengths is None:
        out, (hT, cT) = lstm(Xt, (h0t[None], c0t[None]))
        logits = lin(out).reshape(T * N, Q)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(Y.reshape(-1)))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(Xt, torch.tensor(lengths), enforce_sorted=False)
        out_p, (hT, cT) = lstm(packed, (h0t[None], c0t[None]))
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, total_length=T)
        valid = torch.tensor(np.arange(T)[:, None] < np.array(lengths)[None, :]).reshape(-1)
        logits = lin(out).reshape(T * N, Q)[valid]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(Y.reshape(-1))[valid])
    loss.backward()
    hT, cT = hT.reshape(N, H), cT.reshape(N, H)

    Hs, cache = m.forward(params, X, (h0, c0), lengths)
    assert _rel(Hs, out) <= 1e-12
    last_h, last_c = m.final_states(cache)
    assert _rel(last_h, hT) <= 1e-12 and _rel(last_c, cT) <= 1e-12
    value, grads, (gh, gc) = m.loss_and_grads(params, X, Y, (h0, c0), lengths)
    assert abs(value - loss.item()) <= 1e-12 * abs(loss.item())
    assert abs(m.loss(params, X, Y, (h0, c0), lengths) - loss.item()) <= 1e-12 * abs(loss.item())
    assert _rel(gh, hT) <= 1e-12 and _rel(gc, cT) <= 1e-12
    want = _torch_grads(lstm, lin) | {"h0": h0t.grad, "c0": c0t.grad, "X": Xt.grad}
    errors = {k: _rel(grads[k], v) for k, v in want.items()}
    assert set(grads) == set(want)
    bad = {k: f"{e:.1e}" for k, e in errors.items() if not e <= 1e-12}
    assert not bad, bad
