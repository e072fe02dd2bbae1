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
from types import ModuleType
from typing import Any

import numpy as np

from .. import load
from ..errors import DTypeError, InputError, ShapeError
from ..model import Model, build
from ..model.structure import Structure
from ..validate import shape_text
from ._common import Cell, Params, array, blocks, expect, join_cells, one_dtype

__all__ = ["from_onnx_gru"]

_GATES = ("z", "r", "h")  # ONNX row blocks
_DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}
_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh")
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


def _find(graph_or_node: Any) -> tuple[Any, dict[str, Any]]:
    """The GRU node and the graph's initializers from a ModelProto, a GraphProto or a NodeProto."""
    graph = getattr(graph_or_node, "graph", graph_or_node)
    if not hasattr(graph, "node"):
        return graph_or_node, {}
    nodes = [n for n in graph.node if n.op_type == "GRU"]
    if len(nodes) != 1:
        raise InputError(
            f"the graph has {len(nodes)} GRU nodes; pass one node and the initializers: "
            "from_onnx_gru(node, initializers)"
        )
    return nodes[0], {t.name: t for t in graph.initializer}


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
    node, found = _find(node)
    if getattr(node, "op_type", None) != "GRU":
        raise InputError(
            f"expected an ONNX GRU node, got op_type {getattr(node, 'op_type', type(node).__name__)!r}"
        )
    attrs = _attributes(node)
    if initializers is not None:
        found = (
            dict(initializers)
            if isinstance(initializers, Mapping)
            else {str(t.name): t for t in initializers}  # graph.initializer: TensorProtos
        )
    for key in _REFUSED:
        if key in attrs:
            raise InputError(f"GRU node {node.name!r} sets {key}={attrs[key]!r}; grusym implements no {key}")
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise InputError(
            f"GRU node {node.name!r} has direction={direction!r}; expected forward, reverse or bidirectional"
        )
    dirs = _DIRECTIONS[direction]
    acts = attrs.get("activations")
    if acts is not None and [a.lower() for a in acts] != list(_DEFAULT_ACTIVATIONS) * len(dirs):
        raise InputError(
            f"GRU node {node.name!r} has activations={acts!r}; grusym implements the default "
            f"{['Sigmoid', 'Tanh'] * len(dirs)} only"
        )
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise InputError(f"GRU node {node.name!r} has layout={layout!r}; expected 0 or 1")
    unknown = sorted(
        set(attrs) - {"direction", "layout", "linear_before_reset", "hidden_size", "activations"}
    )
    if unknown:
        raise InputError(f"GRU node {node.name!r} has attributes grusym does not implement: {unknown}")
    inputs = list(node.input) + [""] * (6 - len(node.input))

    def weight(position: int, label: str) -> Any:
        name = inputs[position]
        if not name:
            return None
        if name not in found:
            raise InputError(
                f"GRU input {label} {name!r} is not an initializer; pass its values in initializers"
            )
        return _tensor(f"{label} {name!r}", found[name])

    W, R, B = weight(1, "W"), weight(2, "R"), weight(3, "B")
    if W is None or R is None:
        raise InputError(f"GRU node {node.name!r} lacks its W or R input")
    D = len(dirs)
    if W.ndim != 3 or W.shape[0] != D or W.shape[1] % 3 or 0 in W.shape:
        raise ShapeError(f"W must have shape (num_directions = {D}, 3h, d), got {shape_text(W.shape)}")
    nh = W.shape[1] // 3
    if attrs.get("hidden_size", nh) != nh:
        raise ShapeError(
            f"GRU node {node.name!r} has hidden_size={attrs['hidden_size']} but W gives h = {nh}"
        )
    expect("R", R, (D, 3 * nh, nh), "(num_directions, 3h, h)", f" (h = {nh} from W)")
    if B is None:
        B = np.zeros((D, 6 * nh), W.dtype)
    expect("B", B, (D, 6 * nh), "(num_directions, 6h)", f" (h = {nh} from W)")
    one_dtype({"W": W, "R": R, "B": B})
    before = not attrs.get("linear_before_reset", 0)
    variant = "gru" if before else "gru_reset_after"
    cells: dict[Cell, Params] = {}
    for k, direction_name in enumerate(dirs):
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
        cells[(0, direction_name)] = p
    structure = Structure(1, dirs, bool(layout))
    head = {"W_hq": np.zeros((D * nh, 1), W.dtype), "b_q": np.zeros(1, W.dtype)}
    params = join_cells(structure, cells, head)
    module = load(variant)
    model: ModuleType | Model = module if structure == Structure() else build(module, 1, dirs, bool(layout))
    return model, params
