"""Course-assignment style image captioning: a model object whose ``params`` dict holds float32 arrays
(image-feature projection to h0, word embeddings, a vanilla RNN or an LSTM with gates stacked (i, f, o, g),
a vocabulary projection), sequence layers that write each step into a preallocated real array
(``np.zeros((N, T, H))``), and a temporal softmax loss that skips NULL tokens through a mask (sum over
time, mean over the batch). ``model.loss(features, captions)`` returns the loss and a dict of gradients."""

from __future__ import annotations

import numpy as np

BUGS = ("one_element", "mask", "transposed", "dropped_step")
NULL = 0
ELEMENT = (9,)  # of b_vocab: one of the V = 15 entries
DROPPED = 1


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def affine_forward(x, w, b):
    return x.dot(w) + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout.dot(w.T), x.T.dot(dout), dout.sum(axis=0)


def word_embedding_forward(x, W):
    return W[x], (x, W.shape)


def word_embedding_backward(dout, cache):
    x, shape = cache
    dW = np.zeros(shape, dtype=dout.dtype)
    np.add.at(dW, x, dout)
    return dW


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(prev_h.dot(Wh) + x.dot(Wx) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]))
    cache = []
    prev_h = h0
    for t in range(T):
        next_h, step_cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = next_h
        prev_h = next_h
        cache.append(step_cache)
    return h, cache


def rnn_backward(dh, cache, bug=None):
    N, T, H = dh.shape
    x0, _, Wx, Wh, _ = cache[0]
    dx = np.zeros((N, T, x0.shape[1]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])
        if not (bug == "dropped_step" and t == DROPPED):
            dWx += dWx_t
            dWh += dWh_t
            db += db_t
    if bug == "transposed":
        dWh = dWh.T
    return dx, dprev_h, dWx, dWh, db


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
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    da = np.hstack(
        (dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * tanh_c * o * (1 - o), dc * i * (1 - g**2))
    )
    return da.dot(Wx.T), da.dot(Wh.T), dc * f, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H))
    prev_h, prev_c = h0, np.zeros((N, H))
    cache = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        cache.append(step_cache)
    return h, cache


def lstm_backward(dh, cache, bug=None):
    N, T, H = dh.shape
    x0, _, _, Wx, Wh, *_ = cache[0]
    dx = np.zeros((N, T, x0.shape[1]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
    dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t, :] + dprev_h, dprev_c, cache[t]
        )
        if not (bug == "dropped_step" and t == DROPPED):
            dWx += dWx_t
            dWh += dWh_t
            db += db_t
    if bug == "transposed":
        dWh = dWh.T
    return dx, dprev_h, dWx, dWh, db


def temporal_affine_forward(x, w, b):
    N, T, D = x.shape
    return x.reshape(N * T, D).dot(w).reshape(N, T, -1) + b, (x, w)


def temporal_affine_backward(dout, cache):
    x, w = cache
    N, T, D = x.shape
    M = w.shape[1]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    return dx, dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T, dout.sum(axis=(0, 1))


def temporal_softmax_loss(x, y, mask, bug=None):
    N, T, V = x.shape
    x_flat, y_flat, mask_flat = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    if bug != "mask":  # the "mask" bug forgets that NULL positions carry no loss
        dx_flat *= mask_flat[:, None]
    return loss, dx_flat.reshape(N, T, V)


class CaptioningRNN:
    def __init__(
        self, cell_type="rnn", input_dim=5, wordvec_dim=4, hidden_dim=3, vocab=15, seed=21, bug=None
    ):
        rng = np.random.default_rng(seed)
        gates = 4 if cell_type == "lstm" else 1
        self.cell_type, self.bug = cell_type, bug
        self.params = {
            "W_embed": rng.standard_normal((vocab, wordvec_dim)) * 0.5,
            "W_proj": rng.standard_normal((input_dim, hidden_dim)) / np.sqrt(input_dim),
            "b_proj": rng.standard_normal(hidden_dim) * 0.1,
            "Wx": rng.standard_normal((wordvec_dim, gates * hidden_dim)) / np.sqrt(wordvec_dim),
            "Wh": rng.standard_normal((hidden_dim, gates * hidden_dim)) / np.sqrt(hidden_dim),
            "b": rng.standard_normal(gates * hidden_dim) * 0.1,
            "W_vocab": rng.standard_normal((hidden_dim, vocab)) / np.sqrt(hidden_dim),
            "b_vocab": rng.standard_normal(vocab) * 0.3,
        }
        for k, v in self.params.items():
            self.params[k] = v.astype(np.float32)

    def loss(self, features, captions):
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != NULL
        p = self.params
        h0, cache_proj = affine_forward(features, p["W_proj"], p["b_proj"])
        x, cache_embed = word_embedding_forward(captions_in, p["W_embed"])
        forward = lstm_forward if self.cell_type == "lstm" else rnn_forward
        h, cache_rnn = forward(x, h0, p["Wx"], p["Wh"], p["b"])
        scores, cache_scores = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask, self.bug)
        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, cache_scores)
        backward = lstm_backward if self.cell_type == "lstm" else rnn_backward
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = backward(dh, cache_rnn, self.bug)
        grads["W_embed"] = word_embedding_backward(dx, cache_embed)
        _, grads["W_proj"], grads["b_proj"] = affine_backward(dh0, cache_proj)
        if self.bug == "one_element":
            grads["b_vocab"][ELEMENT] *= 1.001
        return loss, grads


def data(N=3, T=5, input_dim=5, vocab=15, seed=22):
    """Image features and captions <START> w ... <END> padded with NULL (id 0) to T + 1 tokens."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((N, input_dim)).astype(np.float32)
    captions = rng.integers(3, vocab, (N, T + 1))
    captions[:, 0] = 1  # <START>
    for row, length in zip(captions, (T + 1, T - 1, T - 2), strict=True):
        row[length - 1] = 2  # <END>
        row[length:] = NULL
    return features, captions


def adapter(model, features, captions):
    """The glue a user writes: put a params dict into the model, then its loss and its gradients."""

    def loss(params):
        model.params = params
        return model.loss(features, captions)[0]

    def grads(params):
        model.params = params
        return model.loss(features, captions)[1]

    return loss, grads
