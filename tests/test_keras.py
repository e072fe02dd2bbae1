"""Keras 3 GRU layers (reset_after True and False, stacked, Bidirectional with merge_mode concat, a Dense
head) and LSTM layers against grusym's model from ``from_keras_layers``, to float32 precision. Skipped
without Keras.

Keras runs on the torch backend when torch is installed, else on its numpy backend; the backend must be
chosen before keras is first imported, so it is set here, at import.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch" if importlib.util.find_spec("torch") else "numpy"
keras = pytest.importorskip("keras")

from grusym.errors import InputError  # noqa: E402
from grusym.interop import from_keras_layers  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras's own np.array(copy=...) use

T, N, D, H, Q = 6, 3, 4, 5, 7
RTOL = 2e-5  # float32: Keras and grusym round differently


def _randomize(model, seed=0):
    """Every weight N(0, 0.5^2), biases included (Keras initialises them to zero)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def _gru(reset_after, last=True, **kw):
    return keras.layers.GRU(H, return_sequences=last, reset_after=reset_after, **kw)


def _stack(layers, head=True):
    return _randomize(
        keras.Sequential([keras.Input((T, D)), *layers, *([keras.layers.Dense(Q)] if head else [])])
    )


def _data(seed=1):
    return np.random.default_rng(seed).normal(size=(N, T, D)).astype(np.float32)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


STACKS = {  # name -> (layers(reset_after), num_layers, bidirectional)
    "one-gru": (lambda ra: [_gru(ra)], 1, False),
    "two-gru": (lambda ra: [_gru(ra), _gru(ra)], 2, False),
    "bidirectional": (lambda ra: [keras.layers.Bidirectional(_gru(ra))], 1, True),
    "two-bidirectional": (
        lambda ra: [keras.layers.Bidirectional(_gru(ra)), keras.layers.Bidirectional(_gru(ra))],
        2,
        True,
    ),
}


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("stack", list(STACKS))
def test_keras_stacks_compute_what_grusym_computes(stack, reset_after):
    make, num_layers, bidirectional = STACKS[stack]
    model = _stack(make(reset_after))
    X = _data()
    logits = keras.ops.convert_to_numpy(model(X))
    ours, params = from_keras_layers(model)
    assert ("gru_reset_after" if reset_after else "gru") == ours.VARIANT
    assert (ours.structure.num_layers, len(ours.structure.directions)) == (num_layers, 1 + bidirectional)
    assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}
    Hs, _ = ours.forward(params, X)
    assert _rel(ours.head(params, Hs), logits) <= RTOL
    sequences = keras.Sequential(model.layers[:-1])  # the GRU stack's own output, without the Dense head
    assert _rel(Hs, keras.ops.convert_to_numpy(sequences(X))) <= RTOL


def _lstm(last=True, **kw):
    return keras.layers.LSTM(H, return_sequences=last, **kw)


LSTM_STACKS = {  # name -> (layers, num_layers, bidirectional)
    "one-lstm": (lambda: [_lstm()], 1, False),
    "two-lstm": (lambda: [_lstm(), _lstm()], 2, False),
    "two-bidirectional-lstm": (
        lambda: [keras.layers.Bidirectional(_lstm()), keras.layers.Bidirectional(_lstm())],
        2,
        True,
    ),
}


@pytest.mark.parametrize("stack", list(LSTM_STACKS))
def test_keras_lstm_stacks_compute_what_grusym_lstm_computes(stack):
    make, num_layers, bidirectional = LSTM_STACKS[stack]
    model = _stack(make())
    X = _data(4)
    ours, params = from_keras_layers(model)
    assert ours.VARIANT == "lstm" and ours.STATES == ("h", "c")
    assert (ours.structure.num_layers, len(ours.structure.directions)) == (num_layers, 1 + bidirectional)
    Hs, _ = ours.forward(params, X)
    assert _rel(ours.head(params, Hs), keras.ops.convert_to_numpy(model(X))) <= RTOL
    sequences = keras.Sequential(model.layers[:-1])
    assert _rel(Hs, keras.ops.convert_to_numpy(sequences(X))) <= RTOL


def test_keras_lstm_final_states_are_keras_return_state():
    layer = _lstm(return_state=True)
    inputs = keras.Input((T, D))
    model = _randomize(keras.Model(inputs, layer(inputs)))
    X = _data(5)
    _, h_k, c_k = (keras.ops.convert_to_numpy(a) for a in model(X))
    ours, params = from_keras_layers([layer])
    params = {**params, "W_hq": np.zeros((H, 1), np.float32), "b_q": np.zeros(1, np.float32)}
    h, c = ours.final_states(ours.forward(params, X)[1])
    assert _rel(h[0], h_k) <= RTOL and _rel(c[0], c_k) <= RTOL


@pytest.mark.parametrize("bidirectional", [False, True], ids=["gru", "bidirectional"])
def test_a_last_layer_without_sequences_returns_grusym_final_states(bidirectional):
    top = keras.layers.Bidirectional(_gru(True, last=False)) if bidirectional else _gru(True, last=False)
    below = keras.layers.Bidirectional(_gru(True)) if bidirectional else _gru(True)
    model = _stack([below, top], head=False)
    X = _data(2)
    ours, params = from_keras_layers(model)
    params = {
        **params,
        "W_hq": np.zeros((H * (1 + bidirectional), 1), np.float32),
        "b_q": np.zeros(1, np.float32),
    }
    _, cache = ours.forward(params, X)
    last = ours.final_states(cache)  # (num_layers * num_directions, n, h)
    top_states = np.concatenate(list(last[-(1 + bidirectional) :]), axis=1)  # Keras concatenates directions
    assert _rel(top_states, keras.ops.convert_to_numpy(model(X))) <= RTOL


def test_no_bias_means_zero_bias():
    model = _stack([_gru(True, use_bias=False)])
    X = _data(3)
    ours, params = from_keras_layers(model)
    assert not params["b_z"].any()
    assert _rel(ours.head(params, ours.forward(params, X)[0]), keras.ops.convert_to_numpy(model(X))) <= RTOL


def _built(layer, width):
    layer(np.zeros((1, T, width), np.float32))
    return layer


BAD = [  # (a model or list of layers, words the message must contain)
    (lambda: [_gru(True, activation="relu")], ["activation='relu'", "'tanh'"]),
    (lambda: [_gru(True, recurrent_activation="hard_sigmoid")], ["recurrent_activation", "hard_sigmoid"]),
    (lambda: [keras.layers.Bidirectional(_gru(True), merge_mode="sum")], ["merge_mode='sum'", "concat"]),
    (lambda: [_gru(True, go_backwards=True)], ["go_backwards=True", "Bidirectional"]),
    (lambda: [_gru(True), _gru(False)], ["reset_after=False", "reset_after=True"]),
    (  # Keras refuses to compose these; a hand-made list of layers may still hold them
        lambda: [_built(_gru(True, last=False), D), _built(_gru(True), H)],
        ["return_sequences=False"],
    ),
    (lambda: [_gru(True), keras.layers.Bidirectional(_gru(True))], ["only GRU layers", "Bidirectional"]),
    (lambda: [_gru(True), _lstm()], ["only GRU layers", "LSTM"]),
    (lambda: [_lstm(activation="relu")], ["LSTM layer", "activation='relu'"]),
    (lambda: [keras.layers.SimpleRNN(H, return_sequences=True)], ["only GRU layers", "SimpleRNN"]),
]


@pytest.mark.parametrize(("layers", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_layers_grusym_cannot_reproduce_are_refused_by_name(layers, words):
    given = layers()
    with pytest.raises(InputError) as info:
        from_keras_layers(
            given if isinstance(given[0], keras.layers.Layer) and given[0].built else _stack(given, False)
        )
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_dense_head_with_an_activation_is_refused():
    model = _randomize(
        keras.Sequential([keras.Input((T, D)), _gru(True), keras.layers.Dense(Q, activation="softmax")])
    )
    with pytest.raises(InputError, match="activation='softmax'"):
        from_keras_layers(model)


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "Bidirectional"])
def test_a_stateful_layer_is_refused_or_imported_with_its_current_states(kind):
    """Regression: a stateful=True layer imported silently and started every batch from zeros (37 % off on
    the second batch); now it is refused by name, or states=True returns where its next batch starts."""
    inner = (keras.layers.LSTM if kind == "LSTM" else keras.layers.GRU)(
        H, return_sequences=True, stateful=True
    )
    layer = keras.layers.Bidirectional(inner) if kind == "Bidirectional" else inner
    model = _randomize(keras.Sequential([keras.Input((T, D), batch_size=N), layer, keras.layers.Dense(Q)]))
    first, second = _data(6), _data(7)
    model(first)  # the layer now holds the states the first batch left
    with pytest.raises(InputError, match=r"stateful=True.*states=True"):
        from_keras_layers(model)
    ours, params, h0 = from_keras_layers(model, states=True)
    assert np.abs(h0[0] if kind == "LSTM" else h0).max() > 0.05  # not zeros: the first batch moved them
    H2, cache = ours.forward(params, second, h0)
    assert _rel(ours.head(params, H2), keras.ops.convert_to_numpy(model(second))) <= RTOL
    h0_next = ours.final_states(cache)  # Keras carries on from here: so does grusym
    third = _data(8)
    H3, _ = ours.forward(params, third, h0_next)
    assert _rel(ours.head(params, H3), keras.ops.convert_to_numpy(model(third))) <= RTOL


def test_states_true_without_a_stateful_layer_gives_none():
    _, _, h0 = from_keras_layers(_stack([_gru(True)]), states=True)
    assert h0 is None
