"""Keras 3 stacks against grusym's model from ``from_keras_layers`` and back through ``to_keras``: GRU
(reset_after True and False), LSTM and SimpleRNN layers, stacked, Bidirectional with every merge mode, a
lone go_backwards layer, masks (a Masking layer; padded before or after the real steps), stateful layers,
Dense heads. In float64 (Keras on the torch backend computes it in float64): outputs, last states and
every gradient (each Keras variable's, through torch autograd, and X's) to 1e-12. Skipped without Keras.

The backend must be chosen before keras is first imported, so it is set here, at import; without torch
Keras runs on numpy and the gradient checks skip.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

HAVE_TORCH = importlib.util.find_spec("torch") is not None
os.environ["KERAS_BACKEND"] = "torch" if HAVE_TORCH else "numpy"
keras = pytest.importorskip("keras")

from grusym.errors import InputError  # noqa: E402
from grusym.interop import from_keras_layers, to_keras, to_keras_gru  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras's own np.array(copy=...) use

T, N, D, H, Q = 6, 3, 4, 5, 7
RTOL = 1e-12
F64 = "float64"
LAYERS = {"GRU": keras.layers.GRU, "LSTM": keras.layers.LSTM, "SimpleRNN": keras.layers.SimpleRNN}


@pytest.fixture(autouse=True)
def _float64():
    """Keras 3 on a non-TensorFlow backend computes float64 matmuls in float32: its type promotion maps
    float64 to float32 ("aligned with JAX's default", BIT64_TO_BIT32_DTYPE in keras/src/backend/common/
    dtypes.py) and NumPy inputs are converted to floatx. Told otherwise for the duration of each test, a
    float64 Keras model computes in float64, and agrees with grusym to 1e-15."""
    from unittest import mock

    from keras.src.backend.common import dtypes

    before = keras.config.floatx()
    keras.config.set_floatx(F64)
    with mock.patch.dict(dtypes.BIT64_TO_BIT32_DTYPE, {"float64": "float64"}):
        yield
    keras.config.set_floatx(before)


def randomize(model, seed=0):
    """Every weight N(0, 0.5^2), biases included (Keras initialises them to zero)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return model


def rnn(kind="GRU", **kw):
    kw.setdefault("return_sequences", True)
    return LAYERS[kind](H, dtype=F64, **kw)


def bi(inner, merge="concat"):
    return keras.layers.Bidirectional(inner, merge_mode=merge, dtype=F64)


def stack(layers, head=True, masking=None, batch_size=None, seed=0):
    front = [keras.layers.Masking(masking, dtype=F64)] if masking is not None else []
    tail = [keras.layers.Dense(Q, dtype=F64)] if head else []
    inputs = keras.Input((T, D), batch_size=batch_size, dtype=F64)
    return randomize(keras.Sequential([inputs, *front, *layers, *tail]), seed)


def data(seed=1, pad=None):
    """X (n, T, d); pad: (starts, lengths) whose outside steps are zero (what Masking(0.0) masks)."""
    X = np.random.default_rng(seed).normal(size=(N, T, D))
    if pad is not None:
        real = (np.arange(T) >= pad[0][:, None]) & (np.arange(T) < (pad[0] + pad[1])[:, None])
        X = X * real[:, :, None]
    return X


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def keras_run(model, X, weight):
    """Keras' output for X and, on the torch backend, the gradient of sum(weight * output) with respect to
    every variable (per layer with weights, in order) and X."""
    if not HAVE_TORCH:
        return keras.ops.convert_to_numpy(model(X)), None
    import torch

    x = torch.tensor(X, requires_grad=True)
    out = model(x)
    (torch.from_numpy(weight) * out).sum().backward()
    layers = [layer for layer in model.layers if layer.get_weights()]
    grads = [[v.value.grad.numpy() for v in layer.weights] for layer in layers]
    return out.detach().numpy(), {"layers": grads, "X": x.grad.numpy()}


def check(model, X, *, lengths=None, last=False, seed=2):
    """grusym's model of ``model`` computes Keras' output for X and every gradient of a weighted sum of it.

    last: the top layer has return_sequences=False, its output is the top rows of final_states (merged as
    its merge mode says); lengths: what grusym is given as lengths (None: the model's own Masking)."""
    ours, params = from_keras_layers(model)
    has_head = "W_hq" in params
    out_shape = keras.ops.convert_to_numpy(model(X)).shape
    weight = np.random.default_rng(seed).normal(size=out_shape)
    theirs, grads = keras_run(model, X, weight)
    Hs, cache = ours.forward(params, X, None, lengths)
    s = ours.structure
    if last:  # Keras' last output: the top layer's last states, merged
        top = ours.final_states(cache)
        top = top if len(ours.STATES) == 1 else top[0]
        parts = list(top[-len(s.directions) :])
        mine = ours._merge([p[:, None] for p in parts])[:, 0] if len(parts) == 2 else parts[0]
    else:
        mine = Hs
    got = ours.head(params, mine) if has_head else mine
    assert rel(got, theirs) <= RTOL
    if grads is None:
        return ours, params
    if last:
        dlast = np.zeros((len(s.cells), N, H))
        w_o = weight @ params["W_hq"].T if has_head else weight
        if len(s.directions) == 2:  # the merge's gradient, for concat/sum/ave/mul
            a, b = parts
            if s.merge == "concat":
                split = (w_o[:, :H], w_o[:, H:])
            else:
                split = {"sum": (w_o, w_o), "ave": (w_o / 2, w_o / 2), "mul": (w_o * b, w_o * a)}[s.merge]
            dlast[-2], dlast[-1] = split
        else:
            dlast[-1] = w_o
        g = ours.backward(params, cache, None, dlast if len(ours.STATES) == 1 else (dlast, None))
        if has_head:
            g["W_hq"], g["b_q"] = mine.T @ weight, weight.sum(axis=0)
    else:
        g = ours.backward(params, cache, weight @ params["W_hq"].T if has_head else weight)
        if has_head:
            g["W_hq"] = Hs.reshape(-1, Hs.shape[-1]).T @ weight.reshape(-1, Q)
            g["b_q"] = weight.reshape(-1, Q).sum(axis=0)
    ours_k = to_keras(ours, g, model, gradients=True)
    assert len(ours_k) == len(grads["layers"])
    for layer, (a, b) in enumerate(zip(ours_k, grads["layers"], strict=True)):
        assert all(rel(x, y) <= RTOL for x, y in zip(a, b, strict=True)), layer
    assert rel(g["X"], grads["X"]) <= RTOL
    return ours, params


STACKS = {  # name -> layers
    "one GRU": lambda: [rnn(reset_after=True)],
    "one GRU, reset before": lambda: [rnn(reset_after=False)],
    "two GRUs": lambda: [rnn(reset_after=False), rnn(reset_after=False)],
    "Bidirectional": lambda: [bi(rnn())],
    "two Bidirectional, sum": lambda: [bi(rnn(), "sum"), bi(rnn(), "sum")],
    "Bidirectional ave": lambda: [bi(rnn(reset_after=False), "ave")],
    "two Bidirectional, mul": lambda: [bi(rnn(), "mul"), bi(rnn(), "mul")],
    "two LSTMs": lambda: [rnn("LSTM"), rnn("LSTM")],
    "two Bidirectional LSTMs": lambda: [bi(rnn("LSTM")), bi(rnn("LSTM"))],
    "SimpleRNN": lambda: [rnn("SimpleRNN"), rnn("SimpleRNN")],
    "no bias": lambda: [rnn(use_bias=False), rnn("GRU", use_bias=False)],
    "a lone go_backwards GRU": lambda: [rnn(go_backwards=True)],
    "a lone go_backwards LSTM": lambda: [rnn("LSTM", go_backwards=True)],
}


@pytest.mark.parametrize("head", [True, False], ids=["dense", "headless"])
@pytest.mark.parametrize("name", list(STACKS))
def test_keras_stacks_compute_what_grusym_computes(name, head):
    _, params = check(stack(STACKS[name](), head=head), data())
    assert ({v.dtype for v in params.values()}) == {np.dtype(np.float64)}
    assert ("W_hq" in params) == head


LAST = {  # a top layer with return_sequences=False: its output is the last states
    "GRU": lambda: [rnn(), rnn(return_sequences=False)],
    "Bidirectional concat": lambda: [bi(rnn(return_sequences=False))],
    "Bidirectional mul": lambda: [bi(rnn(), "mul"), bi(rnn(return_sequences=False), "mul")],
    "go_backwards LSTM": lambda: [rnn("LSTM", go_backwards=True, return_sequences=False)],
}


@pytest.mark.parametrize("name", list(LAST))
def test_a_last_layer_without_sequences_returns_grusym_final_states(name):
    check(stack(LAST[name]()), data(2), last=True)


PADDING = {  # (starts, lengths) of the real steps of each sequence
    "pre-padded (pad_sequences' default)": (np.array([2, 0, 5]), np.array([4, 6, 1])),
    "post-padded": (np.array([0, 0, 0]), np.array([3, 6, 1])),
    "both sides": (np.array([1, 0, 2]), np.array([3, 5, 2])),
}
MASKED = {
    "GRU": lambda: [rnn()],
    "two GRUs, carried outputs": lambda: [rnn(), rnn()],
    "zero_output_for_mask": lambda: [rnn(), rnn(zero_output_for_mask=True)],
    "Bidirectional": lambda: [bi(rnn()), bi(rnn())],
    "Bidirectional sum LSTM": lambda: [bi(rnn("LSTM"), "sum")],
    "go_backwards": lambda: [rnn(go_backwards=True)],
}


@pytest.mark.parametrize("padding", list(PADDING))
@pytest.mark.parametrize("name", list(MASKED))
def test_masked_batches_compute_what_keras_computes(name, padding):
    """Regression: pre-padded batches and masks were refused. A Masking layer makes the model mask the
    steps whose features are all zero; Keras' outputs at the masked steps (zeros, or the last output
    carried on) are reproduced too."""
    X = data(3, PADDING[padding])
    ours, params = check(stack(MASKED[name](), masking=0.0), X)
    assert ours.mask_value == 0.0
    # a boolean mask given as lengths does the same, without the Masking layer
    starts, lengths = PADDING[padding]
    mask = (np.arange(T) >= starts[:, None]) & (np.arange(T) < (starts + lengths)[:, None])
    H_mask, _ = ours.forward(params, X, None, mask)
    assert np.array_equal(H_mask, ours.forward(params, X)[0])


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "Bidirectional"])
def test_a_stateful_layer_is_refused_or_imported_with_its_current_states(kind):
    """Regression: a stateful=True layer imported silently and started every batch from zeros (37 % off on
    the second batch); now it is refused by name, or states=True returns where its next batch starts."""
    inner = rnn("LSTM" if kind == "LSTM" else "GRU", stateful=True)
    model = stack([bi(inner) if kind == "Bidirectional" else inner], batch_size=N)
    model(data(6))  # the layer now holds the states the first batch left
    with pytest.raises(InputError, match=r"stateful=True.*states=True"):
        from_keras_layers(model)
    ours, params, h0 = from_keras_layers(model, states=True)
    assert np.abs(h0[0] if kind == "LSTM" else h0).max() > 0.05  # not zeros: the first batch moved them
    second = data(7)
    H2, cache = ours.forward(params, second, h0)
    assert rel(ours.head(params, H2), keras.ops.convert_to_numpy(model(second))) <= RTOL
    third = data(8)  # Keras carries on from the states the second batch left: so does grusym
    H3, _ = ours.forward(params, third, ours.final_states(cache))
    assert rel(ours.head(params, H3), keras.ops.convert_to_numpy(model(third))) <= RTOL


def test_states_true_without_a_stateful_layer_gives_none():
    _, _, h0 = from_keras_layers(stack([rnn()]), states=True)
    assert h0 is None


EXPORTS = {  # a grusym model (load arguments) -> the Keras stack it becomes
    "gru_reset_after, 2 layers": (("gru_reset_after", 2, False), lambda: [rnn(), rnn()]),
    "gru, bidirectional": (("gru", 1, True), lambda: [bi(rnn(reset_after=False))]),
    "lstm, 2 bidirectional layers": (("lstm", 2, True), lambda: [bi(rnn("LSTM")), bi(rnn("LSTM"))]),
    "rnn_tanh": (("rnn_tanh", 1, False), lambda: [rnn("SimpleRNN")]),
}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_to_keras_loads_a_whole_model_into_keras(name):
    """Regression: no LSTM export, no whole-stack export."""
    import grusym

    (cell, layers, bidirectional), make = EXPORTS[name]
    ours = grusym.load(cell, layers, bidirectional, batch_first=True)
    rng = np.random.default_rng(4)
    params = {k: rng.normal(0, 0.5, v.shape) for k, v in ours.init_params(D, H, Q).items()}
    model = stack(make(), seed=9)
    to_keras(ours, params, model)
    X = data(5)
    assert rel(keras.ops.convert_to_numpy(model(X)), ours.head(params, ours.forward(params, X)[0])) <= RTOL
    if cell != "lstm":  # lstm's two bias rows become Keras' one: the function survives, not the split
        _, back = from_keras_layers(model)
        assert all(np.array_equal(back[k], params[k]) for k in params)


def built(layer, width):
    layer(np.zeros((1, T, width)))
    return layer


BAD = [  # (a model or list of layers, words the message must contain)
    (lambda: [rnn(activation="relu")], ["activation='relu'", "'tanh'"]),
    (lambda: [rnn(recurrent_activation="hard_sigmoid")], ["recurrent_activation", "hard_sigmoid"]),
    (lambda: [rnn("SimpleRNN", activation="relu")], ["SimpleRNN layer", "activation='relu'"]),
    (lambda: [bi(rnn(), None)], ["merge_mode", "None", "two outputs"]),
    (lambda: [bi(rnn(), "sum"), bi(rnn(), "concat")], ["merge_mode", "the same in every layer"]),
    (lambda: [rnn(go_backwards=True), rnn()], ["go_backwards=True in a stack", "lone"]),
    (lambda: [rnn(), rnn(reset_after=False)], ["reset_after=False", "reset_after=True"]),
    (  # Keras refuses to compose these; a hand-made list of layers may still hold them
        lambda: [built(rnn(return_sequences=False), D), built(rnn(), H)],
        ["return_sequences=False"],
    ),
    (lambda: [rnn(), bi(rnn())], ["only GRU layers", "Bidirectional"]),
    (lambda: [rnn(), rnn("LSTM")], ["only GRU layers", "LSTM"]),
    (lambda: [rnn("LSTM", activation="relu")], ["LSTM layer", "activation='relu'"]),
    (lambda: [rnn(zero_output_for_mask=True, return_sequences=False)], ["zero_output_for_mask=True"]),
]


@pytest.mark.parametrize(("layers", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_layers_grusym_cannot_reproduce_are_refused_by_name(layers, words):
    given = layers()
    with pytest.raises(InputError) as info:
        from_keras_layers(given if given[0].built else stack(given, False))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_dense_head_with_an_activation_is_refused():
    model = randomize(
        keras.Sequential([keras.Input((T, D)), rnn(), keras.layers.Dense(Q, activation="softmax")])
    )
    with pytest.raises(InputError, match="activation='softmax'"):
        from_keras_layers(model)


def test_to_keras_gru_on_a_models_params_says_it_converts_one_cell():
    import grusym

    params = grusym.load("gru_reset_after", num_layers=2).init_params(D, H, Q)
    with pytest.raises(InputError, match=r"converts one cell.*2-layer.*to_keras\(model, params\)"):
        to_keras_gru(params)
    with pytest.raises(InputError, match="Keras has no layer for grusym's 'mgu'"):
        to_keras(grusym.load("mgu"), grusym.load("mgu").init_params(D, H, Q))
