"""Course-assignment style: layer pairs ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache)``,
batch-major arrays x (N, T, D), weights in the (in, out) orientation, LSTM gates stacked (i, f, o, g) in
one (., 4H) matrix, a sequence layer that writes every step into a preallocated real array, and a
temporal softmax loss that returns its loss and its gradient together (sum over time, mean over batch)."""

from __future__ import annotations

import numpy as np

BUGS = ("dropped_step", "transposed", "one_element", "preactivation", "carry")
DROPPED = 1
ELEMENT = (0, 2)  # of Wh


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    next_h = np.tanh(a)
    return next_h, (x, prev_h, Wx, Wh, a, next_h)


def rnn_step_backward(dnext_h, cache, bug=None):
    x, prev_h, Wx, Wh, a, next_h = cache
    da = dnext_h * ((1 - a**2) if bug == "preactivation" else (1 - next_h**2))
    dWh = prev_h.T.dot(da)
    if bug == "transposed":
        dWh = dWh.T
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), dWh, da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]))  # preallocated real buffer, as the assignments do
    caches = []
    prev_h = h0
    for t in range(T):
        prev_h, cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(cache)
    return h, caches


def rnn_backward(dh, caches, bug=None):
    N, T, H = dh.shape
    D = caches[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx, dWh, db = np.zeros((D, H)), np.zeros((H, H)), np.zeros(H)
    dprev = np.zeros((N, H))
    for t in reversed(range(T)):
        step_bug = bug if bug in ("preactivation",) else None
        dx_t, dprev_t, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev, caches[t], step_bug)
        dx[:, t, :] = dx_t
        if not (bug == "dropped_step" and t == DROPPED):
            dWx += dWx_t
            dWh += dWh_t
            db += db_t
        if bug != "carry":
            dprev = dprev_t
    if bug == "transposed":
        dWh = dWh.T
    if bug == "one_element":
        dWh[ELEMENT] *= 1.001
    return dx, dprev, dWx, dWh, db


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i, f, o, g = (
        sigmoid(a[:, :H]),
        sigmoid(a[:, H : 2 * H]),
        sigmoid(a[:, 2 * H : 3 * H]),
        np.tanh(a[:, 3 * H :]),
    )
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, a, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache, bug=None):
    x, prev_h, prev_c, Wx, Wh, a, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc**2)
    do = dnext_h * tc
    di, df, dg = dc * g, dc * prev_c, dc * i
    if bug == "preactivation":
        H = prev_h.shape[1]
        dg_raw = dg * (1 - a[:, 3 * H :] ** 2)  # tanh' at the pre-activation instead of at g
    else:
        dg_raw = dg * (1 - g**2)
    da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg_raw])
    dprev_c = dc * f if bug != "carry" else np.zeros_like(dc)
    dWh = prev_h.T.dot(da)
    if bug == "transposed":
        dWh = dWh.T
    return da.dot(Wx.T), da.dot(Wh.T), dprev_c, x.T.dot(da), dWh, da.sum(axis=0)


def temporal_affine_forward(h, W, b):
    return h.dot(W) + b, (h, W)


def temporal_affine_backward(dout, cache):
    h, W = cache
    return dout.dot(W.T), np.einsum("ntd,ntq->dq", h, dout), dout.sum(axis=(0, 1))


def temporal_softmax_loss(x, y):
    """x (N, T, V) scores, y (N, T) ids -> (loss, dx): sum over time, mean over the batch."""
    N = x.shape[0]
    shifted = x - np.max(x, axis=2, keepdims=True)
    probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=2, keepdims=True)
    picked = np.take_along_axis(probs, y[..., None], axis=2)[..., 0]
    loss = -np.sum(np.log(picked)) / N
    dx = probs.copy()
    np.put_along_axis(dx, y[..., None], np.take_along_axis(dx, y[..., None], axis=2) - 1, axis=2)
    return loss, dx / N


def init(N=2, T=4, D=3, H=4, V=5, seed=1):
    rng = np.random.default_rng(seed)
    params = {
        "Wx": rng.normal(0, 0.6, (D, H)),
        "Wh": rng.normal(0, 0.6, (H, H)),
        "b": rng.normal(0, 0.2, H),
        "W_out": rng.normal(0, 0.6, (H, V)),
        "b_out": rng.normal(0, 0.2, V),
    }
    return params, rng.normal(size=(N, T, D)), rng.integers(0, V, (N, T)), rng.normal(0, 0.5, (N, H))


def model_loss(params, x, y, h0):
    h, _ = rnn_forward(x, h0, params["Wx"], params["Wh"], params["b"])
    scores, _ = temporal_affine_forward(h, params["W_out"], params["b_out"])
    return temporal_softmax_loss(scores, y)[0]


def model_loss_and_grads(params, x, y, h0, bug=None):
    """The assignment's model: rnn layer, affine, softmax; grads of every parameter, h0 and x."""
    h, rnn_cache = rnn_forward(x, h0, params["Wx"], params["Wh"], params["b"])
    scores, affine_cache = temporal_affine_forward(h, params["W_out"], params["b_out"])
    loss, dscores = temporal_softmax_loss(scores, y)
    dh, dW_out, db_out = temporal_affine_backward(dscores, affine_cache)
    dx, dh0, dWx, dWh, db = rnn_backward(dh, rnn_cache, bug)
    grads = {"Wx": dWx, "Wh": dWh, "b": db, "W_out": dW_out, "b_out": db_out, "h0": dh0, "X": dx}
    return loss, grads


def step_inputs(N=3, D=4, H=5, seed=2):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(N, D)),
        rng.normal(size=(N, H)),
        rng.normal(0, 0.5, (D, H)),
        rng.normal(0, 0.5, (H, H)),
        rng.normal(0, 0.2, H),
    )


def lstm_step_inputs(N=3, D=4, H=3, seed=3):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(N, D)),
        rng.normal(size=(N, H)),
        rng.normal(size=(N, H)),
        rng.normal(0, 0.5, (D, 4 * H)),
        rng.normal(0, 0.5, (H, 4 * H)),
        rng.normal(0, 0.2, 4 * H),
    )
