"""The float64 Keras harness shared by the Keras tests and the converter fuzz: tiny stacks with random
weights, Keras' outputs and (on the torch backend) every variable's gradient through torch autograd, and
:func:`check`, which compares all of them with grusym's model of the stack to 1e-12.

Importing it chooses Keras' backend (torch when installed, else numpy: the gradient checks then skip) and
skips the importing test module when Keras is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator

import numpy as np
import pytest

HAVE_TORCH = importlib.util.find_spec("torch") is not None
os.environ["KERAS_BACKEND"] = "torch" if HAVE_TORCH else "numpy"
keras = pytest.importorskip("keras")

from grusym.interop import from_keras_layers, to_keras  # noqa: E402

T, N, D, H, Q = 6, 3, 4, 5, 7
RTOL = 1e-12
F64 = "float64"
LAYERS = {"GRU": keras.layers.GRU, "LSTM": keras.layers.LSTM, "SimpleRNN": keras.layers.SimpleRNN}


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Keras 3 on a non-TensorFlow backend computes float64 matmuls in float32: its type promotion maps
    float64 to float32 ("aligned with JAX's default", BIT64_TO_BIT32_DTYPE in keras/src/backend/common/
    dtypes.py) and NumPy inputs are converted to floatx. Told otherwise inside this block, a float64 Keras
    model computes in float64 and agrees with grusym to 1e-15."""
    from unittest import mock

    from keras.src.backend.common import dtypes

    before = keras.config.floatx()
    keras.config.set_floatx(F64)
    try:
        with mock.patch.dict(dtypes.BIT64_TO_BIT32_DTYPE, {"float64": "float64"}):
            yield
    finally:
        keras.config.set_floatx(before)


def randomize(model, seed=0):
    """Every weight N(0, 0.5^2), biases included (Keras initialises them to zero)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return model


def rnn(kind="GRU", units=H, **kw):
    kw.setdefault("return_sequences", True)
    return LAYERS[kind](units, dtype=F64, **kw)


def bi(inner, merge="concat"):
    return keras.layers.Bidirectional(inner, merge_mode=merge, dtype=F64)


def stack(layers, head=True, masking=None, batch_size=None, seed=0, activation=None):
    """A Sequential of the layers between an optional Masking layer and an optional Dense head."""
    front = [keras.layers.Masking(masking, dtype=F64)] if masking is not None else []
    tail = [keras.layers.Dense(Q, dtype=F64, activation=activation)] if head else []
    inputs = keras.Input((T, D), batch_size=batch_size, dtype=F64)
    return randomize(keras.Sequential([inputs, *front, *layers, *tail]), seed)


def data(seed=1, pad=None, n=N):
    """X (n, T, d); pad: (starts, lengths) whose outside steps are zero (what Masking(0.0) masks)."""
    X = np.random.default_rng(seed).normal(size=(n, T, D))
    if pad is not None:
        real = (np.arange(T) >= pad[0][:, None]) & (np.arange(T) < (pad[0] + pad[1])[:, None])
        X = X * real[:, :, None]
    return X


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def keras_run(model, X, weight, gradients=True):
    """Keras' output for X and, on the torch backend, the gradient of sum(weight * output) with respect to
    every variable (per layer with weights, in order) and X."""
    if not (HAVE_TORCH and gradients):
        return keras.ops.convert_to_numpy(model(X)), None
    import torch

    layers = [layer for layer in model.layers if layer.get_weights()]
    for layer in layers:
        for v in layer.weights:
            v.value.grad = None  # torch accumulates .grad: each call gets its own
    x = torch.tensor(X, requires_grad=True)
    out = model(x)
    (torch.from_numpy(weight) * out).sum().backward()
    grads = [[v.value.grad.numpy() for v in layer.weights] for layer in layers]
    return out.detach().numpy(), {"layers": grads, "X": x.grad.numpy()}


def check(model, X, *, last=False, h0=None, imported=None, seed=2, gradients=True):
    """grusym's model of ``model`` computes Keras' output for X and every gradient of a weighted sum of it,
    to 1e-12: each Keras variable's (laid out by ``to_keras(..., gradients=True)``) and X's.

    last: the top layer has return_sequences=False, its output is the top rows of final_states (merged as
    its merge mode says); h0: the initial states (a stateful stack's); imported: ``from_keras_layers``'
    result when already made; gradients=False: the output only (a stateful Keras layer assigns its states
    in place, which torch autograd refuses to differentiate through). Returns the model and params."""
    ours, params = imported or from_keras_layers(model)
    has_head = "W_hq" in params
    out_shape = keras.ops.convert_to_numpy(model(X)).shape if h0 is None else None
    Hs, cache = ours.forward(params, X, h0)
    s = ours.structure
    nh = ours.final_states(cache)
    nh = (nh if len(ours.STATES) == 1 else nh[0]).shape[-1]
    if last:  # Keras' last output: the top layer's last states, merged
        top = ours.final_states(cache)
        top = top if len(ours.STATES) == 1 else top[0]
        parts = list(top[-len(s.directions) :])
        mine = ours._merge([p[:, None] for p in parts])[:, 0] if len(parts) == 2 else parts[0]
    else:
        mine = Hs
    got = ours.head(params, mine) if has_head else mine
    weight = np.random.default_rng(seed).normal(size=out_shape or got.shape)
    theirs, grads = keras_run(model, X, weight, gradients)
    assert rel(got, theirs) <= RTOL
    if grads is None:
        return ours, params
    w_o = weight @ params["W_hq"].T if has_head else weight
    if last:
        n = X.shape[0]
        dlast = np.zeros((len(s.cells), n, nh))
        if len(s.directions) == 2:  # the merge's gradient
            a, b = parts
            if s.merge == "concat":
                split = (w_o[:, :nh], w_o[:, nh:])
            else:
                split = {"sum": (w_o, w_o), "ave": (w_o / 2, w_o / 2), "mul": (w_o * b, w_o * a)}[s.merge]
            dlast[-2], dlast[-1] = split
        else:
            dlast[-1] = w_o
        g = ours.backward(params, cache, None, dlast if len(ours.STATES) == 1 else (dlast, None))
        if has_head:
            g["W_hq"], g["b_q"] = mine.T @ weight, weight.sum(axis=0)
    else:
        g = ours.backward(params, cache, w_o)
        if has_head:
            q = weight.shape[-1]
            g["W_hq"] = Hs.reshape(-1, Hs.shape[-1]).T @ weight.reshape(-1, q)
            g["b_q"] = weight.reshape(-1, q).sum(axis=0)
    ours_k = to_keras(ours, g, model, gradients=True)
    assert len(ours_k) == len(grads["layers"])
    for layer, (a, b) in enumerate(zip(ours_k, grads["layers"], strict=True)):
        errors = [rel(x, y) for x, y in zip(a, b, strict=True)]
        assert max(errors) <= RTOL, (layer, errors)
    assert rel(g["X"], grads["X"]) <= RTOL
    return ours, params
