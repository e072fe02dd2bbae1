"""ONNX GRU and LSTM nodes against the two ONNX runtimes: the ``onnx`` package's reference evaluator and
``onnxruntime``; nodes built with ``onnx.helper`` (every direction, layout and GRU linear_before_reset,
with and without sequence_lens and initial states) and exported by ``torch.onnx.export``. Skipped
without onnx.

The reference evaluator ignores ``sequence_lens`` (onnx/reference/ops/op_gru.py never reads it), so padded
batches are checked against onnxruntime only. onnxruntime's GRU computes in float32.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import grusym  # noqa: E402
from grusym.errors import InputError, ShapeError  # noqa: E402
from grusym.interop import from_onnx_gru, from_onnx_lstm, from_torch_gru  # noqa: E402

T, N, D, H = 5, 3, 4, 6
LENGTHS = np.array([3, 5, 1], dtype=np.int32)  # unsorted, one full, one of length 1
OPS = {  # op -> gate blocks, converter, its states (ONNX inputs initial_h, initial_c; outputs Y_h, Y_c)
    "GRU": (3, from_onnx_gru, ("h",)),
    "LSTM": (4, from_onnx_lstm, ("h", "c")),
}
DIRECTIONS = ("forward", "reverse", "bidirectional")
CASES = [("GRU", d, layout, lbr) for d in DIRECTIONS for layout in (0, 1) for lbr in (0, 1)]
CASES += [("LSTM", d, layout, None) for d in DIRECTIONS for layout in (0, 1)]


def _ids(case):
    return f"{case[0]}-{case[1]}-layout{case[2]}" + ("" if case[3] is None else f"-lbr{case[3]}")


def _graph(op, direction, layout, lbr, dtype, lengths, initial, weights_as=TensorProto, **extra):
    """A one-node GRU or LSTM model; weights are initializers (TensorProto with raw data, or float_data)."""
    gates, _, states = OPS[op]
    nd = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.5, (nd, gates * H, D)).astype(dtype)
    R = rng.normal(0, 0.5, (nd, gates * H, H)).astype(dtype)
    B = rng.normal(0, 0.5, (nd, 2 * gates * H)).astype(dtype)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    x_shape = [N, T, D] if layout else [T, N, D]
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(B, "B"),
    ]
    if weights_as == "float_data":  # the typed field instead of raw bytes
        inits = [helper.make_tensor(t.name, elem, t.dims, numpy_helper.to_array(t).ravel()) for t in inits]
    inputs = ["X", "W", "R", "B", "seq" if lengths else "", *((s + "0") if initial else "" for s in states)]
    outputs = ["Y", *(f"Y_{s}" for s in states)]
    attrs = {"linear_before_reset": lbr} if lbr is not None else {}
    node = helper.make_node(
        op, inputs, outputs, hidden_size=H, direction=direction, layout=layout, **attrs, **extra
    )
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [N]))
    if initial:
        shape = [N, nd, H] if layout else [nd, N, H]
        graph_inputs += [helper.make_tensor_value_info(s + "0", elem, shape) for s in states]
    graph = helper.make_graph(
        [node], op.lower(), graph_inputs, [helper.make_tensor_value_info(o, elem, None) for o in outputs],
        initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _feeds(op, direction, layout, dtype, lengths, initial):
    nd = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, T, D) if layout else (T, N, D)).astype(dtype)
    feeds = {"X": X}
    if lengths:
        feeds["seq"] = LENGTHS
    if initial:
        for s in OPS[op][2]:
            feeds[s + "0"] = rng.normal(0, 0.5, (N, nd, H) if layout else (nd, N, H)).astype(dtype)
    return feeds


def _ours(op, model_proto, feeds, layout):
    """grusym's Y, Y_h (and Y_c) in ONNX's layouts, from the converted node (the node alone: a whole
    layout-1 graph's (n, D, h) states are refused by from_onnx, the node's are documented)."""
    _, convert, states = OPS[op]
    model, params = convert(model_proto.graph.node[0], model_proto.graph.initializer)
    single = not isinstance(model, grusym.model.Model)
    h0 = None
    if feeds.get(states[0] + "0") is not None:
        # ONNX layout 1 puts the batch first in initial_h; grusym stacks directions first
        stacks = [feeds[s + "0"].swapaxes(0, 1) if layout else feeds[s + "0"] for s in states]
        stacks = [a[0] for a in stacks] if single else stacks  # the cell module takes (n, h)
        h0 = stacks[0] if len(stacks) == 1 else tuple(stacks)
    Hs, cache = model.forward(params, feeds["X"], h0, feeds.get("seq"))
    last = model.final_states(cache)
    last = (last,) if len(states) == 1 else last
    nd = Hs.shape[-1] // H
    if layout:
        return [Hs.reshape(N, T, nd, H), *(a.swapaxes(0, 1) for a in last)]
    return [Hs.reshape(T, N, nd, H).transpose(0, 2, 1, 3), *(a[None] if single else a for a in last)]


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _agree(ours, theirs, rtol):
    assert [a.shape for a in ours] == [b.shape for b in theirs]
    errors = [_rel(a, b) for a, b in zip(ours, theirs, strict=True)]
    assert max(errors) <= rtol, errors


@pytest.mark.parametrize("initial", [False, True], ids=["h0-none", "h0"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_reference_evaluator_float64(case, initial):
    op, direction, layout, lbr = case
    proto = _graph(op, direction, layout, lbr, np.float64, False, initial)
    feeds = _feeds(op, direction, layout, np.float64, False, initial)
    _agree(_ours(op, proto, feeds, layout), ReferenceEvaluator(proto).run(None, feeds), 1e-13)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_lens"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_onnxruntime_float32(case, lengths):
    """onnxruntime refuses layout 1 ("batchwise recurrent operations are not supported"): a layout-1 node
    is compared with onnxruntime running its layout-0 twin on the transposed data."""
    ort = pytest.importorskip("onnxruntime")
    op, direction, layout, lbr = case
    proto = _graph(op, direction, layout, lbr, np.float32, lengths, True, weights_as="float_data")
    feeds = _feeds(op, direction, layout, np.float32, lengths, True)
    twin = _graph(op, direction, 0, lbr, np.float32, lengths, True)
    feeds0 = {k: (v.swapaxes(0, 1) if layout and k != "seq" else v) for k, v in feeds.items()}
    session = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = session.run(None, feeds0)
    if layout:  # ONNX layout 1: Y (n, T, D, h), Y_h and Y_c (n, D, h)
        theirs = [theirs[0].transpose(2, 0, 1, 3), *(a.swapaxes(0, 1) for a in theirs[1:])]
    _agree(_ours(op, proto, feeds, layout), theirs, 2e-6)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("op", list(OPS))
def test_torch_onnx_export(op, bidirectional):
    """nn.GRU / nn.LSTM exported by torch.onnx.export: the graph is the torch model (onnxruntime), the
    whole model converted from torch computes it, and each exported node converted from ONNX is its layer."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from grusym.interop import from_torch_lstm

    torch.manual_seed(0)
    module, cell, from_torch = {
        "GRU": (torch.nn.GRU, "gru_reset_after", from_torch_gru),
        "LSTM": (torch.nn.LSTM, "lstm", from_torch_lstm),
    }[op]
    rnn = module(D, H, num_layers=2, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(N, T, D)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(rnn, (x,), buffer, dynamo=False, input_names=["X"])
    proto = onnx.load_from_string(buffer.getvalue())
    Y_ort, *last_ort = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x.numpy()}
    )
    with torch.no_grad():
        out, last_t = rnn(x)
    last_t = (last_t,) if op == "GRU" else last_t
    _agree([Y_ort, *last_ort], [out.numpy(), *(a.numpy() for a in last_t)], 2e-6)  # the graph is the model

    whole = grusym.load(cell, 2, bidirectional, batch_first=True)
    head = {"W_hq": np.zeros((H * (1 + bidirectional), 1), np.float32), "b_q": np.zeros(1, np.float32)}
    params = {**from_torch(rnn.state_dict()), **head}
    H_ours, cache = whole.forward(params, x.numpy())
    last = whole.final_states(cache)
    _agree([H_ours, *((last,) if op == "GRU" else last)], [Y_ort, *last_ort], 2e-6)

    nodes = [n for n in proto.graph.node if n.op_type == op]
    assert len(nodes) == 2  # one node per layer
    inputs = x.numpy().swapaxes(0, 1)  # the exporter feeds the nodes time-major (layout 0)
    for node in nodes:  # each node alone, converted from ONNX, is that layer
        model, p = OPS[op][1](node, proto.graph.initializer)
        inputs, _ = model.forward(p, inputs)
    assert _rel(inputs.swapaxes(0, 1), Y_ort) <= 2e-6


def _node(**attrs):
    return _graph("GRU", "forward", 0, 0, np.float64, False, False, **attrs)


def _lstm_node(**attrs):
    return _graph("LSTM", "forward", 0, None, np.float64, False, False, **attrs)


BAD = [  # (call, error, words the message must contain)
    (lambda: from_onnx_gru(_node(clip=3.0)), InputError, ["clip=3.0", "no clip"]),
    (
        lambda: from_onnx_gru(_node(activations=["Relu", "Tanh"])),
        InputError,
        ["activations=['Relu', 'Tanh']", "default"],
    ),
    (lambda: from_onnx_gru(_node(activation_alpha=[0.5])), InputError, ["activation_alpha"]),
    (lambda: from_onnx_gru(_node().graph.node[0], {}), InputError, ["'W'", "not an initializer"]),
    (
        lambda: from_onnx_gru(
            _node(), {"W": np.ones((1, 3 * H + 1, D)), "R": np.ones((1, 3 * H, H)), "B": np.ones((1, 6 * H))}
        ),
        ShapeError,
        ["W", "(num_directions = 1, 3h, d)"],
    ),
    (lambda: from_onnx_gru(helper.make_node("LSTM", ["X"], ["Y"])), InputError, ["GRU", "'LSTM'"]),
    (lambda: from_onnx_lstm(_lstm_node(input_forget=1)), InputError, ["input_forget=1"]),
    (lambda: from_onnx_lstm(_lstm_node(clip=1.0)), InputError, ["LSTM node", "clip"]),
    (
        lambda: from_onnx_lstm(_lstm_node(activations=["Sigmoid", "Tanh", "Relu"])),
        InputError,
        ["activations", "['Sigmoid', 'Tanh', 'Tanh']"],
    ),
]


@pytest.mark.parametrize(("call", "error", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_nodes_raise_a_grusym_error_naming_the_attribute(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_default_activations_spelled_out_are_accepted():
    proto = _node(activations=["Sigmoid", "Tanh"])
    feeds = _feeds("GRU", "forward", 0, np.float64, False, False)
    _agree(_ours("GRU", proto, feeds, 0), ReferenceEvaluator(proto).run(None, feeds), 1e-13)


def test_lstm_peepholes_are_refused_unless_zero():
    proto = _lstm_node()
    node = proto.graph.node[0]
    assert len(node.input) == 7  # X, W, R, B and empty sequence_lens, initial_h, initial_c
    node.input.append("P")  # input 7: the peepholes
    zeros = numpy_helper.from_array(np.zeros((1, 3 * H)), "P")
    proto.graph.initializer.append(zeros)
    from_onnx_lstm(proto)  # zero peepholes compute nothing: accepted
    proto.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.ones((1, 3 * H)), "P"))
    with pytest.raises(InputError, match="peephole"):
        from_onnx_lstm(proto)
