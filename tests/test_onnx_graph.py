"""Whole ONNX graphs (``from_onnx``, ``read_onnx``): what ``torch.onnx.export`` writes for nn.GRU, nn.LSTM
and nn.RNN (layers, directions, batch-first, initial states) imported whole and run by grusym, against
onnxruntime (float32, 2e-6) and the onnx reference evaluator (float64, 1e-12); glue grusym cannot place is
refused by name. Skipped without onnx / onnxruntime / torch.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from grusym.errors import InputError  # noqa: E402
from grusym.interop import from_onnx, from_onnx_gru, from_onnx_lstm, read_onnx  # noqa: E402

T, N, D, H = 5, 3, 4, 6
MODULES = {"GRU": torch.nn.GRU, "LSTM": torch.nn.LSTM, "RNN": torch.nn.RNN}


def export(module, args, names, dtype=torch.float32):
    """The ONNX bytes torch.onnx.export writes for ``module`` called on ``args``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.to(dtype), args, buffer, dynamo=False, input_names=names)
    return buffer.getvalue()


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _torch_case(kind, layers, bidirectional, batch_first, initial, dtype=torch.float32, seed=0):
    """A random torch module, its ONNX bytes, and feeds (input name -> array) for the graph."""
    torch.manual_seed(seed)
    module = MODULES[kind](D, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    module = module.to(dtype)
    x = torch.randn((N, T, D) if batch_first else (T, N, D), dtype=dtype)
    args, names, feeds = (x,), ["X"], {"X": x.numpy()}
    if initial:
        shape = (layers * (1 + bidirectional), N, H)
        states = [torch.randn(shape, dtype=dtype) for _ in range(2 if kind == "LSTM" else 1)]
        args = (x, tuple(states) if kind == "LSTM" else states[0])
        names += ["h0", "c0"][: len(states)]
        feeds |= {name: s.numpy() for name, s in zip(names[1:], states, strict=True)}
    return module, export(module, args, names, dtype), feeds


CASES = [  # (kind, layers, bidirectional, batch_first, initial states)
    ("GRU", 1, False, True, False),
    ("GRU", 2, True, True, True),
    ("GRU", 3, False, False, True),
    ("LSTM", 1, False, True, True),
    ("LSTM", 2, True, False, True),
    ("LSTM", 2, True, True, False),
    ("RNN", 2, True, True, True),
    ("RNN", 1, False, False, False),
]


def _id(case):
    kind, layers, bi, bf, initial = case
    return f"{kind}-{layers}l-{'bi' if bi else 'uni'}-{'nT' if bf else 'Tn'}" + ("-h0" if initial else "")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_torch_export_runs_in_grusym_as_in_onnxruntime(case):
    kind, layers, bidirectional, batch_first, _initial = case
    _, data, feeds = _torch_case(*case)
    found = read_onnx(onnx.load_from_string(data))
    s = found.model.structure
    assert (s.num_layers, len(s.directions), s.batch_first) == (layers, 1 + bidirectional, batch_first)
    assert found.inputs["X"] == "X" and set(found.inputs) == {"X", *(k for k in ("h0", "c0") if k in feeds)}
    theirs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    ours = found.run(feeds)
    assert [o[0] for o in found.outputs.values()] == ["H", *(["state"] * (2 if kind == "LSTM" else 1))]
    errors = [_rel(a, b) for a, b in zip(ours, theirs, strict=True)]
    assert max(errors) <= 2e-6, errors


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "RNN"][:4], ids=_id)
def test_a_float64_export_matches_the_reference_evaluator(case):
    _, data, feeds = _torch_case(*case, dtype=torch.float64)
    proto = onnx.load_from_string(data)
    theirs = ReferenceEvaluator(proto).run(None, feeds)
    errors = [_rel(a, b) for a, b in zip(read_onnx(proto).run(feeds), theirs, strict=True)]
    assert max(errors) <= 1e-12, errors


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_a_batch_first_export_is_read_batch_first(kind):
    """Regression: from_onnx_gru(model) of a batch-first nn.GRU export ignored the Transpose around the
    node: fed the file's own (n, T, d) input it returned the right shape, values 50 % off."""
    module, data, feeds = _torch_case(kind, 1, False, True, False, seed=3)
    convert = {"GRU": from_onnx_gru, "LSTM": from_onnx_lstm}[kind]
    model, params = convert(onnx.load_from_string(data))
    assert model.structure.batch_first
    H_ours, _ = model.forward(params, feeds["X"])
    Y = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert _rel(H_ours, Y) <= 2e-6
    with torch.no_grad():
        assert _rel(H_ours, module(torch.from_numpy(feeds["X"]))[0]) <= 2e-6


def test_from_onnx_gives_the_cells_and_no_head():
    _, data, feeds = _torch_case("GRU", 2, True, False, False)
    model, params = from_onnx(onnx.load_from_string(data))
    assert "W_hq" not in params and len(params) == 4 * 10
    H_ours, cache = model.forward(params, feeds["X"])
    Y, h_n = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert _rel(H_ours, Y) <= 2e-6 and _rel(model.final_states(cache), h_n) <= 2e-6


# ---- hand-built graphs: glue in the styles of the exporters, and what is refused


def _weights(op, nd, dtype=np.float32, seed=0):
    gates = {"GRU": 3, "LSTM": 4, "RNN": 1}[op]
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, 0.5, (nd, gates * H, D)).astype(dtype),
        rng.normal(0, 0.5, (nd, gates * H, H)).astype(dtype),
        rng.normal(0, 0.5, (nd, 2 * gates * H)).astype(dtype),
    ]


def _model(nodes, inputs, outputs, inits, opset=14):
    outs = [helper.make_tensor_value_info(o, 1, None) for o in outputs]
    graph = helper.make_graph(nodes, "g", inputs, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def tf2onnx_style_bidirectional():
    """The shape of tf2onnx's Keras Bidirectional(GRU) export: a batch-major input transposed, one
    bidirectional node, each direction sliced off, squeezed, transposed back and concatenated."""
    W, R, B = _weights("GRU", 2)
    inits = [numpy_helper.from_array(a, n) for a, n in zip((W, R, B), "WRB", strict=True)]
    inits += [_const("z0", [0]), _const("z1", [1]), _const("z2", [2]), _const("ax1", [1])]
    nodes = [
        helper.make_node("Transpose", ["X"], ["Xt"], perm=[1, 0, 2]),
        helper.make_node(
            "GRU",
            ["Xt", "W", "R", "B"],
            ["Y", "Y_h"],
            hidden_size=H,
            direction="bidirectional",
            linear_before_reset=1,
        ),
        helper.make_node("Slice", ["Y", "z0", "z1", "ax1"], ["Yf"]),
        helper.make_node("Slice", ["Y", "z1", "z2", "ax1"], ["Yb"]),
        helper.make_node("Squeeze", ["Yf", "ax1"], ["Yf2"]),
        helper.make_node("Squeeze", ["Yb", "ax1"], ["Yb2"]),
        helper.make_node("Transpose", ["Yf2"], ["Yf3"], perm=[1, 0, 2]),
        helper.make_node("Transpose", ["Yb2"], ["Yb3"], perm=[1, 0, 2]),
        helper.make_node("Concat", ["Yf3", "Yb3"], ["out"], axis=-1),
    ]
    return _model(nodes, [_value("X", [N, T, D])], ["out", "Y_h"], inits)


def test_tf2onnx_style_slices_and_concats_are_placed():
    proto = tf2onnx_style_bidirectional()
    found = read_onnx(proto)
    assert found.model.structure.batch_first and found.model.structure.directions == ("forward", "reverse")
    assert found.outputs == {"out": ("H",), "Y_h": ("state", "h", 0, 2)}
    X = np.random.default_rng(1).normal(size=(N, T, D)).astype(np.float32)
    theirs = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": X}
    )
    errors = [_rel(a, b) for a, b in zip(found.run({"X": X}), theirs, strict=True)]
    assert max(errors) <= 2e-6, errors


def _one_gru(extra_nodes, outputs, x_shape=(T, N, D), initial=None, layout=0, seq=None):
    W, R, B = _weights("GRU", 1)
    inits = [numpy_helper.from_array(a, n) for a, n in zip((W, R, B), "WRB", strict=True)]
    inits += [_const("ax1", [1]), _const("shape", [0, 0, -1])]
    inputs = [_value("X", list(x_shape))]
    if initial is not None:
        inputs.append(_value("h0", list(initial)))
    if seq is not None:
        inputs.append(_value(seq, [N], TensorProto.INT32))
    node = helper.make_node("GRU", ["X", "W", "R", "B", seq or "", "h0" if initial else ""], ["Y", "Y_h"],
                            hidden_size=H, layout=layout)  # fmt: skip
    return _model([node, *extra_nodes], inputs, outputs, inits)


def _transposed_features():
    proto = _one_gru([], ["Y"], x_shape=(T, D, N))
    proto.graph.node.insert(0, helper.make_node("Transpose", ["X"], ["Xt"], perm=[0, 2, 1]))
    proto.graph.node[1].input[0] = "Xt"
    return proto


def _computed_lengths():
    proto = _one_gru([], ["Y"], seq="s")
    proto.graph.node.insert(0, helper.make_node("Abs", ["s"], ["s2"]))
    proto.graph.node[1].input[4] = "s2"
    return proto


REFUSED = {  # graph -> words the message must contain
    "arithmetic after the node": (
        lambda: _one_gru([helper.make_node("Relu", ["Y"], ["out"])], ["out"]),
        ["Relu node", "not glue"],
    ),
    "time-major in, batch-first out": (
        lambda: _one_gru(
            [
                helper.make_node("Squeeze", ["Y", "ax1"], ["Ys"]),
                helper.make_node("Transpose", ["Ys"], ["out"], perm=[1, 0, 2]),
            ],
            ["out"],
        ),
        ["batch-major", "time-major", "one layout"],
    ),
    "layout-1 states out": (
        lambda: _one_gru([], ["Y", "Y_h"], x_shape=(N, T, D), layout=1),
        ["Y_h", "layout-1"],
    ),
    "layout-1 states in": (
        lambda: _one_gru([], ["Y"], x_shape=(N, T, D), layout=1, initial=(N, 1, H)),
        ["initial_h", "(n, D, h)"],
    ),
    "the features read from the wrong axis": (_transposed_features, ["features from axis 1"]),
    "lengths computed in the graph": (_computed_lengths, ["Abs node", "not glue"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_glue_grusym_cannot_place_is_refused_by_name(case):
    make, words = REFUSED[case]
    with pytest.raises(InputError) as info:
        from_onnx(make())
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# ---- grusym -> ONNX


EXPORTS = [  # (cell, layers, bidirectional, batch_first, initial states, lengths, head)
    ("gru_reset_after", 2, True, True, True, True, True),
    ("gru", 1, False, False, False, True, False),
    ("gru", 2, True, False, True, False, True),
    ("lstm", 2, True, True, True, True, False),
    ("lstm", 1, False, False, False, False, True),
    ("rnn_tanh", 3, False, True, True, True, False),
]


@pytest.mark.parametrize("case", EXPORTS, ids=lambda c: f"{c[0]}-{c[1]}l-{'bi' if c[2] else 'uni'}")
def test_to_onnx_writes_what_onnxruntime_runs_as_grusym(case, tmp_path):
    """Regression: there was no exporter. The file onnxruntime runs gives grusym's outputs, last states and
    logits (float32, 2e-6), and from_onnx reads it back to the same params, exactly."""
    import grusym
    from grusym.interop import to_onnx

    cell, layers, bidirectional, batch_first, initial, lengths, head = case
    m = grusym.load(cell, layers, bidirectional, batch_first)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in m.init_params(D, H, 5).items()}
    if not head:
        params = {k: v for k, v in params.items() if k not in ("W_hq", "b_q")}
    path = tmp_path / "model.onnx"
    to_onnx(m, params, path, initial_states=initial, lengths=lengths)
    X = rng.normal(size=(N, T, D) if batch_first else (T, N, D)).astype(np.float32)
    feeds = {"X": X}
    K = layers * (1 + bidirectional)
    states = [rng.normal(0, 0.5, (K, N, H)).astype(np.float32) for _ in m.STATES]
    if initial:
        feeds |= {f"{s}0": a for s, a in zip(m.STATES, states, strict=True)}
    if lengths:
        feeds["lengths"] = np.array([T, 2, 4], np.int32)
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    h0 = (states[0] if len(states) == 1 else tuple(states)) if initial else None
    H_ours, last = m.predict(params, X, h0, feeds.get("lengths"))
    ours = [H_ours, *((last,) if len(states) == 1 else last), *([m.head(params, H_ours)] if head else [])]
    errors = [_rel(a, b) for a, b in zip(ours, theirs, strict=True)]
    assert max(errors) <= 2e-6, errors
    found = read_onnx(onnx.load(str(path)))
    assert found.model.structure == m.structure and found.inputs == {
        "X": "X",
        **{k: k for k in feeds if k != "X"},
    }
    assert list(found.params) == list(params) and all(
        np.array_equal(found.params[k], params[k]) for k in params
    )
    errors = [_rel(a, b) for a, b in zip(found.run(feeds), theirs, strict=True)]
    assert max(errors) <= 2e-6, errors


def test_a_torch_linear_head_is_read_as_grusyms_head():
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(D, H, num_layers=2, bidirectional=True, batch_first=True)
            self.fc = torch.nn.Linear(2 * H, 5)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    torch.manual_seed(2)
    x = torch.randn(N, T, D)
    data = export(Tagger(), (x,), ["X"])
    found = read_onnx(onnx.load_from_string(data))
    assert list(found.outputs.values()) == [("logits",)] and "W_hq" in found.params
    theirs = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x.numpy()})
    assert _rel(found.run({"X": x.numpy()})[0], theirs[0]) <= 2e-6


def test_to_onnx_refuses_what_onnx_cannot_express():
    import grusym
    from grusym.interop import to_onnx
    from grusym.model import build

    with pytest.raises(InputError, match="ONNX has no node for grusym's 'mgu'"):
        to_onnx(grusym.load("mgu"), grusym.load("mgu").init_params(D, H, 5))
    summed = build(grusym.load("gru"), 1, True, merge="sum")
    with pytest.raises(InputError, match="merge='sum'"):
        to_onnx(summed, summed.init_params(D, H, 5))


def test_from_onnx_gru_keeps_a_graphs_own_head():
    """from_onnx_gru pads a headless graph with a zero head (as for one node); a graph's own head stays."""
    import grusym
    from grusym.interop import to_onnx

    m = grusym.load("gru_reset_after", num_layers=1)
    params = {k: v.astype(np.float32) for k, v in m.init_params(D, H, 5, scale=0.5).items()}
    params["b_q"] = np.arange(5, dtype=np.float32)
    _, got = from_onnx_gru(to_onnx(m, params))
    assert np.array_equal(got["W_hq"], params["W_hq"]) and np.array_equal(got["b_q"], params["b_q"])
