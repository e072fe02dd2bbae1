"""zoneout_gru, the example cell whose zoneout masks are per-step inputs, against torch autograd.

The reference below writes Krueger et al.'s zoneout GRU (d2l's GRU, then h = m*h_prev + (1 - m)*h_gru)
directly in torch, float64, one sequence at a time (padded steps never run; the reverse direction runs
each sequence backwards over its own length), shares nothing with grusym's generator, model or checks,
and compares the loss, every gradient, h0, X and the last states to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

from grusym.examples.cells import path
from grusym.model import build
from grusym.symbolic.usercell import derive_module, load_cell

torch = pytest.importorskip("torch")

TOL = 1e-9
GATES = ("z", "r", "h")


@pytest.fixture(scope="module")
def zoneout():
    return derive_module(load_cell(path("zoneout_gru")))


def _cell(P, x, h_prev, m):
    """One step of the zoneout GRU: x (d,), h_prev (h,), m (h,)."""
    z = torch.sigmoid(x @ P["W_xz"] + h_prev @ P["W_hz"] + P["b_z"])
    r = torch.sigmoid(x @ P["W_xr"] + h_prev @ P["W_hr"] + P["b_r"])
    h_tilde = torch.tanh(x @ P["W_xh"] + (r * h_prev) @ P["W_hh"] + P["b_h"])
    h_gru = z * h_prev + (1 - z) * h_tilde
    return m * h_prev + (1 - m) * h_gru


def _run(P, X, h0, M, lengths, reverse=False):
    """Outputs (T, n, h) zero at padded steps, and the last states (n, h)."""
    T, n = X.shape[:2]
    out = [[torch.zeros(h0.shape[1], dtype=torch.float64) for _ in range(n)] for _ in range(T)]
    last = []
    for i in range(n):
        h = h0[i]
        order = range(lengths[i] - 1, -1, -1) if reverse else range(lengths[i])
        for t in order:
            h = _cell(P, X[t, i], h, M[t, i])
            out[t][i] = h
        last.append(h)
    return torch.stack([torch.stack(row) for row in out]), torch.stack(last)


def _loss(H, W_hq, b_q, Y, lengths):
    rows = [H[t, i] for i in range(H.shape[1]) for t in range(lengths[i])]
    targets = torch.tensor([int(Y[t, i]) for i in range(H.shape[1]) for t in range(lengths[i])])
    logits = torch.stack(rows) @ W_hq + b_q
    return torch.nn.functional.cross_entropy(logits, targets)


def _leaf(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _problem(seed, T=6, n=4, d=3, h=5, q=4, layers=1, directions=1, probability=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    lengths = rng.integers(1, T + 1, n)
    lengths[0] = T
    K = layers * directions
    if probability:  # inference: the masks' expectation, one number per row and step, broadcast
        M = np.broadcast_to(rng.uniform(0, 1, (K, T, n, 1)), (K, T, n, h))
    else:  # training: 0/1 masks, each unit kept with probability 0.3
        M = (rng.random((K, T, n, h)) < 0.3).astype(np.float64)
    h0 = rng.normal(0, 0.5, (K, n, h))
    return X, Y, lengths, M, h0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("probability", [False, True])
def test_zoneout_gru_matches_torch(zoneout, seed, probability):
    """loss, every gradient, h0, X and the last state of the cell module, with lengths, masks at random."""
    X, Y, lengths, M, h0 = _problem(seed, probability=probability)
    params = zoneout.init_params(X.shape[2], h0.shape[2], 4, seed=seed, scale=0.7)
    rng = np.random.default_rng(seed + 10)
    params = {k: v + rng.normal(0, 0.3, v.shape) if v.ndim == 1 else v for k, v in params.items()}
    aux = {"m": M[0, :, :, :1] if probability else M[0]}  # (T, n, 1) is broadcast over the units
    value, grads, last = zoneout.loss_and_grads(params, X, Y, h0[0], lengths=lengths, aux=aux)

    P = {k: _leaf(v) for k, v in params.items()}
    Xt, h0t = _leaf(X), _leaf(h0[0])
    H, last_t = _run(P, Xt, h0t, torch.tensor(M[0]), lengths)
    loss = _loss(H, P["W_hq"], P["b_q"], Y, lengths)
    loss.backward()

    assert abs(value - loss.item()) <= TOL * max(1.0, abs(loss.item()))
    for k, p in P.items():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=TOL, atol=TOL, err_msg=k)
    np.testing.assert_allclose(grads["h0"], h0t.grad.numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(grads["X"], Xt.grad.numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(last, last_t.detach().numpy(), rtol=TOL, atol=TOL)
    H_np, _ = zoneout.forward(params, X, h0[0], lengths, aux=aux)
    np.testing.assert_allclose(H_np, H.detach().numpy(), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_zoneout_model_matches_torch(zoneout, shared, batch_first):
    """2 layers, bidirectional, lengths: masks per layer and direction (K, T, n, h) or one for all, the
    reverse direction's reversed with its sequence, batch-first or not."""
    X, Y, lengths, M, h0 = _problem(5, layers=2, directions=2)
    if shared:
        M = np.broadcast_to(M[0], M.shape)
    model = build(zoneout, num_layers=2, bidirectional=True, batch_first=batch_first)
    params = model.init_params(X.shape[2], h0.shape[2], 4, seed=3, scale=0.7)
    aux_m = M[0] if shared else M
    Xin, Yin = X, Y
    if batch_first:
        Xin, Yin = X.swapaxes(0, 1), Y.swapaxes(0, 1)
        aux_m = aux_m.swapaxes(-3, -2)
    value, grads, last = model.loss_and_grads(params, Xin, Yin, h0, lengths=lengths, aux={"m": aux_m})

    P = {k: _leaf(v) for k, v in params.items()}
    Xt, h0t = _leaf(X), _leaf(h0)
    inputs, lasts = Xt, []
    for layer in range(2):
        outs = []
        for j, direction in enumerate(("forward", "reverse")):
            k = 2 * layer + j
            suffix = f"_l{layer}" + ("_reverse" if direction == "reverse" else "")
            cell_p = {name: P[name + suffix] for name in zoneout.CELL_PARAMS}
            H, last_k = _run(cell_p, inputs, h0t[k], torch.tensor(M[k]), lengths, reverse=j == 1)
            outs.append(H)
            lasts.append(last_k)
        inputs = torch.cat(outs, dim=2)
    loss = _loss(inputs, P["W_hq"], P["b_q"], Y, lengths)
    loss.backward()

    assert abs(value - loss.item()) <= TOL * max(1.0, abs(loss.item()))
    for k, p in P.items():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=TOL, atol=TOL, err_msg=k)
    np.testing.assert_allclose(grads["h0"], h0t.grad.numpy(), rtol=TOL, atol=TOL)
    dX = grads["X"].swapaxes(0, 1) if batch_first else grads["X"]
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(last, torch.stack(lasts).detach().numpy(), rtol=TOL, atol=TOL)
