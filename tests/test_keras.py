"""Keras 3 stacks against grusym's model from ``from_keras_layers`` and back through ``to_keras``: GRU
(reset_after True and False), LSTM and SimpleRNN layers, stacked, Bidirectional with every merge mode, a
lone go_backwards layer, masks (a Masking layer; padded before or after the real steps), stateful layers,
Dense heads. In float64 (Keras told to compute in float64: tests/keras_harness.py): outputs, last states
and every gradient (each Keras variable's, through torch autograd, and X's) to 1e-12. Skipped without Keras.
"""

from __future__ import annotations

import numpy as np
import pytest

from grusym.errors import InputError
from grusym.interop import from_keras_layers, to_keras, to_keras_gru

from .keras_harness import (
    RTOL,
    D,
    H,
    N,
    Q,
    T,
    bi,
    check,
    data,
    float64,
    keras,
    randomize,
    rel,
    rnn,
    stack,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras's own np.array(copy=...) use


@pytest.fixture(autouse=True)
def _float64():
    with float64():
        yield


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
