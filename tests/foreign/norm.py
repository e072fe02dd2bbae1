"""Course-assignment style normalisation and pooling layers: ``batchnorm_forward(x, gamma, beta, bn_param)``
with a configuration dict (mode, eps, momentum; running averages written back into it) and its backward
returning (dx, dgamma, dbeta) only, a layer norm with its own dict, and a max pool over time; plus a
sequence classifier whose forward stores each step into a preallocated real array and pools the hidden
states by ``+=`` into another one (the code a complex step cannot run)."""

from __future__ import annotations

import numpy as np

BUGS = ("dbeta_mean", "var_term")


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    if mode == "train":
        sample_mean = np.mean(x, axis=0)
        sample_var = np.var(x, axis=0)
        x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
        out = gamma * x_hat + beta
        cache = (x, x_hat, sample_mean, sample_var, gamma, eps)
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache, bug=None):
    x, x_hat, mean, var, gamma, eps = cache
    N = x.shape[0]
    dbeta = dout.sum(axis=0) if bug != "dbeta_mean" else dout.mean(axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    inv_std = 1 / np.sqrt(var + eps)
    dvar = np.sum(dx_hat * (x - mean), axis=0) * -0.5 * inv_std**3
    dmean = -np.sum(dx_hat, axis=0) * inv_std + dvar * np.mean(-2 * (x - mean), axis=0)
    scale = 2 / N if bug != "var_term" else 1 / N
    dx = dx_hat * inv_std + dvar * scale * (x - mean) + dmean / N
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = np.mean(x, axis=1, keepdims=True)
    var = np.var(x, axis=1, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma * x_hat + beta, (x_hat, var, gamma, eps)


def layernorm_backward(dout, cache):
    x_hat, var, gamma, eps = cache
    D = x_hat.shape[1]
    dx_hat = dout * gamma
    dx = (
        D * dx_hat - dx_hat.sum(axis=1, keepdims=True) - x_hat * np.sum(dx_hat * x_hat, axis=1, keepdims=True)
    )
    dx /= D * np.sqrt(var + eps)
    return dx, np.sum(dout * x_hat, axis=0), dout.sum(axis=0)


def temporal_max_pool_forward(h):
    """h (N, T, H) -> (N, H), the largest value over time of each unit."""
    idx = np.argmax(h, axis=1)
    return np.take_along_axis(h, idx[:, None, :], axis=1)[:, 0, :], (h.shape, idx)


def temporal_max_pool_backward(dout, cache):
    shape, idx = cache
    dh = np.zeros(shape)
    np.put_along_axis(dh, idx[:, None, :], dout[:, None, :], axis=1)
    return (dh,)


def bn_inputs(N=6, D=4, seed=31):
    rng = np.random.default_rng(seed)
    x = rng.normal(1.5, 2.0, (N, D))
    gamma, beta = rng.normal(1.0, 0.3, D), rng.normal(0.0, 0.3, D)
    return x, gamma, beta, {"mode": "train", "eps": 1e-5, "momentum": 0.9}


def pool_inputs(N=3, T=5, H=4, seed=32):
    return (np.random.default_rng(seed).normal(size=(N, T, H)),)


# a sequence classifier: rnn over time, mean pooling by +=, an affine head, softmax loss ---------------


def classifier_init(N=3, T=4, D=3, H=4, C=3, seed=33):
    rng = np.random.default_rng(seed)
    params = {
        "Wx": rng.normal(0, 0.6, (D, H)),
        "Wh": rng.normal(0, 0.6, (H, H)),
        "b": rng.normal(0, 0.2, H),
        "W_out": rng.normal(0, 0.6, (H, C)),
        "b_out": rng.normal(0, 0.2, C),
    }
    return params, rng.normal(size=(N, T, D)), rng.integers(0, C, N)


def classifier_loss(params, x, y):
    N, T, _ = x.shape
    H = params["Wh"].shape[0]
    h = np.zeros((N, T, H))
    pooled = np.zeros((N, H))
    prev_h = np.zeros((N, H))
    for t in range(T):
        next_h = np.tanh(x[:, t, :].dot(params["Wx"]) + prev_h.dot(params["Wh"]) + params["b"])
        h[:, t, :] = next_h
        pooled += next_h / T
        prev_h = next_h
    scores = pooled.dot(params["W_out"]) + params["b_out"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(N), y])


def classifier_grads(params, x, y):
    N, T, _ = x.shape
    H = params["Wh"].shape[0]
    hs, prev_h = [], np.zeros((N, H))
    for t in range(T):
        prev_h = np.tanh(x[:, t, :].dot(params["Wx"]) + prev_h.dot(params["Wh"]) + params["b"])
        hs.append(prev_h)
    pooled = sum(hs) / T
    scores = pooled.dot(params["W_out"]) + params["b_out"]
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dscores = p
    dscores[np.arange(N), y] -= 1
    dscores /= N
    grads = {"W_out": pooled.T.dot(dscores), "b_out": dscores.sum(axis=0)}
    dpooled = dscores.dot(params["W_out"].T)
    grads["Wx"], grads["Wh"], grads["b"] = (np.zeros_like(params[k]) for k in ("Wx", "Wh", "b"))
    dnext = np.zeros((N, H))
    for t in reversed(range(T)):
        da = (dpooled / T + dnext) * (1 - hs[t] ** 2)
        grads["Wx"] += x[:, t, :].T.dot(da)
        grads["Wh"] += (hs[t - 1] if t else np.zeros((N, H))).T.dot(da)
        grads["b"] += da.sum(axis=0)
        dnext = da.dot(params["Wh"].T)
    return grads
