"""ONNX ``GRU``, ``LSTM`` and ``RNN`` nodes -> grusym cells and their parameters.

ONNX ``GRU`` (opset 7-22): inputs ``X``, ``W`` (D, 3h, d), ``R`` (D, 3h, h) with row blocks z, r, h,
``B`` (D, 6h) = ``[Wb_z, Wb_r, Wb_h, Rb_z, Rb_r, Rb_h]``, ``sequence_lens`` (n,), ``initial_h``; attributes
``direction`` (forward, reverse, bidirectional: D = 1, 1, 2), ``layout`` (0: X (T, n, d), Y (T, D, n, h);
1: X (n, T, d), Y (n, T, D, h)), ``linear_before_reset`` (0: the reset gate before the hidden matmul,
variant ``gru``; else after it, ``gru_reset_after``), ``hidden_size``; ``h = (1-z)*h_tilde + z*h_prev``.
``LSTM``: row blocks i, o, f, c, ``B`` (D, 8h), ``initial_c``, peepholes ``P``: variant ``lstm``. ``RNN``:
one block, ``B`` (D, 2h), activation Tanh: variant ``rnn_tanh``. grusym implements the default activations
and no ``clip``: other values are refused by name.

Contract: NumPy only, ``onnx`` is never imported: nodes and tensors are read through their protobuf
fields (``op_type``, ``attribute``, ``input``; ``dims``, ``data_type``, ``raw_data``, ``float_data``).
:mod:`.onnx_graph` places the nodes of a whole graph; this module reads one node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .. import load
from ..errors import DTypeError, InputError, ShapeError
from ..model import Model, build
from ..model.structure import Structure
from ..validate import shape_text
from ._common import Array, Cell, Params, array, blocks, expect, join_cells, one_dtype

__all__ = ["OPS", "Node", "attributes", "ints", "node_model", "read_node", "single_node", "tensor"]

_DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}
_REFUSED = ("clip", "activation_alpha", "activation_beta")
# AttributeProto.type and TensorProto.data_type codes (onnx.proto, stable since IR version 3)
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR, _ATTR_INTS, _ATTR_STRINGS = 1, 2, 3, 4, 7, 8
_TENSOR_DTYPES = {1: np.float32, 11: np.float64}
_INT_DTYPES = {7: np.int64, 6: np.int32}


def attributes(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (ints, floats, strings, lists, TensorProtos)."""
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
        elif kind == _ATTR_INTS:
            out[a.name] = [int(i) for i in a.ints]
        elif kind == _ATTR_TENSOR:
            out[a.name] = a.t
        else:
            out[a.name] = a  # read only to be named in an error
    return out


def _external(name: str, value: Any) -> None:
    if getattr(value, "data_location", 0) == 1:
        raise InputError(
            f"{name} is stored as external data; load it first (onnx.load(..., load_external_data=True))"
        )


def tensor(name: str, value: Any) -> Array:
    """A float TensorProto's values as a NumPy array (float or double, raw or typed fields); an array-like
    value (a dict of initializers given as arrays) as a float copy."""
    if not (hasattr(value, "data_type") and hasattr(value, "dims")):
        return array(name, value)
    dtype = _TENSOR_DTYPES.get(int(value.data_type))
    if dtype is None:
        raise DTypeError(f"{name} has ONNX data_type {value.data_type}; expected FLOAT (1) or DOUBLE (11)")
    shape = tuple(int(s) for s in value.dims)
    _external(name, value)
    if value.raw_data:
        flat = np.frombuffer(value.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    else:
        flat = np.array(value.double_data if dtype is np.float64 else value.float_data, dtype=dtype)
    if flat.size != int(np.prod(shape)):
        raise ShapeError(f"{name} holds {flat.size} values but its dims are {shape_text(shape)}")
    return flat.reshape(shape)


def ints(name: str, value: Any) -> Array | None:
    """An INT64/INT32 TensorProto (or int array) as an int64 array; None for any other kind of value."""
    if hasattr(value, "data_type") and hasattr(value, "dims"):
        dtype = _INT_DTYPES.get(int(value.data_type))
        if dtype is None:
            return None
        _external(name, value)
        shape = tuple(int(s) for s in value.dims)
        if value.raw_data:
            flat = np.frombuffer(value.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.int64)
        else:
            flat = np.array(value.int64_data if dtype is np.int64 else value.int32_data, dtype=np.int64)
        return flat.reshape(shape) if flat.size == int(np.prod(shape)) else None
    a = np.asarray(value)
    return a.astype(np.int64) if a.dtype.kind in "iu" else None


@dataclass
class Node:
    """One recurrent node, checked: its op, variant, directions, layout and weights."""

    op: str
    name: str
    variant: str
    attrs: dict[str, Any]
    directions: tuple[str, ...]
    layout: int
    arrays: dict[str, Any]  # W, R, B and any extra weight inputs, None where absent
    h: int

    @property
    def label(self) -> str:
        return f"{self.op} node {self.name!r}"


@dataclass(frozen=True)
class _Op:
    gates: int
    activations: tuple[str, ...]  # the defaults, one direction's
    extra: dict[int, str]  # further weight inputs by position
    allowed: frozenset[str]  # attributes besides direction, layout, hidden_size, activations
    cells: Callable[[Node], dict[Cell, Params]]


def read_node(node: Any, found: Mapping[str, Any]) -> Node:
    """Check a GRU/LSTM/RNN node's attributes and weights; ``found`` maps input names to TensorProtos or
    arrays (initializers, Constant nodes' values)."""
    op = str(getattr(node, "op_type", type(node).__name__))
    if op not in OPS:
        raise InputError(f"expected an ONNX GRU, LSTM or RNN node, got op_type {op!r}")
    spec = OPS[op]
    attrs = attributes(node)
    label = f"{op} node {node.name!r}"
    for key in _REFUSED:
        if key in attrs:
            raise InputError(f"{label} sets {key}={attrs[key]!r}; grusym implements no {key}")
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise InputError(f"{label} has direction={direction!r}; expected forward, reverse or bidirectional")
    dirs = _DIRECTIONS[direction]
    acts = attrs.get("activations")
    if acts is not None and [a.lower() for a in acts] != [a.lower() for a in spec.activations] * len(dirs):
        hint = (
            "; a relu RNN is a cell of your own (docs/models.md) converted with from_torch_rnn's params"
            if op == "RNN" and any(a.lower() == "relu" for a in acts)
            else ""
        )
        raise InputError(
            f"{label} has activations={acts!r}; grusym implements the default "
            f"{list(spec.activations) * len(dirs)} only{hint}"
        )
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise InputError(f"{label} has layout={layout!r}; expected 0 or 1")
    unknown = sorted(set(attrs) - {"direction", "layout", "hidden_size", "activations"} - spec.allowed)
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
        return tensor(f"{what} {name!r}", found[name])

    gates = spec.gates
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
    arrays = {"W": W, "R": R, "B": B, **{what: weight(pos, what) for pos, what in spec.extra.items()}}
    one_dtype({k: v for k, v in arrays.items() if v is not None})
    variant = {"GRU": "gru_reset_after" if attrs.get("linear_before_reset", 0) else "gru"}.get(
        op, {"LSTM": "lstm", "RNN": "rnn_tanh"}.get(op, "")
    )
    return Node(op, str(node.name), variant, attrs, dirs, layout, arrays, nh)


def cells_of(nd: Node, layer: int = 0) -> dict[Cell, Params]:
    """The node's cells (``(layer, direction)``) under the grusym cell's parameter names."""
    return {(layer, d): p for (_, d), p in OPS[nd.op].cells(nd).items()}


def _split(nd: Node, k: int, gates: tuple[str, ...]) -> tuple[dict[str, Array], ...]:
    W, R, B, nh = nd.arrays["W"], nd.arrays["R"], nd.arrays["B"], nd.h
    g = len(gates)
    return (
        blocks(W[k], 0, gates),
        blocks(R[k], 0, gates),
        blocks(B[k][: g * nh], 0, gates),
        blocks(B[k][g * nh :], 0, gates),
    )


def _gru_cells(nd: Node) -> dict[Cell, Params]:
    before = nd.variant == "gru"
    cells: dict[Cell, Params] = {}
    for k, direction in enumerate(nd.directions):
        w, r, wb, rb = _split(nd, k, ("z", "r", "h"))
        p = {
            "W_xz": w["z"].T.copy(), "W_hz": r["z"].T.copy(), "b_z": wb["z"] + rb["z"],
            "W_xr": w["r"].T.copy(), "W_hr": r["r"].T.copy(), "b_r": wb["r"] + rb["r"],
        }  # fmt: skip
        if before:  # h_tilde = tanh(x W_h + (r*h) R_h + Wb_h + Rb_h): one bias
            p.update(W_xh=w["h"].T.copy(), W_hh=r["h"].T.copy(), b_h=wb["h"] + rb["h"])
        else:  # h_tilde = tanh(x W_h + Wb_h + r*(h R_h + Rb_h))
            p.update(W_xh=w["h"].T.copy(), b_xh=wb["h"].copy(), W_hh=r["h"].T.copy(), b_hh=rb["h"].copy())
        cells[(0, direction)] = p
    return cells


def _lstm_cells(nd: Node) -> dict[Cell, Params]:
    if nd.attrs.get("input_forget", 0):
        raise InputError(f"{nd.label} sets input_forget=1; grusym's lstm has no coupled gates")
    if nd.arrays.get("P") is not None and np.any(nd.arrays["P"]):
        raise InputError(f"{nd.label} has peephole weights P; grusym's lstm has no peepholes")
    cells: dict[Cell, Params] = {}
    for k, direction in enumerate(nd.directions):
        w, r, wb, rb = _split(nd, k, ("i", "o", "f", "g"))  # ONNX blocks i, o, f, c (c is our g)
        cells[(0, direction)] = {
            f"{kind}{g}": value
            for g in ("i", "f", "g", "o")
            for kind, value in (
                ("W_x", w[g].T.copy()), ("W_h", r[g].T.copy()), ("b_x", wb[g].copy()), ("b_h", rb[g].copy())
            )
        }  # fmt: skip
    return cells


def _rnn_cells(nd: Node) -> dict[Cell, Params]:
    cells: dict[Cell, Params] = {}
    for k, direction in enumerate(nd.directions):
        w, r, wb, rb = _split(nd, k, ("h",))
        cells[(0, direction)] = {"W_xh": w["h"].T.copy(), "W_hh": r["h"].T.copy(), "b_h": wb["h"] + rb["h"]}
    return cells


OPS = {
    "GRU": _Op(3, ("Sigmoid", "Tanh"), {}, frozenset({"linear_before_reset"}), _gru_cells),
    "LSTM": _Op(4, ("Sigmoid", "Tanh", "Tanh"), {7: "P"}, frozenset({"input_forget"}), _lstm_cells),
    "RNN": _Op(1, ("Tanh",), {}, frozenset(), _rnn_cells),
}


def single_node(node: Any, initializers: Any, op: str) -> Node:
    if getattr(node, "op_type", None) != op:
        raise InputError(
            f"expected an ONNX {op} node, got op_type {getattr(node, 'op_type', type(node).__name__)!r}"
        )
    found: Mapping[str, Any] = {}
    if initializers is not None:
        found = (
            dict(initializers)
            if isinstance(initializers, Mapping)
            else {str(t.name): t for t in initializers}  # graph.initializer: TensorProtos
        )
    return read_node(node, found)


def node_model(nd: Node) -> tuple[ModuleType | Model, Params]:
    structure = Structure(1, nd.directions, bool(nd.layout))
    W = nd.arrays["W"]
    head = {"W_hq": np.zeros((len(nd.directions) * nd.h, 1), W.dtype), "b_q": np.zeros(1, W.dtype)}
    params = join_cells(structure, cells_of(nd), head)
    module = load(nd.variant)
    model = module if structure == Structure() else build(module, 1, nd.directions, bool(nd.layout))
    return model, params
