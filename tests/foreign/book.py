"""Book style: layer objects holding ``params`` and ``grads`` lists, gradients written in place
(``self.grads[0][...] = dW``), a time layer that runs float32 state buffers (``np.empty(..., dtype="f")``),
batch-major token ids (N, T), an embedding, an affine head and a mean softmax loss over N*T; the model's
``forward(xs, ts)`` returns the loss and ``backward()`` fills every layer's grads. No initial state: the
time layer starts from zeros."""

from __future__ import annotations

import numpy as np

BUGS = ("dropped_step", "transposed", "one_element", "preactivation", "carry")
DROPPED = 1
ELEMENT = (2, 0)  # of Wh


class RNN:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None
        self.bug = bug

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        a = np.dot(h_prev, Wh) + np.dot(x, Wx) + b
        h_next = np.tanh(a)
        self.cache = (x, h_prev, a, h_next)
        return h_next

    def backward(self, dh_next):
        Wx, Wh, _ = self.params
        x, h_prev, a, h_next = self.cache
        dt = dh_next * ((1 - a**2) if self.bug == "preactivation" else (1 - h_next**2))
        self.grads[0][...] = np.dot(x.T, dt)
        self.grads[1][...] = np.dot(h_prev.T, dt)
        self.grads[2][...] = np.sum(dt, axis=0)
        return np.dot(dt, Wx.T), np.dot(dt, Wh.T)


class TimeRNN:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers = None
        self.bug = bug

    def forward(self, xs):
        Wx = self.params[0]
        N, T, _ = xs.shape
        H = Wx.shape[1]
        self.layers = []
        hs = np.empty((N, T, H), dtype="f")
        h = np.zeros((N, H), dtype="f")
        for t in range(T):
            layer = RNN(*self.params, bug=self.bug)
            h = layer.forward(xs[:, t, :], h)
            hs[:, t, :] = h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        N, T, _ = dhs.shape
        D = self.params[0].shape[0]
        dxs = np.empty((N, T, D), dtype="f")
        dh = 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            dx, dh_prev = self.layers[t].backward(dhs[:, t, :] + dh)
            dxs[:, t, :] = dx
            if self.bug != "carry":
                dh = dh_prev
            if not (self.bug == "dropped_step" and t == DROPPED):
                for i, grad in enumerate(self.layers[t].grads):
                    grads[i] += grad
        if self.bug == "transposed":
            grads[1] = grads[1].T
        if self.bug == "one_element":
            grads[1] = grads[1].copy()
            grads[1][ELEMENT] *= 1.001
        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        return dxs


class TimeEmbedding:
    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]

    def forward(self, xs):
        self.idx = xs
        return self.params[0][xs]

    def backward(self, dout):
        dW = self.grads[0]
        dW[...] = 0
        np.add.at(dW, self.idx, dout)


class TimeAffine:
    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]

    def forward(self, x):
        self.x = x
        W, b = self.params
        return np.dot(x, W) + b

    def backward(self, dout):
        W, _ = self.params
        N, T, _ = self.x.shape
        self.grads[0][...] = np.dot(self.x.reshape(N * T, -1).T, dout.reshape(N * T, -1))
        self.grads[1][...] = dout.sum(axis=(0, 1))
        return np.dot(dout, W.T)


class TimeSoftmaxWithLoss:
    def forward(self, xs, ts):
        N, T, V = xs.shape
        xs = xs.reshape(N * T, V)
        ts = ts.reshape(N * T)
        ys = np.exp(xs - xs.max(axis=1, keepdims=True))
        ys /= ys.sum(axis=1, keepdims=True)
        self.cache = (ts, ys, (N, T, V))
        return -np.sum(np.log(ys[np.arange(N * T), ts])) / (N * T)

    def backward(self, dout=1):
        ts, ys, (N, T, V) = self.cache
        dx = ys.copy()
        dx[np.arange(N * T), ts] -= 1
        return (dx * dout / (N * T)).reshape(N, T, V)


class SimpleRnnlm:
    def __init__(self, vocab=6, D=3, H=4, seed=5, bug=None):
        rn = np.random.default_rng(seed).standard_normal
        self.layers = [
            TimeEmbedding((rn((vocab, D)) * 0.5).astype("f")),
            TimeRNN((rn((D, H)) * 0.6).astype("f"), (rn((H, H)) * 0.6).astype("f"), np.zeros(H, "f"), bug),
            TimeAffine((rn((H, vocab)) * 0.6).astype("f"), (rn(vocab) * 0.2).astype("f")),
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


def data(N=2, T=4, vocab=6, seed=6):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (N, T)), rng.integers(0, vocab, (N, T))


def adapter(model):
    """The glue a user writes: load a parameter list into the model, then its loss and its gradients."""

    def load(params):
        for p, value in zip(model.params, params, strict=True):
            p[...] = value

    def loss(params, xs, ts):
        load(params)
        return model.forward(xs, ts)

    def loss_and_grads(params, xs, ts):
        load(params)
        value = model.forward(xs, ts)
        model.backward()
        return value, [g.copy() for g in model.grads]

    return loss, loss_and_grads
