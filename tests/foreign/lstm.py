"""A hand-written LSTM with two initial states (h0, c0): time-major X (T, n, d), the input and the previous
hidden state concatenated into one vector per step (z = [h, x]) against one weight W (H + d, 4H) per the
textbook derivation, cached per step in a list, a mean loss over T*n and gradients for W, b, the head,
h0, c0 and X."""

from __future__ import annotations

import numpy as np

BUGS = ("dropped_step", "one_element", "preactivation", "carry")
DROPPED = 2
ELEMENT = (3, 1)  # of W


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def init(T=4, n=2, d=3, H=3, V=4, seed=4):
    rng = np.random.default_rng(seed)
    params = {
        "W": rng.normal(0, 0.5, (H + d, 4 * H)),
        "b": rng.normal(0, 0.2, 4 * H),
        "Wy": rng.normal(0, 0.7, (H, V)),
        "by": rng.normal(0, 0.2, V),
    }
    X, Y = rng.normal(size=(T, n, d)), rng.integers(0, V, (T, n))
    return params, X, Y, rng.normal(0, 0.5, (n, H)), rng.normal(0, 0.5, (n, H))


def _forward(params, X, h0, c0):
    H = h0.shape[1]
    h, c, cache = h0, c0, []
    for x in X:
        z = np.concatenate([h, x], axis=1)
        a = z @ params["W"] + params["b"]
        i, f, o, g = (
            sigmoid(a[:, :H]),
            sigmoid(a[:, H : 2 * H]),
            sigmoid(a[:, 2 * H : 3 * H]),
            np.tanh(a[:, 3 * H :]),
        )
        c_prev, c = c, f * c + i * g
        h = o * np.tanh(c)
        cache.append((z, a, i, f, o, g, c_prev, c, h))
    return cache


def loss(params, X, Y, h0, c0):
    cache = _forward(params, X, h0, c0)
    total = 0.0
    for t, step in enumerate(cache):
        logits = step[-1] @ params["Wy"] + params["by"]
        logits = logits - logits.max(axis=1, keepdims=True)
        total = total + np.sum(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(Y[t])), Y[t]])
    return total / Y.size


def loss_and_grads(params, X, Y, h0, c0, bug=None):
    T, n = Y.shape
    H = h0.shape[1]
    cache = _forward(params, X, h0, c0)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    grads["X"] = np.zeros_like(X)
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
    total = 0.0
    for t in reversed(range(T)):
        z, a, i, f, o, g, c_prev, c, h = cache[t]
        logits = h @ params["Wy"] + params["by"]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        total += -np.sum(np.log(p[np.arange(n), Y[t]]))
        dlogits = p.copy()
        dlogits[np.arange(n), Y[t]] -= 1
        dlogits /= T * n
        grads["Wy"] += h.T @ dlogits
        grads["by"] += dlogits.sum(axis=0)
        dh = dlogits @ params["Wy"].T + dh_next
        tc = np.tanh(c)
        dc = dc_next + dh * o * (1 - tc**2)
        dg = dc * i
        dg = dg * (1 - a[:, 3 * H :] ** 2) if bug == "preactivation" else dg * (1 - g**2)
        da = np.concatenate(
            [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh * tc * o * (1 - o), dg], axis=1
        )
        if not (bug == "dropped_step" and t == DROPPED):
            grads["W"] += z.T @ da
            grads["b"] += da.sum(axis=0)
        dz = da @ params["W"].T
        dh_next, grads["X"][t] = dz[:, :H], dz[:, H:]
        if bug != "carry":
            dc_next = dc * f
    if bug == "one_element":
        grads["W"][ELEMENT] *= 1.001
    grads["h0"], grads["c0"] = dh_next, dc_next
    return total / (T * n), grads
