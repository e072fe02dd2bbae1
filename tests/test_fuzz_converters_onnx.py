"""Converter fuzz, ONNX: hypothesis draws graphs of a GRU, LSTM or RNN node (direction, layout,
linear_before_reset, sequence_lens, initial states, clip, activations spelled out or not; bare, with the
directions folded into the features, or batch-first through Transposes) and whole graphs torch.onnx.export
writes (layers, directions, batch_first, initial states), and each one must be imported exactly or refused
by name, never a silent mismatch. Exactly: ``read_onnx(graph).run(feeds)`` gives every graph output as
onnxruntime does (float32, 2e-6; a layout-1 node, which onnxruntime refuses, runs as its layout-0 twin on
transposed data) or as the onnx reference evaluator does (float64, 1e-12; it ignores sequence_lens, so
those draws go to onnxruntime). Default tier: the profile's examples, derandomized; --thorough: 20x.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from grusym.errors import InputError  # noqa: E402
from grusym.interop import read_onnx  # noqa: E402

T, N, D, H = 5, 3, 4, 3
GATES = {"GRU": 3, "LSTM": 4, "RNN": 1}
DEFAULT_ACTIVATIONS = {"GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "RNN": ["Tanh"]}
LENGTHS = np.array([5, 2, 4], np.int32)


@dataclass(frozen=True)
class Node:
    op: str
    direction: str
    layout: int
    lbr: int
    lengths: bool
    initial: bool
    clip: float | None
    activations: str  # "none", "default" (spelled out), "other"
    glue: str  # "bare", "folded", "batch-first"
    dtype: str  # "float32" (onnxruntime) or "float64" (the reference evaluator)


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    layout = draw(st.sampled_from([0, 1]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return Node(
        op=draw(st.sampled_from(sorted(GATES))),
        direction=draw(st.sampled_from(["forward", "reverse", "bidirectional"])),
        layout=layout,
        lbr=draw(st.sampled_from([0, 1])),
        lengths=dtype == "float32" and draw(st.booleans()),
        initial=draw(st.booleans()),
        clip=draw(st.sampled_from([None] * 5 + [2.5])),
        activations=draw(st.sampled_from(["none"] * 3 + ["default", "default", "other"])),
        glue=draw(st.sampled_from(["bare", "folded"] + (["batch-first"] if layout == 0 else []))),
        dtype=dtype,
    )


def _refusals(c: Node) -> list[str]:
    reasons = []
    if c.clip is not None:
        reasons.append("clip")
    if c.activations == "other":
        reasons.append("activations")
    if c.layout == 1 and c.initial:
        reasons.append("(n, D, h)")
    if c.layout == 1 and c.glue == "bare":
        reasons.append("layout-1")  # its Y_h output is (n, D, h)
    return reasons


def _graph(c: Node, layout: int, glue: str, weights, clip=True):
    """The drawn graph (or, with layout and glue overridden, its onnxruntime twin: a bare layout-0 node)."""
    nd = 2 if c.direction == "bidirectional" else 1
    elem = TensorProto.FLOAT if c.dtype == "float32" else TensorProto.DOUBLE
    states = ("h", "c") if c.op == "LSTM" else ("h",)
    attrs = {"hidden_size": H, "direction": c.direction, "layout": layout}
    if c.op == "GRU":
        attrs["linear_before_reset"] = c.lbr
    if c.clip is not None and clip:
        attrs["clip"] = c.clip
    if c.activations != "none":
        acts = (
            DEFAULT_ACTIVATIONS[c.op]
            if c.activations == "default"
            else ["Relu"] * len(DEFAULT_ACTIVATIONS[c.op])
        )
        attrs["activations"] = acts * nd
    inits = [numpy_helper.from_array(w, name) for w, name in zip(weights, "WRB", strict=True)]
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
              (("ax1", [1]), ("fold", [0, 0, -1]))]  # fmt: skip
    x = "X"
    graph_nodes = []
    batch_first = glue == "batch-first"
    if batch_first:
        graph_nodes.append(helper.make_node("Transpose", ["X"], ["Xt"], perm=[1, 0, 2]))
        x = "Xt"
    node_inputs = [
        x,
        "W",
        "R",
        "B",
        "seq" if c.lengths else "",
        *(f"{s}0" if c.initial else "" for s in states),
    ]
    outputs = ["Y", *(f"Y_{s}" for s in states)]
    graph_nodes.append(helper.make_node(c.op, node_inputs, outputs, **attrs))
    if glue in ("folded", "batch-first"):
        if layout == 0:
            folded = "Ht" if batch_first else "H"
            graph_nodes.append(helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]))
            graph_nodes.append(helper.make_node("Reshape", ["Yt", "fold"], [folded]))
        else:
            graph_nodes.append(helper.make_node("Reshape", ["Y", "fold"], ["H"]))
        if batch_first:
            graph_nodes.append(helper.make_node("Transpose", ["Ht"], ["H"], perm=[1, 0, 2]))
        outputs = ["H", *outputs[1:]] if layout == 0 else ["H"]
    x_shape = [N, T, D] if layout == 1 or batch_first else [T, N, D]
    inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    if c.lengths:
        inputs.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [N]))
    if c.initial:
        shape = [N, nd, H] if layout else [nd, N, H]
        inputs += [helper.make_tensor_value_info(f"{s}0", elem, shape) for s in states]
    outs = [helper.make_tensor_value_info(o, elem, None) for o in outputs]
    graph = helper.make_graph(graph_nodes, "g", inputs, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _oracle(c: Node, proto, weights, feeds):
    """The drawn graph's outputs: the reference evaluator on the graph itself (float64), or onnxruntime on
    a bare layout-0 twin, its Y and Y_h then laid out as the drawn graph lays them out (float32)."""
    if c.dtype == "float64":
        return ReferenceEvaluator(proto).run(None, feeds)
    twin = _graph(c, 0, "bare", weights)
    time_major = c.layout == 1 or c.glue == "batch-first"
    feeds0 = {k: (v.swapaxes(0, 1) if time_major and k != "seq" else v) for k, v in feeds.items()}
    if c.layout == 0:  # the initial states of a layout-0 node are (D, n, h) in both
        feeds0 |= {k: v for k, v in feeds.items() if k.endswith("0")}
    Y, *last = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds0
    )
    if c.glue == "bare":
        return [Y.transpose(2, 0, 1, 3) if c.layout else Y, *last]
    folded = Y.transpose(0, 2, 1, 3).reshape(T, N, -1)
    if c.layout == 1 or c.glue == "batch-first":
        folded = folded.swapaxes(0, 1)
    return [folded] if c.layout == 1 else [folded, *last]


@settings(max_examples=4 * settings.default.max_examples, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(c=nodes(), seed=st.integers(0, 2**16))
def test_every_onnx_node_graph_is_imported_exactly_or_refused_by_name(c: Node, seed: int) -> None:
    rng = np.random.default_rng(seed)
    nd, g = (2 if c.direction == "bidirectional" else 1), GATES[c.op]
    weights = [
        rng.normal(0, 0.5, s).astype(c.dtype) for s in ((nd, g * H, D), (nd, g * H, H), (nd, 2 * g * H))
    ]
    proto = _graph(c, c.layout, c.glue, weights)
    reasons = _refusals(c)
    try:
        found = read_onnx(proto)
    except InputError as error:
        assert reasons, f"refused a graph grusym reproduces: {error}"
        assert any(r in str(error) for r in reasons), (reasons, str(error))
        event("refused by name")
        return
    assert not reasons, f"imported what it should refuse ({reasons})"
    event(f"imported, {c.dtype}")
    batch_major = c.layout == 1 or c.glue == "batch-first"
    feeds = {"X": rng.normal(size=(N, T, D) if batch_major else (T, N, D)).astype(c.dtype)}
    if c.lengths:
        feeds["seq"] = LENGTHS
    if c.initial:
        for s in ("h", "c")[: 2 if c.op == "LSTM" else 1]:
            feeds[f"{s}0"] = rng.normal(0, 0.5, (N, nd, H) if c.layout else (nd, N, H)).astype(c.dtype)
    theirs = _oracle(c, proto, weights, feeds)
    errors = [_rel(a, b) for a, b in zip(found.run(feeds), theirs, strict=True)]
    assert max(errors) <= (1e-12 if c.dtype == "float64" else 2e-6), errors


@dataclass(frozen=True)
class Export:
    kind: str
    layers: int
    bidirectional: bool
    batch_first: bool
    initial: bool


@settings(max_examples=settings.default.max_examples, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    c=st.builds(
        Export,
        st.sampled_from(["GRU", "LSTM", "RNN"]),
        st.integers(1, 3),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    seed=st.integers(0, 2**16),
)
def test_every_torch_export_is_imported_exactly(c: Export, seed: int) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    module = getattr(torch.nn, c.kind)(D, H, num_layers=c.layers, bidirectional=c.bidirectional,
                                       batch_first=c.batch_first)  # fmt: skip
    x = torch.randn((N, T, D) if c.batch_first else (T, N, D))
    args, names, feeds = (x,), ["X"], {"X": x.numpy()}
    if c.initial:
        states = [
            torch.randn(c.layers * (1 + c.bidirectional), N, H) for _ in range(2 if c.kind == "LSTM" else 1)
        ]
        args = (x, tuple(states) if c.kind == "LSTM" else states[0])
        names += ["h0", "c0"][: len(states)]
        feeds |= {k: s.numpy() for k, s in zip(names[1:], states, strict=True)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, input_names=names)
    found = read_onnx(onnx.load_from_string(buffer.getvalue()))
    s = found.model.structure
    assert (s.num_layers, len(s.directions), s.batch_first) == (c.layers, 1 + c.bidirectional, c.batch_first)
    theirs = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(None, feeds)
    errors = [_rel(a, b) for a, b in zip(found.run(feeds), theirs, strict=True)]
    assert max(errors) <= 2e-6, errors
