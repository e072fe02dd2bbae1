"""Book style, gated: GRU and LSTM layer objects (gates stacked in one (., 3H) or (., 4H) matrix, the LSTM's
in the order f, g, i, o), time layers that run float32 state buffers (``np.empty(..., dtype="f")``, zeros as
the first state), gradients summed over the steps in a list and written in place, and a language model
(embedding, time layer, affine head, mean softmax loss over N*T) whose parameters are float32 arrays.
The loss and gradients come from the model's ``forward(xs, ts)`` and ``backward()``, so the code rounds
through float32 whatever the checker passes in."""

from __future__ import annotations

import numpy as np

from .book import TimeAffine, TimeEmbedding, TimeSoftmaxWithLoss

BUGS = ("dropped_step", "one_element", "preactivation", "carry", "gate_bias", "bias_scale")
DROPPED = 2
ELEMENT = {"gru": (6,), "lstm": (4,)}  # of the bias b: one of the 3H (GRU) or 4H (LSTM) entries


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class GRU:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.bug = bug

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        H = Wh.shape[0]
        Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H : 2 * H], Wx[:, 2 * H :]
        Whz, Whr, Whh = Wh[:, :H], Wh[:, H : 2 * H], Wh[:, 2 * H :]
        bz, br, bh = b[:H], b[H : 2 * H], b[2 * H :]
        z = sigmoid(np.dot(x, Wxz) + np.dot(h_prev, Whz) + bz)
        r = sigmoid(np.dot(x, Wxr) + np.dot(h_prev, Whr) + br)
        a_hat = np.dot(x, Wxh) + np.dot(r * h_prev, Whh) + bh
        h_hat = np.tanh(a_hat)
        h_next = (1 - z) * h_prev + z * h_hat
        self.cache = (x, h_prev, z, r, a_hat, h_hat)
        return h_next

    def backward(self, dh_next):
        Wx, Wh, _ = self.params
        H = Wh.shape[0]
        Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H : 2 * H], Wx[:, 2 * H :]
        Whz, Whr, Whh = Wh[:, :H], Wh[:, H : 2 * H], Wh[:, 2 * H :]
        x, h_prev, z, r, a_hat, h_hat = self.cache
        dh_hat = dh_next * z
        dh_prev = dh_next * (1 - z)
        # tanh'
        dt = dh_hat * ((1 - a_hat**2) if self.bug == "preactivation" else (1 - h_hat**2))
        dbh = np.sum(dt, axis=0)
        dWhh = np.dot((r * h_prev).T, dt)
        dhr = np.dot(dt, Whh.T)
        dWxh = np.dot(x.T, dt)
        dx = np.dot(dt, Wxh.T)
        dh_prev += r * dhr
        # update gate z
        dz = dh_next * h_hat - dh_next * h_prev
        dt = dz * z * (1 - z)
        dbz = np.sum(dt, axis=0)
        dWhz = np.dot(h_prev.T, dt)
        dh_prev += np.dot(dt, Whz.T)
        dWxz = np.dot(x.T, dt)
        dx += np.dot(dt, Wxz.T)
        # reset gate r
        dr = dhr * h_prev
        dt = dr * r * (1 - r)
        dbr = np.sum(dt, axis=0)
        dWhr = np.dot(h_prev.T, dt)
        dh_prev += np.dot(dt, Whr.T)
        dWxr = np.dot(x.T, dt)
        dx += np.dot(dt, Wxr.T)
        self.grads[0][...] = np.hstack((dWxz, dWxr, dWxh))
        self.grads[1][...] = np.hstack((dWhz, dWhr, dWhh))
        self.grads[2][...] = np.hstack((dbz, dbr, dbh))
        return dx, dh_prev


class LSTM:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.bug = bug

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        A = np.dot(x, Wx) + np.dot(h_prev, Wh) + b
        f = sigmoid(A[:, :H])
        g = np.tanh(A[:, H : 2 * H])
        i = sigmoid(A[:, 2 * H : 3 * H])
        o = sigmoid(A[:, 3 * H :])
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, A, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, _ = self.params
        x, h_prev, c_prev, A, i, f, g, o, c_next = self.cache
        H = h_prev.shape[1]
        tanh_c_next = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c_next**2)
        dc_prev = ds * f
        di = ds * g
        df = ds * c_prev
        do = dh_next * tanh_c_next
        dg = ds * i
        di *= i * (1 - i)
        df *= f * (1 - f)
        do_raw = do.copy()
        do *= o * (1 - o)
        dg *= (1 - A[:, H : 2 * H] ** 2) if self.bug == "preactivation" else (1 - g**2)
        dA = np.hstack((df, dg, di, do))
        self.grads[0][...] = np.dot(x.T, dA)
        self.grads[1][...] = np.dot(h_prev.T, dA)
        # the "gate_bias" bug sums the output gate's bias gradient before the sigmoid's derivative
        db = dA.sum(axis=0)
        if self.bug == "gate_bias":
            db[3 * H :] = do_raw.sum(axis=0)
        if self.bug == "bias_scale":  # the forget gate's bias gradient 26 % too large
            db[:H] *= 1.26
        self.grads[2][...] = db
        return np.dot(dA, Wx.T), np.dot(dA, Wh.T), dc_prev


class TimeGRU:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.bug = bug

    def forward(self, xs):
        Wh = self.params[1]
        N, T, _ = xs.shape
        H = Wh.shape[0]
        self.layers = []
        hs = np.empty((N, T, H), dtype="f")
        self.h = np.zeros((N, H), dtype="f")
        for t in range(T):
            layer = GRU(*self.params, bug=self.bug)
            self.h = layer.forward(xs[:, t, :], self.h)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        Wx = self.params[0]
        N, T, _ = dhs.shape
        dxs = np.empty((N, T, Wx.shape[0]), dtype="f")
        dh = 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            dx, dh_prev = self.layers[t].backward(dhs[:, t, :] + dh)
            dxs[:, t, :] = dx
            if self.bug != "carry":
                dh = dh_prev
            if not (self.bug == "dropped_step" and t == DROPPED):
                for k, grad in enumerate(self.layers[t].grads):
                    grads[k] += grad
        if self.bug == "one_element":
            grads[2] = grads[2].copy()
            grads[2][ELEMENT["gru"]] *= 1.001
        for k, grad in enumerate(grads):
            self.grads[k][...] = grad
        return dxs


class TimeLSTM:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.bug = bug

    def forward(self, xs):
        Wh = self.params[1]
        N, T, _ = xs.shape
        H = Wh.shape[0]
        self.layers = []
        hs = np.empty((N, T, H), dtype="f")
        self.h = np.zeros((N, H), dtype="f")
        self.c = np.zeros((N, H), dtype="f")
        for t in range(T):
            layer = LSTM(*self.params, bug=self.bug)
            self.h, self.c = layer.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        Wx = self.params[0]
        N, T, _ = dhs.shape
        dxs = np.empty((N, T, Wx.shape[0]), dtype="f")
        dh, dc = 0, 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            dx, dh, dc_prev = self.layers[t].backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            if self.bug != "carry":
                dc = dc_prev
            if not (self.bug == "dropped_step" and t == DROPPED):
                for k, grad in enumerate(self.layers[t].grads):
                    grads[k] += grad
        if self.bug == "one_element":
            grads[2] = grads[2].copy()
            grads[2][ELEMENT["lstm"]] *= 1.001
        for k, grad in enumerate(grads):
            self.grads[k][...] = grad
        return dxs


class Rnnlm:
    """Embedding, a TimeGRU or TimeLSTM, an affine head and a softmax loss; float32 parameters."""

    def __init__(self, cell="lstm", vocab=7, D=3, H=3, seed=11, bug=None):
        rn = np.random.default_rng(seed).standard_normal
        gates = 4 if cell == "lstm" else 3
        time_layer = TimeLSTM if cell == "lstm" else TimeGRU
        self.layers = [
            TimeEmbedding((rn((vocab, D)) * 0.8).astype("f")),
            time_layer(
                (rn((D, gates * H)) * 0.7).astype("f"),
                (rn((H, gates * H)) * 0.7).astype("f"),
                (rn(gates * H) * 0.3).astype("f"),
                bug,
            ),
            TimeAffine((rn((H, vocab)) * 0.8).astype("f"), (rn(vocab) * 0.2).astype("f")),
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, ts):
        for layer in self.layers:
            xs = layer.forward(xs)
        return self.loss_layer.forward(xs, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)


def data(N=2, T=5, vocab=7, seed=12):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (N, T)), rng.integers(0, vocab, (N, T))
