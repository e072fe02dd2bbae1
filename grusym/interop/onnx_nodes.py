"""ONNX ``GRU`` nodes -> a grusym model and its parameters.

ONNX ``GRU`` (opset 7-22): inputs ``X``, ``W`` (D, 3h, d), ``R`` (D, 3h, h) with row blocks z, r, h,
``B`` (D, 6h) = ``[Wb_z, Wb_r, Wb_h, Rb_z, Rb_r, Rb_h]``, ``sequence_lens`` (n,), ``initial_h``; attributes
``direction`` (forward, reverse, bidirectional: D = 1, 1, 2), ``layout`` (0: X (T, n, d), Y (T, D, n, h);
1: X (n, T, d), Y (n, T, D, h)), ``linear_before_reset`` (0: the reset gate before the hidden matmul,
variant ``gru``; else after it, ``gru_reset_after``), ``hidden_size``; ``h = (1-z)*h_tilde + z*h_prev``.
grusym implements the default activations (Sigmoid, Tanh) and no ``clip``: other values are refused.

Contract: NumPy only, ``onnx`` is never imported: nodes and tensors are read through their protobuf
fields (``op_type``, ``attribute``, ``input``; ``dims``, ``data_type``, ``raw_data``, ``float_data``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .. import load
from ..errors import DTypeError, InputError, ShapeError
from ..model import Model, build
from ..model.structure import Structure
from ..validate import shape_text
from ._common import Cell, Params, array, blocks, expect, join_cells, one_dtype

__all__ = ["from_onnx_gru", "from_onnx_lstm"]

_GATES = ("z", "r", "h")  # ONNX row blocks
_DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}
_REFUSED = ("clip", "activation_alpha", "activation_beta")
# AttributeProto.type and TensorProto.data_type codes (onnx.proto, stable since IR version 3)
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_STRINGS = 1, 2, 3, 8
_TENSOR_DTYPES = {1: np.float32, 11: np.float64}


def _attributes(node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        kind = a.type
        if kind == _ATTR_INT:
            out[a.name] = int(a.i)
        elif kind == _ATTR_FLOAT:
            out[a.name] = float(a.f)
        elif kind == _ATTR_STRING:
            out[a.name] = a.s.decode()
        elif kind == _ATTR_STRINGS:
            out[a.name] = [s.decode() for s in a.strings]
        else:
            out[a.name] = a  # read only to be named in an error
    return out


def _tensor(name: str, value: Any) -> Any:
    """A TensorProto's values as a NumPy array (float or double, raw or typed fields); anything else as is."""
    if not (hasattr(value, "data_type") and hasattr(value, "dims")):
        return array(name, value)
    dtype = _TENSOR_DTYPES.get(int(value.data_type))
    if dtype is None:
        raise DTypeError(f"{name} has ONNX data_type {value.data_type}; expected FLOAT (1) or DOUBLE (11)")
    shape = tuple(int(s) for s in value.dims)
    if getattr(value, "data_location", 0) == 1:
        raise InputError(
            f"{name} is stored as external data; load it first (onnx.load(..., load_external_data=True))"
        )
    if value.raw_data:
        flat = np.frombuffer(value.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    else:
        flat = np.array(value.double_data if dtype is np.float64 else value.float_data, dtype=dtype)
    if flat.size != int(np.prod(shape)):
        raise ShapeError(f"{name} holds {flat.size} values but its dims are {shape_text(shape)}")
    return flat.reshape(shape)


def _find(graph_or_node: Any, op: str) -> tuple[Any, dict[str, Any]]:
    """The ``op`` node and the graph's initializers from a ModelProto, a GraphProto or a NodeProto."""
    graph = getattr(graph_or_node, "graph", graph_or_node)
    if not hasattr(graph, "node"):
        return graph_or_node, {}
    nodes = [n for n in graph.node if n.op_type == op]
    if len(nodes) != 1:
        raise InputError(
            f"the graph has {len(nodes)} {op} nodes; pass one node and the initializers: "
            f"from_onnx_{op.lower()}(node, initializers)"
        )
    return nodes[0], {t.name: t for t in graph.initializer}


@dataclass
class _Node:
    name: str
    attrs: dict[str, Any]
    directions: tuple[str, ...]
    layout: int
    arrays: dict[str, Any]  # W, R, B and any extra weight inputs, None where absent
    h: int


def _read(
    node: Any,
    initializers: Any,
    op: str,
    gates: int,
    activations: tuple[str, ...],
    extra: dict[int, str],
    allowed: set[str],
) -> _Node:
    """Check an ``op`` node's attributes and weights; ``extra`` names further weight inputs by position."""
    node, found = _find(node, op)
    if getattr(node, "op_type", None) != op:
        raise InputError(
            f"expected an ONNX {op} node, got op_type {getattr(node, 'op_type', type(node).__name__)!r}"
        )
    attrs = _attributes(node)
    if initializers is not None:
        found = (
            dict(initializers)
            if isinstance(initializers, Mapping)
            else {str(t.name): t for t in initializers}  # graph.initializer: TensorProtos
        )
    label = f"{op} node {node.name!r}"
    for key in _REFUSED:
        if key in attrs:
            raise InputError(f"{label} sets {key}={attrs[key]!r}; grusym implements no {key}")
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise InputError(f"{label} has direction={direction!r}; expected forward, reverse or bidirectional")
    dirs = _DIRECTIONS[direction]
    acts = attrs.get("activations")
    if acts is not None and [a.lower() for a in acts] != [a.lower() for a in activations] * len(dirs):
        raise InputError(
            f"{label} has activations={acts!r}; grusym implements the default "
            f"{list(activations) * len(dirs)} only"
        )
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise InputError(f"{label} has layout={layout!r}; expected 0 or 1")
    unknown = sorted(set(attrs) - {"direction", "layout", "hidden_size", "activations"} - allowed)
    if unknown:
        raise InputError(f"{label} has attributes grusym does not implement: {unknown}")
    inputs = list(node.input) + [""] * (8 - len(node.input))

    def weight(position: int, what: str) -> Any:
        name = inputs[position]
        if not name:
            return None
        if name not in found:
            raise InputError(
                f"{op} input {what} {name!r} is not an initializer; pass its values in initializers"
            )
        return _tensor(f"{what} {name!r}", found[name])

    W, R, B = weight(1, "W"), weight(2, "R"), weight(3, "B")
    if W is None or R is None:
        raise InputError(f"{label} lacks its W or R input")
    D = len(dirs)
    if W.ndim != 3 or W.shape[0] != D or W.shape[1] % gates or 0 in W.shape:
        raise ShapeError(f"W must have shape (num_directions = {D}, {gates}h, d), got {shape_text(W.shape)}")
    nh = W.shape[1] // gates
    if attrs.get("hidden_size", nh) != nh:
        raise ShapeError(f"{label} has hidden_size={attrs['hidden_size']} but W gives h = {nh}")
    note = f" (h = {nh} from W)"
    expect("R", R, (D, gates * nh, nh), f"(num_directions, {gates}h, h)", note)
    if B is None:
        B = np.zeros((D, 2 * gates * nh), W.dtype)
    expect("B", B, (D, 2 * gates * nh), f"(num_directions, {2 * gates}h)", note)
    arrays = {"W": W, "R": R, "B": B, **{what: weight(pos, what) for pos, what in extra.items()}}
    one_dtype({k: v for k, v in arrays.items() if v is not None})
    return _Node(str(node.name), attrs, dirs, layout, arrays, nh)


def _model(variant: str, node: _Node, cells: dict[Cell, Params]) -> tuple[ModuleType | Model, Params]:
    structure = Structure(1, node.directions, bool(node.layout))
    W = node.arrays["W"]
    head = {"W_hq": np.zeros((len(node.directions) * node.h, 1), W.dtype), "b_q": np.zeros(1, W.dtype)}
    params = join_cells(structure, cells, head)
    module = load(variant)
    model = module if structure == Structure() else build(module, 1, node.directions, bool(node.layout))
    return model, params


def from_onnx_gru(node: Any, initializers: Any = None) -> tuple[ModuleType | Model, Params]:
    """The grusym model and params that compute what an ONNX ``GRU`` node computes.

    node: a ``GRU`` NodeProto, or a ModelProto/GraphProto holding exactly one (its initializers are then
    used). initializers: the weights, as a dict name -> array or TensorProto, or an iterable of
    TensorProto (``graph.initializer``); ``W`` and ``R`` must be among them, ``B`` too if the node has it.

    Returns ``(model, params)``: ``model`` is ``grusym.load(variant)`` for a forward, layout-0 node,
    otherwise a one-layer model with the node's direction and ``batch_first = (layout == 1)``. Feed it the
    node's X; ``lengths`` = ``sequence_lens``; ``h0`` = ``initial_h`` (layout 1: ``initial_h.swapaxes(0,
    1)``). Its H (.., o = D*h) is the node's Y with the direction axis folded into the last:
    ``Y.transpose(0, 2, 1, 3).reshape(T, n, D*h)`` for layout 0, ``Y.reshape(n, T, D*h)`` for layout 1.
    The node has no head: params hold ``W_hq`` = 0 (o, 1) and ``b_q`` = 0 (1,); replace them with yours.
    """
    nd = _read(node, initializers, "GRU", 3, ("Sigmoid", "Tanh"), {}, {"linear_before_reset"})
    W, R, B, nh = nd.arrays["W"], nd.arrays["R"], nd.arrays["B"], nd.h
    before = not nd.attrs.get("linear_before_reset", 0)
    cells: dict[Cell, Params] = {}
    for k, direction in enumerate(nd.directions):
        w, r = blocks(W[k], 0, _GATES), blocks(R[k], 0, _GATES)
        wb, rb = blocks(B[k][: 3 * nh], 0, _GATES), blocks(B[k][3 * nh :], 0, _GATES)
        p = {
            "W_xz": w["z"].T.copy(), "W_hz": r["z"].T.copy(), "b_z": wb["z"] + rb["z"],
            "W_xr": w["r"].T.copy(), "W_hr": r["r"].T.copy(), "b_r": wb["r"] + rb["r"],
        }  # fmt: skip
        if before:  # h_tilde = tanh(x W_h + (r*h) R_h + Wb_h + Rb_h): one bias
            p.update(W_xh=w["h"].T.copy(), W_hh=r["h"].T.copy(), b_h=wb["h"] + rb["h"])
        else:  # h_tilde = tanh(x W_h + Wb_h + r*(h R_h + Rb_h))
            p.update(W_xh=w["h"].T.copy(), b_xh=wb["h"].copy(), W_hh=r["h"].T.copy(), b_hh=rb["h"].copy())
        cells[(0, direction)] = p
    return _model("gru" if before else "gru_reset_after", nd, cells)


_LSTM_GATES = ("i", "o", "f", "g")  # ONNX row blocks i, o, f, c (c is our g)


def from_onnx_lstm(node: Any, initializers: Any = None) -> tuple[ModuleType | Model, Params]:
    """The grusym ``lstm`` model and params that compute what an ONNX ``LSTM`` node computes.

    As :func:`from_onnx_gru`, with W (D, 4h, d) and R (D, 4h, h) in row blocks i, o, f, c and B (D, 8h);
    ``h0`` = ``(initial_h, initial_c)``. Peepholes ``P`` (unless all zero) and ``input_forget=1`` are
    refused: grusym's lstm has neither.
    """
    nd = _read(node, initializers, "LSTM", 4, ("Sigmoid", "Tanh", "Tanh"), {7: "P"}, {"input_forget"})
    if nd.attrs.get("input_forget", 0):
        raise InputError(f"LSTM node {nd.name!r} sets input_forget=1; grusym's lstm has no coupled gates")
    if nd.arrays["P"] is not None and np.any(nd.arrays["P"]):
        raise InputError(f"LSTM node {nd.name!r} has peephole weights P; grusym's lstm has no peepholes")
    W, R, B, nh = nd.arrays["W"], nd.arrays["R"], nd.arrays["B"], nd.h
    cells: dict[Cell, Params] = {}
    for k, direction in enumerate(nd.directions):
        w, r = blocks(W[k], 0, _LSTM_GATES), blocks(R[k], 0, _LSTM_GATES)
        wb, rb = blocks(B[k][: 4 * nh], 0, _LSTM_GATES), blocks(B[k][4 * nh :], 0, _LSTM_GATES)
        cells[(0, direction)] = {
            f"{kind}{g}": value
            for g in ("i", "f", "g", "o")
            for kind, value in (
                ("W_x", w[g].T.copy()), ("W_h", r[g].T.copy()), ("b_x", wb[g].copy()), ("b_h", rb[g].copy())
            )
        }  # fmt: skip
    return _model("lstm", nd, cells)
