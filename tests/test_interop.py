"""PyTorch and Keras layouts, without either library: each converter is checked against the library's own
cell equations written out here in NumPy (Keras: keras/src/layers/rnn/gru.py, GRUCell.call; PyTorch: the
nn.GRU docstring), not against the generator."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import grusym
from grusym.errors import DTypeError, GrusymError, InputError, ParameterError, ShapeError
from grusym.interop import (
    from_keras_gru,
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_keras_gru,
    to_torch_gru,
    to_torch_rnn,
)

T, N, D, H, Q = 4, 3, 5, 6, 7
RTOL = 1e-13  # same arithmetic, different association order


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def keras_gru(X, h0, kernel, recurrent_kernel, bias, reset_after):
    """Keras GRUCell.call (implementation 2), for every t: returns H (T, n, h)."""
    u = h0.shape[1]
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, None)
    h, out = h0, []
    for x in X:
        x_z, x_r, x_h = np.split(x @ kernel + b_in, 3, axis=1)
        inner = h @ recurrent_kernel + b_rec if reset_after else h @ recurrent_kernel[:, : 2 * u]
        z = _sigmoid(x_z + inner[:, :u])
        r = _sigmoid(x_r + inner[:, u : 2 * u])
        rec_h = r * inner[:, 2 * u :] if reset_after else (r * h) @ recurrent_kernel[:, 2 * u :]
        hh = np.tanh(x_h + rec_h)
        h = z * h + (1 - z) * hh
        out.append(h)
    return np.stack(out)


def torch_gru(X, h0, sd):
    """nn.GRU as its docstring states it (row blocks r, z, n; h' = (1 - z)*n + z*h): returns H (T, n, h)."""
    W_i, W_h = np.split(sd["weight_ih_l0"], 3), np.split(sd["weight_hh_l0"], 3)
    b_i, b_h = np.split(sd["bias_ih_l0"], 3), np.split(sd["bias_hh_l0"], 3)
    h, out = h0, []
    for x in X:
        r = _sigmoid(x @ W_i[0].T + b_i[0] + h @ W_h[0].T + b_h[0])
        z = _sigmoid(x @ W_i[1].T + b_i[1] + h @ W_h[1].T + b_h[1])
        n = np.tanh(x @ W_i[2].T + b_i[2] + r * (h @ W_h[2].T + b_h[2]))
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    err = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def _data(rng, dtype=np.float64):
    return rng.normal(size=(T, N, D)).astype(dtype), rng.normal(0, 0.5, (N, H)).astype(dtype)


def _keras_weights(rng, reset_after, dtype=np.float64):
    bias_shape = (2, 3 * H) if reset_after else (3 * H,)
    return tuple(rng.normal(0, 0.5, s).astype(dtype) for s in ((D, 3 * H), (H, 3 * H), bias_shape))


def _torch_state(rng, dtype=np.float64):
    shapes = {
        "weight_ih_l0": (3 * H, D),
        "weight_hh_l0": (3 * H, H),
        "bias_ih_l0": (3 * H,),
        "bias_hh_l0": (3 * H,),
    }
    return {k: rng.normal(0, 0.5, s).astype(dtype) for k, s in shapes.items()}


def _head(params, rng, dtype=np.float64):
    return {**params, "W_hq": rng.normal(size=(H, Q)).astype(dtype), "b_q": rng.normal(size=Q).astype(dtype)}


def _ours(variant, params, X, h0):
    return grusym.load(variant).forward(params, X, h0)[0]


@pytest.mark.parametrize(("reset_after", "variant"), [(True, "gru_reset_after"), (False, "gru")])
def test_keras_weights_compute_what_keras_computes(rng, reset_after, variant):
    weights = _keras_weights(rng, reset_after)
    X, h0 = _data(rng)
    params = _head(from_keras_gru(*weights, reset_after=reset_after), rng)
    _close(_ours(variant, params, X, h0), keras_gru(X, h0, *weights, reset_after))


@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_without_bias_means_zero_bias(rng, reset_after):
    kernel, recurrent, bias = _keras_weights(rng, reset_after)
    params = from_keras_gru(kernel, recurrent, None, reset_after=reset_after)
    assert all(not v.any() for k, v in params.items() if k.startswith("b_"))
    X, h0 = _data(rng)
    variant = "gru_reset_after" if reset_after else "gru"
    _close(
        _ours(variant, _head(params, rng), X, h0), keras_gru(X, h0, kernel, recurrent, 0 * bias, reset_after)
    )


@pytest.mark.parametrize(("reset_after", "variant"), [(True, "gru_reset_after"), (False, "gru")])
def test_keras_round_trips(rng, reset_after, variant):
    params = _head(grusym.load(variant).init_params(D, H, Q, seed=1, scale=0.5), rng)
    params = {k: (v if v.ndim == 2 else rng.normal(size=v.shape)) for k, v in params.items()}
    weights, dense = to_keras_gru(params, reset_after=reset_after)
    back = from_keras_gru(*weights, reset_after=reset_after, head=tuple(dense))
    assert list(back) == list(params)
    assert all(np.array_equal(back[k], params[k]) for k in params)  # params -> Keras -> params is exact

    original = _keras_weights(rng, reset_after)
    again, none = to_keras_gru(from_keras_gru(*original, reset_after=reset_after), reset_after=reset_after)
    assert none is None
    assert np.array_equal(again[0], original[0]) and np.array_equal(again[1], original[1])
    X, h0 = _data(rng)
    _close(keras_gru(X, h0, *again, reset_after), keras_gru(X, h0, *original, reset_after))  # same function
    if reset_after:  # ... but the r, z parts of the recurrent bias row moved into the input row
        assert not again[2][1, : 2 * H].any()
        _close(again[2].sum(axis=0)[: 2 * H], original[2].sum(axis=0)[: 2 * H])


def test_keras_dense_head_is_used_unchanged(rng):
    kernel, b = rng.normal(size=(H, Q)), rng.normal(size=Q)
    params = from_keras_gru(*_keras_weights(rng, True), head=(kernel, b))
    assert np.array_equal(params["W_hq"], kernel) and np.array_equal(params["b_q"], b)
    assert params["W_hq"] is not kernel
    assert not from_keras_gru(*_keras_weights(rng, True), head=(kernel, None))["b_q"].any()


def test_torch_state_computes_what_nn_gru_documents(rng):
    sd = _torch_state(rng)
    X, h0 = _data(rng)
    params = _head(from_torch_gru(sd), rng)
    _close(_ours("gru_reset_after", params, X, h0), torch_gru(X, h0, sd))


def test_torch_round_trips(rng):
    params = _head(grusym.load("gru_reset_after").init_params(D, H, Q, seed=2, scale=0.5), rng)
    params = {k: (v if v.ndim == 2 else rng.normal(size=v.shape)) for k, v in params.items()}
    sd, linear = to_torch_gru(params)
    assert np.array_equal(linear["weight"], params["W_hq"].T) and np.array_equal(
        linear["bias"], params["b_q"]
    )
    back = from_torch_gru(sd, head=linear)
    assert list(back) == list(params)
    assert all(np.array_equal(back[k], params[k]) for k in params)  # params -> torch -> params is exact

    original = _torch_state(rng)
    again, none = to_torch_gru(from_torch_gru(original))
    assert none is None
    for k in ("weight_ih_l0", "weight_hh_l0"):
        assert np.array_equal(again[k], original[k])
    assert np.array_equal(again["bias_hh_l0"][2 * H :], original["bias_hh_l0"][2 * H :])
    assert not again["bias_hh_l0"][: 2 * H].any()  # the split moved; the sum is kept:
    _close(again["bias_ih_l0"][: 2 * H], (original["bias_ih_l0"] + original["bias_hh_l0"])[: 2 * H])
    X, h0 = _data(rng)
    _close(torch_gru(X, h0, again), torch_gru(X, h0, original))


def test_torch_without_bias_means_zero_bias(rng):
    sd = {k: v for k, v in _torch_state(rng).items() if k.startswith("weight")}
    assert all(not v.any() for k, v in from_torch_gru(sd).items() if k.startswith("b_"))


class _Tensor:
    """Quacks like a torch tensor that needs grad: np.asarray on it would fail, .detach() is required."""

    def __init__(self, a):
        self._a = a

    def __array__(self, *args, **kwargs):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")

    def detach(self):
        return _Detached(self._a)


class _Detached:
    def __init__(self, a):
        self._a = a

    def cpu(self):
        return self

    def numpy(self):
        return self._a  # shares memory, as torch does: the converter must copy


def test_a_state_dict_nested_in_a_bigger_module_is_found(rng):
    """Regression: keys such as encoder.rnn.weight_ih_l0 needed their prefixes stripped by hand."""
    sd = _torch_state(rng)
    whole = {
        "encoder.embedding.weight": rng.normal(size=(9, D)),
        **{"encoder.rnn." + k: v for k, v in sd.items()},
        "fc.weight": rng.normal(size=(Q, H)),
        "fc.bias": rng.normal(size=Q),
    }
    want = from_torch_gru(sd)
    for got in (from_torch_gru(whole), from_torch_gru(whole, prefix="encoder.rnn.")):
        assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_cell_state_dicts_convert_both_ways(rng):
    """A GRUCell's keys have no _l0 suffix (regression: refused, telling the user to pass what they did)."""
    sd = _torch_state(rng)
    cell = {k.removesuffix("_l0"): v for k, v in sd.items()}
    params = from_torch_gru(cell)
    assert all(np.array_equal(params[k], v) for k, v in from_torch_gru(sd).items())
    back, _ = to_torch_gru(params, cell=True)
    assert set(back) == set(cell)
    assert all(np.array_equal(v, from_torch_gru(back)[k]) for k, v in params.items())


def test_bias_false_emits_no_bias(rng):
    sd = {k: v for k, v in _torch_state(rng).items() if k.startswith("weight")}
    params = from_torch_gru(sd)  # nn.GRU(bias=False): zero biases
    back, _ = to_torch_gru(params, bias=False)
    assert set(back) == set(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)
    grads, _ = to_torch_gru({**params, "b_z": np.ones(H)}, gradients=True, bias=False)
    assert set(grads) == set(sd)  # a gradient on a bias torch does not have is dropped, not refused


def torch_rnn(X, h0, sd):
    """nn.RNN as its docstring states it: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""
    h, out = h0, []
    for x in X:
        h = np.tanh(x @ sd["weight_ih_l0"].T + sd["bias_ih_l0"] + h @ sd["weight_hh_l0"].T + sd["bias_hh_l0"])
        out.append(h)
    return np.stack(out)


def test_rnn_state_dicts_compute_what_nn_rnn_documents(rng):
    sd = {
        "weight_ih_l0": rng.normal(0, 0.5, (H, D)),
        "weight_hh_l0": rng.normal(0, 0.5, (H, H)),
        "bias_ih_l0": rng.normal(0, 0.5, H),
        "bias_hh_l0": rng.normal(0, 0.5, H),
    }
    X, h0 = _data(rng)
    params = from_torch_rnn(sd)
    _close(grusym.load("rnn_tanh").forward(params, X, h0)[0], torch_rnn(X, h0, sd))
    back, _ = to_torch_rnn(params)
    _close(grusym.load("rnn_tanh").forward(from_torch_rnn(back), X, h0)[0], torch_rnn(X, h0, sd))
    with pytest.raises(InputError, match="nonlinearity"):
        from_torch_rnn(sd, nonlinearity="sigmoid")


def test_tensor_like_values_are_detached_and_copied(rng):
    sd = _torch_state(rng)
    params = from_torch_gru({k: _Tensor(v) for k, v in sd.items()})
    expected = from_torch_gru(sd)
    assert all(np.array_equal(params[k], expected[k]) for k in expected)
    sd["weight_ih_l0"][:] = 0.0  # training the torch model afterwards must not touch our params
    assert params["W_xz"].any()


def test_float32_stays_float32(rng):
    params = from_torch_gru(_torch_state(rng, np.float32))
    assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}
    sd, _ = to_torch_gru(params)
    assert {v.dtype for v in sd.values()} == {np.dtype(np.float32)}
    weights, _ = to_keras_gru(from_keras_gru(*_keras_weights(rng, True, np.float32)))
    assert {w.dtype for w in weights} == {np.dtype(np.float32)}


def _sd(**change):
    sd = _torch_state(np.random.default_rng(0))
    for k, v in change.items():
        if v is None:
            del sd[k]
        else:
            sd[k] = v
    return sd


def _kw(reset_after=True, **change):
    kernel, recurrent, bias = _keras_weights(np.random.default_rng(0), reset_after)
    return {
        "kernel": kernel,
        "recurrent_kernel": recurrent,
        "bias": bias,
        "reset_after": reset_after,
        **change,
    }


def _reset_after_params():
    return grusym.load("gru_reset_after").init_params(D, H, Q)


BAD = [  # (call, error, words the message must contain)
    (lambda: from_torch_gru(_sd(weight_hh_l0=None)), ParameterError, ["weight_hh_l0", "missing"]),
    (lambda: from_torch_gru(_sd(bias_hh_l0=None)), ParameterError, ["bias_hh_l0", "both"]),
    # a layer or direction half there: the missing keys are named
    (lambda: from_torch_gru({**_sd(), "weight_ih_l1": 0}), ParameterError, ["missing", "'weight_hh_l1'"]),
    (
        lambda: from_torch_gru({**_sd(), "bias_ih_l0_reverse": 0}),
        ParameterError,
        ["missing", "'weight_ih_l0_reverse'", "two directions"],
    ),
    (  # an nn.LSTM's state dict has the same keys, with 4 gate blocks
        lambda: from_torch_gru(
            {k: np.ones((4 * H, *v.shape[1:])) for k, v in _sd().items()}
            | {"weight_hh_l0": np.ones((4 * H, H))}
        ),
        ShapeError,
        ["weight_hh_l0", "(3h, h)", "(24, 6)", "nn.LSTM"],
    ),
    (lambda: from_torch_lstm(_sd()), ShapeError, ["weight_hh_l0", "(4h, h)", "nn.LSTM", "nn.GRU?"]),
    (  # two RNNs in one state dict: which one is meant is not guessed
        lambda: from_torch_gru({**{"enc.rnn." + k: v for k, v in _sd().items()}, "dec.gru.weight_ih_l0": 0}),
        ParameterError,
        ["several RNNs", "'dec.gru.'", "'enc.rnn.'", "prefix="],
    ),
    (
        lambda: from_torch_gru({"gru." + k: v for k, v in _sd().items()}, prefix="rnn."),
        ParameterError,
        ["'rnn.'"],
    ),
    (  # an unknown key under the RNN's own prefix is still named
        lambda: from_torch_gru({**{"gru." + k: v for k, v in _sd().items()}, "gru.extra": 0}),
        ParameterError,
        ["unexpected", "'extra'"],
    ),
    (
        lambda: from_torch_gru(_sd(weight_ih_l0=np.ones((3 * H + 1, D)))),
        ShapeError,
        ["weight_ih_l0", "(3h, d)", "19, 5"],
    ),
    (
        lambda: from_torch_gru(_sd(weight_hh_l0=np.ones((3 * H, H + 1)))),
        ShapeError,
        ["weight_hh_l0", "(18, 6)", "(18, 7)"],
    ),
    (
        lambda: from_torch_gru(_sd(bias_ih_l0=np.ones(3 * H - 1))),
        ShapeError,
        ["bias_ih_l0", "(18,)", "(17,)"],
    ),
    (
        lambda: from_torch_gru(_sd(weight_ih_l0=np.ones((3 * H, D), int))),
        DTypeError,
        ["weight_ih_l0", "int64"],
    ),
    (lambda: from_torch_gru(_sd(bias_ih_l0=np.ones(3 * H, np.float32))), DTypeError, ["float32", "float64"]),
    (lambda: from_torch_gru([1, 2]), ParameterError, ["state_dict", "list"]),
    (
        lambda: from_torch_gru(_sd(), head={"weight": np.ones((Q, H + 1))}),
        ShapeError,
        ["head['weight']", "(q, h = 6)"],
    ),
    (lambda: from_torch_gru(_sd(), head={"W": np.ones((Q, H))}), ParameterError, ["nn.Linear", "'W'"]),
    (  # regression: a key list instead of the reason
        lambda: to_torch_gru(grusym.load("gru").init_params(D, H, Q)),
        ParameterError,
        ["'gru' parameters", "nn.GRU cannot express reset-before", "use gru_reset_after"],
    ),
    (
        lambda: to_torch_gru(grusym.load("gru", num_layers=2).init_params(D, H, Q)),
        ParameterError,
        ["'gru' parameters", "reset-before"],
    ),
    (
        lambda: to_torch_gru({**_reset_after_params(), "b_z": np.ones(H)}, bias=False),
        InputError,
        ["params['b_z'] is not zero", "bias=False"],
    ),
    (
        lambda: to_torch_gru(grusym.load("gru_reset_after", 2).init_params(D, H, Q), cell=True),
        InputError,
        ["GRUCell", "2-layer"],
    ),
    (lambda: to_torch_gru({**_reset_after_params(), "b_q": None}), GrusymError, ["b_q"]),
    (
        lambda: to_torch_gru({k: v for k, v in _reset_after_params().items() if k != "b_q"}),
        ParameterError,
        ["W_hq", "b_q"],
    ),
    (
        lambda: from_keras_gru(**_kw(bias=np.ones(3 * H))),
        ShapeError,
        ["bias", "(2, 3h) = (2, 18)", "(18,)", "reset_after"],
    ),
    (
        lambda: from_keras_gru(**_kw(False, bias=np.ones((2, 3 * H)))),
        ShapeError,
        ["bias", "(3h,) = (18,)", "(2, 18)"],
    ),
    (
        lambda: from_keras_gru(**_kw(kernel=np.ones((D, 3 * H + 2)))),
        ShapeError,
        ["kernel", "(d, 3h)", "(5, 20)"],
    ),
    (
        lambda: from_keras_gru(**_kw(recurrent_kernel=np.ones((H, 3 * H - 3)))),
        ShapeError,
        ["recurrent_kernel", "(6, 18)", "(6, 15)"],
    ),
    (lambda: from_keras_gru(**_kw(reset_after="yes")), InputError, ["reset_after", "'yes'"]),
    (
        lambda: from_keras_gru(**_kw(), head=(np.ones((H + 1, Q)), None)),
        ShapeError,
        ["head kernel", "(h = 6, q)"],
    ),
    (
        lambda: to_keras_gru(_reset_after_params(), reset_after=False),
        ParameterError,
        ["'gru' parameters", "b_xh", "match 'gru_reset_after'"],
    ),
]


@pytest.mark.parametrize(("call", "error", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_a_grusym_error_naming_it(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_interop_imports_no_framework_nor_sympy():
    code = textwrap.dedent("""
        import sys
        for name in ("torch", "sympy", "tensorflow", "keras", "onnx", "onnxruntime"):
            sys.modules[name] = None  # importing fails
        import numpy as np
        from grusym import interop
        sd, _ = interop.to_torch_gru(interop.from_torch_gru({
            "weight_ih_l0": np.ones((6, 3)), "weight_hh_l0": np.ones((6, 2)),
            "bias_ih_l0": np.ones(6), "bias_hh_l0": np.ones(6)}))
        interop.convert(interop.from_keras_gru(np.ones((3, 6)), np.ones((2, 6)), None, reset_after=False),
                        "gru", "gru_chung")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
