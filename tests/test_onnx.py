"""ONNX GRU nodes against the two ONNX runtimes: the ``onnx`` package's reference evaluator and
``onnxruntime``; nodes built with ``onnx.helper`` (every direction, layout, linear_before_reset, with and
without sequence_lens and initial_h) and exported by ``torch.onnx.export``. Skipped without onnx.

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
from grusym.interop import from_onnx_gru, from_torch_gru  # noqa: E402

T, N, D, H = 5, 3, 4, 6
LENGTHS = np.array([3, 5, 1], dtype=np.int32)  # unsorted, one full, one of length 1
CASES = [
    (d, layout, lbr) for d in ("forward", "reverse", "bidirectional") for layout in (0, 1) for lbr in (0, 1)
]


def _ids(case):
    return f"{case[0]}-layout{case[1]}-lbr{case[2]}"


def _graph(direction, layout, lbr, dtype, lengths, initial_h, weights_as=TensorProto, **extra):
    """A one-node GRU model; weights are initializers (TensorProto with raw data, or float_data)."""
    nd = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.5, (nd, 3 * H, D)).astype(dtype)
    R = rng.normal(0, 0.5, (nd, 3 * H, H)).astype(dtype)
    B = rng.normal(0, 0.5, (nd, 6 * H)).astype(dtype)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    x_shape = [N, T, D] if layout else [T, N, D]
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(B, "B"),
    ]
    if weights_as == "float_data":  # the typed field instead of raw bytes
        inits = [helper.make_tensor(t.name, elem, t.dims, numpy_helper.to_array(t).ravel()) for t in inits]
    inputs = ["X", "W", "R", "B", "seq" if lengths else "", "h0" if initial_h else ""]
    node = helper.make_node(
        "GRU", inputs, ["Y", "Y_h"], hidden_size=H, direction=direction, layout=layout,
        linear_before_reset=lbr, **extra,
    )  # fmt: skip
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [N]))
    if initial_h:
        graph_inputs.append(helper.make_tensor_value_info("h0", elem, [N, nd, H] if layout else [nd, N, H]))
    graph = helper.make_graph(
        [node], "gru", graph_inputs,
        [helper.make_tensor_value_info("Y", elem, None), helper.make_tensor_value_info("Y_h", elem, None)],
        initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _feeds(direction, layout, dtype, lengths, initial_h):
    nd = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, T, D) if layout else (T, N, D)).astype(dtype)
    feeds = {"X": X}
    if lengths:
        feeds["seq"] = LENGTHS
    if initial_h:
        feeds["h0"] = rng.normal(0, 0.5, (N, nd, H) if layout else (nd, N, H)).astype(dtype)
    return feeds


def _ours(model_proto, feeds, layout):
    model, params = from_onnx_gru(model_proto)
    h0 = feeds.get("h0")
    if h0 is not None and layout:
        h0 = h0.swapaxes(0, 1)  # ONNX layout 1 puts the batch first in initial_h; grusym stacks directions
    single = not isinstance(model, grusym.model.Model)
    if single and h0 is not None:
        h0 = h0[0]  # the cell module takes (n, h)
    Hs, cache = model.forward(params, feeds["X"], h0, feeds.get("seq"))
    last = model.final_states(cache)
    nd = Hs.shape[-1] // H
    if layout:
        Y = Hs.reshape(N, T, nd, H)
        Y_h = last.swapaxes(0, 1)
    else:
        Y = Hs.reshape(T, N, nd, H).transpose(0, 2, 1, 3)
        Y_h = last[None] if single else last
    return Y, Y_h


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("initial_h", [False, True], ids=["h0-none", "h0"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_reference_evaluator_float64(case, initial_h):
    direction, layout, lbr = case
    proto = _graph(direction, layout, lbr, np.float64, False, initial_h)
    feeds = _feeds(direction, layout, np.float64, False, initial_h)
    Y_ref, Yh_ref = ReferenceEvaluator(proto).run(None, feeds)
    Y, Y_h = _ours(proto, feeds, layout)
    assert Y.shape == Y_ref.shape and Y_h.shape == Yh_ref.shape
    assert _rel(Y, Y_ref) <= 1e-13 and _rel(Y_h, Yh_ref) <= 1e-13


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_lens"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_onnxruntime_float32(case, lengths):
    """onnxruntime refuses layout 1 ("batchwise recurrent operations are not supported"): a layout-1 node
    is compared with onnxruntime running its layout-0 twin on the transposed data."""
    ort = pytest.importorskip("onnxruntime")
    direction, layout, lbr = case
    proto = _graph(direction, layout, lbr, np.float32, lengths, True, weights_as="float_data")
    feeds = _feeds(direction, layout, np.float32, lengths, True)
    twin = _graph(direction, 0, lbr, np.float32, lengths, True)
    feeds0 = {k: (v.swapaxes(0, 1) if layout and k != "seq" else v) for k, v in feeds.items()}
    session = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"])
    Y_ort, Yh_ort = session.run(None, feeds0)
    if layout:  # ONNX layout 1: Y (n, T, D, h), Y_h (n, D, h)
        Y_ort, Yh_ort = Y_ort.transpose(2, 0, 1, 3), Yh_ort.swapaxes(0, 1)
    Y, Y_h = _ours(proto, feeds, layout)
    assert Y.shape == Y_ort.shape and Y_h.shape == Yh_ort.shape
    assert _rel(Y, Y_ort) <= 2e-6 and _rel(Y_h, Yh_ort) <= 2e-6


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_torch_onnx_export_of_nn_gru(bidirectional):
    """nn.GRU exported by torch.onnx.export: its node converts to what torch and onnxruntime compute."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    gru = torch.nn.GRU(D, H, num_layers=2, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(N, T, D)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(gru, (x,), buffer, dynamo=False, input_names=["X"], output_names=["Y", "Y_h"])
    proto = onnx.load_from_string(buffer.getvalue())
    Y_ort, Yh_ort = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x.numpy()}
    )
    with torch.no_grad():
        out, h_n = gru(x)
    assert _rel(Y_ort, out.numpy()) <= 2e-6 and _rel(Yh_ort, h_n.numpy()) <= 2e-6  # the graph is the model

    nodes = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(nodes) == 2  # one node per layer
    whole = grusym.load("gru_reset_after", 2, bidirectional, batch_first=True)
    params = from_torch_gru(gru.state_dict())
    head = {"W_hq": np.zeros((H * (1 + bidirectional), 1), np.float32), "b_q": np.zeros(1, np.float32)}
    H_ours, cache = whole.forward({**params, **head}, x.numpy())
    assert _rel(H_ours, Y_ort) <= 2e-6 and _rel(whole.final_states(cache), Yh_ort) <= 2e-6

    inputs = x.numpy().swapaxes(0, 1)  # the exporter feeds the nodes time-major (layout 0)
    for node in nodes:  # each node alone, converted from ONNX, is that layer
        model, p = from_onnx_gru(node, proto.graph.initializer)
        Hn, _ = model.forward(p, inputs)
        inputs = Hn
    assert _rel(inputs.swapaxes(0, 1), Y_ort) <= 2e-6


def _node(**attrs):
    return _graph("forward", 0, 0, np.float64, False, False, **attrs)


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
]


@pytest.mark.parametrize(("call", "error", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_nodes_raise_a_grusym_error_naming_the_attribute(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_default_activations_spelled_out_are_accepted():
    proto = _node(activations=["Sigmoid", "Tanh"])
    feeds = _feeds("forward", 0, np.float64, False, False)
    Y_ref, _ = ReferenceEvaluator(proto).run(None, feeds)
    assert _rel(_ours(proto, feeds, 0)[0], Y_ref) <= 1e-13
