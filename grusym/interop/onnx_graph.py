"""Whole ONNX graphs of ``GRU``, ``LSTM`` or ``RNN`` nodes -> one grusym model, its params and the roles of
the graph's inputs and outputs.

What ``torch.onnx.export`` and tf2onnx emit around the recurrent nodes is glue: ``Transpose`` between
batch- and time-major, ``Squeeze``/``Unsqueeze`` of the direction axis, ``Transpose`` + ``Reshape`` (or
``Slice`` + ``Squeeze`` + ``Concat``) folding the directions into the features, ``Slice`` of a stacked
initial state per layer, ``Concat`` of the last states, zeros built by ``Shape``/``Gather``/``Expand``.
Each tensor is followed symbolically: its axes are labels (time, batch, the features of which layers and
directions, a graph input's own axis k, ...), every glue op moves labels, and each recurrent node checks
that its X is the time/batch/feature layout its ``layout`` reads. So the layers, the directions and
whether the graph's X is batch-first are read off the graph, never assumed; a tensor that is not a
relabelling (an arithmetic op, a sliced time axis, interleaved directions, ...) is refused by name.

Contract: NumPy only, ``onnx`` is never imported (protobuf fields are read as in :mod:`.onnx_nodes`). Only
the nodes the graph's outputs depend on are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import load
from ..errors import InputError
from ..model import Model, build
from ..model.structure import Structure
from ._common import Cell, Params, join_cells
from .onnx_glue import (
    GLUE,
    Batch,
    Const,
    Dirs,
    Feat,
    Head,
    Hid,
    In,
    One,
    Rows,
    Tensor,
    Time,
    Units,
    Zeros,
    describe,
    is_zero,
)
from .onnx_nodes import OPS, Node, cells_of, ints, read_node

__all__ = ["OnnxImport", "from_onnx", "read_onnx"]


@dataclass
class OnnxImport:
    """What :func:`read_onnx` found: the grusym model and params, and the roles of the graph's inputs and
    outputs.

    inputs: role -> graph input name, roles ``"X"``, ``"h0"``, ``"c0"`` (the initial-state stacks, when the
    graph takes them) and ``"lengths"`` (``sequence_lens``). outputs: graph output name -> ``("H",)`` (the
    model's H), ``("logits",)`` (``model.head(params, H)``: a MatMul by a constant and an Add of one on
    H), ``("Y",)`` (a node's raw Y: H with the direction axis apart), or ``("state", kind, start,
    stop)`` (rows start:stop of ``final_states`` for state kind ``"h"``/``"c"``; ``stop - start == 1``
    squeezed: ``("state", kind, k, None)`` is row k without its axis).
    """

    model: Model
    params: Params
    inputs: dict[str, str]
    outputs: dict[str, tuple[Any, ...]]
    nodes: list[str] = field(default_factory=list)

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """The graph's outputs for ``feeds`` (graph input name -> array), computed by grusym, in the graph's
        output order: what ``onnxruntime.InferenceSession(...).run(None, feeds)`` returns."""
        unknown = sorted(set(feeds) - set(self.inputs.values()))
        if unknown:
            raise InputError(f"feeds has inputs the graph does not read: {unknown}; it reads {self.inputs}")
        if self.inputs["X"] not in feeds:
            raise InputError(f"feeds lacks the graph's sequence input {self.inputs['X']!r}")
        states = [feeds.get(self.inputs.get(s + "0", ""), None) for s in self.model.STATES]
        h0 = None
        if any(s is not None for s in states):
            if any(s is None for s in states):
                raise InputError(f"feeds must give every initial state {self.model.STATES} or none")
            h0 = states[0] if len(states) == 1 else tuple(states)
        lengths = feeds.get(self.inputs.get("lengths", ""), None)
        X = feeds[self.inputs["X"]]
        H, last = self.model.predict(self.params, X, h0, lengths)
        last = (last,) if len(self.model.STATES) == 1 else tuple(last)
        out = []
        for role in self.outputs.values():
            if role[0] == "H":
                out.append(H)
            elif role[0] == "logits":
                out.append(self.model.head(self.params, H))
            elif role[0] == "Y":
                D = len(self.model.structure.directions)
                lead = H.shape[:2]
                Y = H.reshape(*lead, D, -1)
                out.append(Y if self.model.structure.batch_first else Y.transpose(0, 2, 1, 3))
            else:
                stack = last[self.model.STATES.index(role[1])]
                out.append(stack[role[2]] if role[3] is None else stack[role[2] : role[3]])
        return out


def from_onnx(model: Any) -> tuple[Model, Params]:
    """The grusym model and params that compute what a whole ONNX graph of recurrent nodes computes.

    model: a ModelProto or GraphProto holding ``GRU``, ``LSTM`` or ``RNN`` nodes (one kind; one node per
    layer, or a forward and a reverse node per layer) and the glue torch.onnx.export and tf2onnx put around
    them. The layers, directions and the layout of the graph's sequence input are read off the graph:
    ``model.forward(params, X)`` takes the graph's own X (batch-first when the graph's is) and returns the
    graph's sequence output; ``final_states`` are its last-state outputs (torch's h_n, c_n); feed the graph's
    initial-state input(s) as ``h0`` and its ``sequence_lens`` as ``lengths``. params hold the cells only
    (no head). :func:`read_onnx` also names which graph input and output is which, and runs the graph.

    Refused, naming the node or tensor: a node or op it cannot place, layers that differ in kind, size or
    directions, a graph that reads X batch-first and returns Y time-major (or the reverse), initial states
    in ONNX's layout-1 (n, D, h) order or from several inputs, outputs other than the top layer's and the
    last states.
    """
    found = read_onnx(model)
    return found.model, found.params


def read_onnx(model: Any, ops: tuple[str, ...] = tuple(OPS), initializers: Any = None) -> OnnxImport:
    """:func:`from_onnx`'s model and params with the roles of the graph's inputs and outputs
    (:class:`OnnxImport`); ``ops`` limits the recurrent op types accepted; ``initializers`` (name -> array
    or TensorProto) replace or add to the graph's own."""
    return _Reader(model, ops, initializers).read()


def _graph(model: Any) -> Any:
    graph = getattr(model, "graph", model)
    if not (hasattr(graph, "node") and hasattr(graph, "output") and hasattr(graph, "input")):
        raise InputError(f"expected an ONNX ModelProto or GraphProto, got {type(model).__name__}")
    return graph


class _Reader:
    def __init__(self, model: Any, ops: tuple[str, ...], initializers: Any = None) -> None:
        self.graph = _graph(model)
        self.ops = ops
        self.producer = {out: node for node in self.graph.node for out in node.output if out}
        self.initializers: dict[str, Any] = {str(t.name): t for t in self.graph.initializer}
        if initializers is not None:
            given = initializers if isinstance(initializers, Mapping) else {t.name: t for t in initializers}
            self.initializers.update({str(k): v for k, v in given.items()})
        self.inputs = [str(i.name) for i in self.graph.input if str(i.name) not in self.initializers]
        self.values: dict[str, Any] = {}
        self.layers: dict[int, list[Node]] = {}
        self.node_layer: dict[str, int] = {}
        self.x_input: tuple[str, bool] | None = None  # the graph's sequence input, batch-first?
        self.initial: dict[str, dict[int, Any]] = {}  # state kind -> layer -> source
        self.lengths: set[str | None] = set()

    # ---- reading tensors on demand

    def value(self, name: str) -> Any:
        if name not in self.values:
            self.values[name] = self._evaluate(name)
        return self.values[name]

    def _evaluate(self, name: str) -> Any:
        if name in self.initializers:
            return Const(self.initializers[name], f"initializer {name!r}")
        if name in self.inputs:
            rank = self._rank(name)
            return Tensor(tuple(In(name, k) for k in range(rank)), f"graph input {name!r}")
        node = self.producer.get(name)
        if node is None:
            raise InputError(f"tensor {name!r} is neither a graph input, an initializer nor a node output")
        label = f"{node.op_type} node {node.name!r}"
        if node.op_type in OPS:
            return self._recurrent(node, name)
        handler = GLUE.get(node.op_type)
        if handler is None:
            raise InputError(
                f"{label} (producing {name!r}) is not glue grusym can place around recurrent nodes "
                f"(it places {', '.join(sorted(GLUE))})"
            )
        result = handler(self, node, label)
        return result[list(node.output).index(name)] if isinstance(result, list) else result

    def _rank(self, name: str) -> int:
        for i in self.graph.input:
            if str(i.name) == name:
                dims = i.type.tensor_type.shape.dim
                if i.type.tensor_type.HasField("shape"):
                    return len(dims)
        raise InputError(f"graph input {name!r} has no shape; grusym needs its rank to place it")

    def arg(self, node: Any, k: int) -> Any:
        names = list(node.input)
        return self.value(names[k]) if k < len(names) and names[k] else None

    def const_ints(self, node: Any, k: int, what: str, label: str) -> list[int] | None:
        """Input k of node as a list of ints (a constant), None if absent."""
        v = self.arg(node, k)
        if v is None:
            return None
        values = ints(what, v.value) if isinstance(v, Const) else None
        if values is None:
            raise InputError(
                f"{label} takes its {what} from {getattr(v, 'producer', '?')}, not from a constant"
            )
        return [int(i) for i in np.ravel(values)]

    def tensor_arg(self, node: Any, k: int, label: str) -> Tensor:
        v = self.arg(node, k)
        if not isinstance(v, Tensor):
            raise InputError(
                f"{label} reads {getattr(v, 'producer', 'nothing')}, which is not a placed tensor"
            )
        return v

    # ---- the recurrent nodes

    def _recurrent(self, node: Any, name: str) -> Any:
        key = str(node.name) or str(node.output[0])
        label = f"{node.op_type} node {node.name!r}"
        if node.op_type not in self.ops:
            raise InputError(f"{label}: expected {' or '.join(self.ops)} nodes only")
        found = {
            n: (v.value if isinstance(v, Const) else v)
            for n in list(node.input)[1:4] + list(node.input)[7:8]
            if n and isinstance(v := self.value(n), Const)
        }
        nd = read_node(node, found)
        layout = nd.layout
        x = self.tensor_arg(node, 0, label)
        want = ("T", "n", "F") if layout == 0 else ("n", "T", "F")
        layer = self._place_input(x, want, label)
        if key not in self.node_layer:
            self.node_layer[key] = layer
            self.layers.setdefault(layer, []).append(nd)
            self._initial_states(node, nd, layer, label)
            lengths = self.arg(node, 4)
            self.lengths.add(self._lengths(lengths, label) if lengths is not None else None)
        cells = tuple((layer, d) for d in nd.directions)
        out = list(node.output).index(name)
        if out == 0:
            seq = (Time(), Dirs(layer, nd.directions), Batch(), Hid(layer))
            return Tensor(seq if layout == 0 else (Batch(), Time(), seq[1], seq[3]), label)
        kind = ("h", "c")[out - 1]
        rows = (Rows(kind, cells), Batch(), Units(kind, cells))
        return Tensor(rows if layout == 0 else (rows[1], rows[0], rows[2]), label)

    def _place_input(self, x: Tensor, want: tuple[str, str, str], label: str) -> int:
        """The layer a node's X makes it: 0 for the graph's input, k + 1 for layer k's outputs."""
        if len(x.axes) != 3:
            raise InputError(f"{label} reads a rank-{len(x.axes)} X from {x.producer}; X is (T, n, d)")
        if all(isinstance(a, In) for a in x.axes):
            names = {a.name for a in x.axes}
            if len(names) != 1 or any(a.start is not None for a in x.axes):
                raise InputError(f"{label} reads X from {x.producer}, not from one whole graph input")
            order = {w: a.axis for w, a in zip(want, x.axes, strict=True)}
            if order["F"] != 2:
                raise InputError(f"{label} reads its features from axis {order['F']} of the graph input")
            placed = (names.pop(), order["T"] == 1)
            if self.x_input not in (None, placed):
                raise InputError(f"{label} reads the graph's input in another layout than the first layer")
            self.x_input = placed
            return 0
        kinds = {"T": Time, "n": Batch, "F": Feat}
        if not all(isinstance(a, kinds[w]) for w, a in zip(want, x.axes, strict=True)):
            raise InputError(
                f"{label} reads X from {x.producer} with axes {describe(x.axes)}; "
                f"its layout {0 if want[0] == 'T' else 1} reads ({', '.join(want)})"
            )
        parts = next(a for a in x.axes if isinstance(a, Feat)).parts
        below = {layer for layer, _ in parts}
        if len(below) != 1 or -1 in below:
            raise InputError(f"{label} reads features of {parts}, not the outputs of one layer")
        layer = below.pop()
        dirs = tuple(d for _, d in parts)
        have = tuple(d for n in self.layers.get(layer, []) for d in n.directions)
        if sorted(dirs) != sorted(have) or len(dirs) != len(set(dirs)):
            raise InputError(f"{label} reads directions {dirs} of layer {layer}, which has {have}")
        if dirs != tuple(d for d in ("forward", "reverse") if d in dirs):
            raise InputError(
                f"{label} reads layer {layer}'s directions in the order {dirs}; grusym's "
                "layers read the forward direction's outputs first"
            )
        return layer + 1

    def _initial_states(self, node: Any, nd: Node, layer: int, label: str) -> None:
        for kind, position in (("h", 5), ("c", 6)):
            if kind == "c" and nd.op != "LSTM":
                continue
            v = self.arg(node, position)
            if v is None or isinstance(v, Zeros) or (isinstance(v, Const) and is_zero(v.value)):
                source: Any = None
            elif isinstance(v, Tensor):
                source = self._state_source(v, nd, label, kind)
            else:
                raise InputError(
                    f"initial_{kind} of {label} comes from {v.producer}; grusym reads initial "
                    "states from a graph input (or zeros)"
                )
            self.initial.setdefault(kind, {})[layer] = source

    def _state_source(self, v: Tensor, nd: Node, label: str, kind: str) -> Any:
        axes = v.axes
        rows, batch, units = (axes[0], axes[1], axes[2]) if nd.layout == 0 else (axes[1], axes[0], axes[2])
        whole = (
            len(axes) == 3
            and isinstance(batch, In)
            and isinstance(units, In)
            and (batch.name, batch.axis + 1, batch.start, units.start) == (units.name, units.axis, None, None)
        )
        if whole and isinstance(rows, One) and batch.axis == 0:
            return (batch.name, None, None)  # an (n, h) input, unsqueezed
        if whole and isinstance(rows, In) and (rows.name, rows.axis, batch.axis) == (batch.name, 0, 1):
            return (rows.name, rows.start, rows.stop)
        layout_note = " (ONNX's layout-1 states are (n, D, h); grusym's are (num_layers * D, n, h))"
        raise InputError(
            f"initial_{kind} of {label} is {v.producer} with axes {describe(axes)}; grusym takes initial "
            f"states as one (num_layers * num_directions, n, h) stack from a graph input, sliced per layer"
            + (layout_note if nd.layout == 1 else "")
        )

    def _lengths(self, v: Any, label: str) -> str:
        if (
            isinstance(v, Tensor)
            and len(v.axes) == 1
            and isinstance(v.axes[0], In)
            and v.axes[0].start is None
        ):
            return v.axes[0].name
        raise InputError(
            f"sequence_lens of {label} comes from {getattr(v, 'producer', '?')}; grusym reads sequence "
            "lengths from a graph input only (compute them outside and pass lengths)"
        )

    # ---- the whole graph

    def read(self) -> OnnxImport:
        outputs: dict[str, tuple[Any, ...]] = {}
        values = {}
        for out in self.graph.output:
            name = str(out.name)
            values[name] = self.value(name)
        if not self.layers:
            raise InputError(f"the graph holds no {', '.join(self.ops)} node its outputs depend on")
        structure, variant = self._structure()
        heads: list[Head] = []
        for name, v in values.items():
            if isinstance(v, Head):
                heads.append(v)
                v = v.tensor
            outputs[name] = self._output_role(name, v, structure)
            if heads and heads[-1].tensor is v:
                if outputs[name] != ("H",):
                    raise InputError(
                        f"graph output {name!r} ({heads[-1].producer}) is a head on {v.producer}, "
                        "not on the top layer's outputs"
                    )
                outputs[name] = ("logits",)
        cells: dict[Cell, Params] = {}
        for layer, nodes in self.layers.items():
            for nd in nodes:
                cells.update(cells_of(nd, layer))
        params = join_cells(structure, cells, self._head(heads))
        model = build(load(variant), structure.num_layers, structure.directions, structure.batch_first)
        assert self.x_input is not None
        inputs = {"X": self.x_input[0], **self._state_inputs(structure, model.STATES)}
        given = sorted(str(s) for s in self.lengths if s is not None)
        if given:
            if len(self.lengths) > 1:
                raise InputError(f"the nodes read different sequence_lens: {sorted(map(str, self.lengths))}")
            inputs["lengths"] = given[0]
        names = [nd.name for layer in sorted(self.layers) for nd in self.layers[layer]]
        return OnnxImport(model, params, inputs, outputs, names)

    def _head(self, heads: list[Head]) -> Params | None:
        """W_hq, b_q of the graph's logits output(s) (one head, however many outputs show it)."""
        if not heads:
            return None
        first = heads[0]
        for other in heads[1:]:
            same = np.array_equal(other.weight, first.weight) and np.array_equal(
                np.zeros(0) if other.bias is None else other.bias,
                np.zeros(0) if first.bias is None else first.bias,
            )
            if not same:
                raise InputError(
                    f"{other.producer} and {first.producer} are two different heads; grusym has one"
                )
        q = first.weight.shape[1]
        bias = np.zeros(q, first.weight.dtype) if first.bias is None else np.ravel(first.bias)
        if bias.shape != (q,):
            raise InputError(
                f"{first.producer} adds a bias of shape {first.bias.shape}; a head's is (q = {q},)"
            )
        return {"W_hq": first.weight.copy(), "b_q": bias.copy()}

    def _structure(self) -> tuple[Structure, str]:
        num_layers = 1 + max(self.layers)
        missing = sorted(set(range(num_layers)) - set(self.layers))
        if missing:
            raise InputError(f"no node computes layer(s) {missing} of the {num_layers} the graph stacks")
        first = self.layers[0][0]
        directions: tuple[str, ...] = ()
        for layer, nodes in sorted(self.layers.items()):
            dirs = tuple(d for n in nodes for d in n.directions)
            for nd in nodes:
                if (nd.variant, nd.h) != (first.variant, first.h):
                    raise InputError(
                        f"{nd.label} is {nd.variant} with h = {nd.h} but {first.label} is {first.variant} "
                        f"with h = {first.h}; grusym stacks one cell"
                    )
            if sorted(dirs) != sorted(set(dirs)):
                raise InputError(f"layer {layer} computes the directions {dirs}: one node per direction")
            ordered = tuple(d for d in ("forward", "reverse") if d in dirs)
            if layer and ordered != directions:
                raise InputError(f"layer {layer} runs {ordered} but layer 0 runs {directions}")
            directions = ordered
        assert self.x_input is not None
        return Structure(num_layers, directions, self.x_input[1]), first.variant

    def _state_inputs(self, structure: Structure, states: tuple[str, ...]) -> dict[str, str]:
        out = {}
        D = len(structure.directions)
        for kind in states:
            sources: list[Any] = [
                self.initial.get(kind, {}).get(layer) for layer in range(structure.num_layers)
            ]
            if all(s is None for s in sources):
                continue
            names = {s[0] for s in sources if s is not None}
            if any(s is None for s in sources) or len(names) != 1:
                raise InputError(
                    f"the layers take initial_{kind} from {sorted(names) or 'nothing'} and zeros; grusym's "
                    f"model takes one {kind}0 stack (num_layers * num_directions, n, h) from one graph input"
                )
            for layer, source in enumerate(sources):
                _, start, stop = source
                whole = structure.num_layers == 1 and start is None and stop is None
                if not whole and (start, stop) != (layer * D, (layer + 1) * D):
                    raise InputError(
                        f"layer {layer} reads rows {start}:{stop} of {kind}0 input {source[0]!r}; its "
                        f"states are rows {layer * D}:{(layer + 1) * D} of the stack, in torch's order"
                    )
            out[kind + "0"] = names.pop()
        return out

    def _output_role(self, name: str, v: Any, structure: Structure) -> tuple[Any, ...]:
        top = structure.num_layers - 1
        where = f"graph output {name!r} ({getattr(v, 'producer', '?')})"
        if not isinstance(v, Tensor):
            raise InputError(f"{where} is not computed by the recurrent nodes")
        axes = v.axes
        if any(isinstance(a, Time) for a in axes):
            time_first = isinstance(axes[0], Time)
            if time_first == structure.batch_first:
                raise InputError(
                    f"{where} is {'time' if time_first else 'batch'}-major but the graph reads X "
                    f"{'batch' if structure.batch_first else 'time'}-major; a grusym model uses one layout"
                )
            layers = {a.layer for a in axes if isinstance(a, (Dirs, Hid))}
            layers |= {c[0] for a in axes if isinstance(a, Feat) for c in a.parts}
            if layers != {top}:
                raise InputError(
                    f"{where} holds the outputs of layer(s) {sorted(layers)}; grusym's model "
                    f"returns the top layer's ({top}) only"
                )
            want = tuple((top, d) for d in structure.directions)
            lead = (Time(), Batch()) if time_first else (Batch(), Time())
            if axes == (*lead, Feat(want)):
                return ("H",)
            raw = (Time(), Dirs(top, want_dirs := structure.directions), Batch(), Hid(top))
            if axes == (raw if time_first else (Batch(), Time(), Dirs(top, want_dirs), Hid(top))):
                return ("Y",)
            raise InputError(f"{where} has axes {describe(axes)}; grusym's H is (T, n, D*h) in X's layout")
        if len(axes) >= 2 and any(isinstance(a, Units) for a in axes):
            units = next(a for a in axes if isinstance(a, Units))
            order = structure.cells
            first = order.index(units.cells[0])
            if tuple(order[first : first + len(units.cells)]) != units.cells:
                raise InputError(f"{where} stacks the last states of {units.cells}, not in torch's order")
            if axes == (Batch(), units) and len(units.cells) == 1:
                return ("state", units.kind, first, None)
            if axes == (Rows(units.kind, units.cells), Batch(), units):
                return ("state", units.kind, first, first + len(units.cells))
            raise InputError(
                f"{where} has axes {describe(axes)}; grusym's last states are (num_layers * num_directions, "
                "n, h) (ONNX's layout-1 (n, D, h) order is refused: transpose it)"
            )
        raise InputError(f"{where} has axes {describe(axes)}: neither the outputs nor the last states")
