"""The glue around recurrent nodes in ONNX graphs, followed symbolically: axis labels, tensor values, and
one handler per glue op that moves labels.

Contract: NumPy only (``onnx`` is never imported). A tensor's value is a :class:`Tensor` whose axes are
labels (:class:`In`: axis k of a graph input; :class:`Time`, :class:`Batch`; :class:`Feat`: the outputs of
which cells side by side; :class:`Dirs` and :class:`Hid`: a node's direction axis and the hidden units it
selects; :class:`Rows` and :class:`Units`: stacked last states), or a :class:`Const`, :class:`Ints` (shape
arithmetic) or :class:`Zeros`. Each handler in :data:`GLUE` takes the reader (``arg``, ``tensor_arg``,
``const_ints``), the node and its label, and returns the value of the node's output(s), or raises an
:class:`~grusym.errors.InputError` naming the node and what it cannot place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from ._common import Cell
from .onnx_nodes import attributes, tensor

__all__ = [
    "GLUE",
    "X_PART",
    "Batch",
    "Const",
    "Dirs",
    "Feat",
    "Head",
    "Hid",
    "In",
    "Ints",
    "One",
    "Rows",
    "Tensor",
    "Time",
    "Units",
    "Zeros",
    "axis_index",
    "describe",
    "is_zero",
]


# ---- axis labels


@dataclass(frozen=True)
class In:
    """Axis ``axis`` of graph input ``name``, optionally sliced to [start, stop)."""

    name: str
    axis: int
    start: int | None = None
    stop: int | None = None


@dataclass(frozen=True)
class One:
    """A size-1 axis made by Unsqueeze."""


@dataclass(frozen=True)
class Time:
    pass


@dataclass(frozen=True)
class Batch:
    pass


@dataclass(frozen=True)
class Feat:
    """Features: the outputs of these cells side by side, in this order; ``((-1, "x"),)`` is the graph's X."""

    parts: tuple[Cell, ...]


@dataclass(frozen=True)
class Dirs:
    """A node's direction axis: the cells of ``layer`` in these directions."""

    layer: int
    dirs: tuple[str, ...]


@dataclass(frozen=True)
class Hid:
    """The hidden units of whichever direction the Dirs axis selects."""

    layer: int


@dataclass(frozen=True)
class Rows:
    """A last-state output's row axis: state ``kind`` of these cells."""

    kind: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Units:
    """A last state's hidden units (its cells: one when the row axis is squeezed away)."""

    kind: str
    cells: tuple[Cell, ...]


X_PART = (-1, "x")


# ---- values of tensors


@dataclass(frozen=True)
class Tensor:
    axes: tuple[Any, ...]
    producer: str  # "graph input 'X'" or "Transpose node 'name'", for messages


@dataclass(frozen=True)
class Const:
    value: Any  # an int64 array, or a float TensorProto/array (weights, zeros)
    producer: str


@dataclass(frozen=True)
class Ints:
    """Shape arithmetic (Shape, Gather, Concat of ints, ...): values unknown, only ever sizes."""

    producer: str


@dataclass(frozen=True)
class Zeros:
    """A float tensor of zeros (Expand or ConstantOfShape of 0, a zero constant): a zero initial state."""

    producer: str


@dataclass(frozen=True)
class Head:
    """Logits: a placed tensor's features times a constant ``weight`` (o, q), plus ``bias`` (q,) or None."""

    tensor: Tensor
    weight: Any
    bias: Any
    producer: str


def axis_index(label: str, k: int, rank: int) -> int:
    """Axis ``k`` of a rank-``rank`` tensor, negative counted from the end."""
    if not -rank <= k < rank:
        raise InputError(f"{label} names axis {k} of a rank-{rank} tensor")
    return k % rank


class Reader(Protocol):
    """What the handlers read the graph through (:class:`grusym.interop.onnx_graph` implements it)."""

    def arg(self, node: Any, k: int) -> Any: ...
    def tensor_arg(self, node: Any, k: int, label: str) -> Tensor: ...
    def const_ints(self, node: Any, k: int, what: str, label: str) -> list[int] | None: ...


def is_zero(value: Any) -> bool:
    try:
        return not np.any(tensor("constant", value))
    except Exception:  # an int constant, or unreadable: not a zero float state
        return False


def describe(axes: tuple[Any, ...]) -> str:
    def one(a: Any) -> str:
        if isinstance(a, In):
            return f"{a.name}[{a.axis}]" + ("" if a.start is None else f"[{a.start}:{a.stop}]")
        if isinstance(a, Feat):
            return "features of " + "+".join("X" if c == X_PART else f"l{c[0]}{c[1][0]}" for c in a.parts)
        if isinstance(a, Dirs):
            return f"directions {a.dirs} of layer {a.layer}"
        if isinstance(a, Rows):
            return f"{a.kind} rows of {a.cells}"
        if isinstance(a, Units):
            return "h"
        return {Time: "T", Batch: "n", Hid: "h", One: "1"}.get(type(a), type(a).__name__)

    return "(" + ", ".join(one(a) for a in axes) + ")"


# ---- the glue: each op moves labels


def _transpose(r: Reader, node: Any, label: str) -> Any:
    x = r.tensor_arg(node, 0, label)
    perm = attributes(node).get("perm", list(range(len(x.axes)))[::-1])
    if sorted(perm) != list(range(len(x.axes))):
        raise InputError(f"{label} has perm={perm} for a rank-{len(x.axes)} tensor")
    return Tensor(tuple(x.axes[p] for p in perm), label)


def _squeeze_axes(r: Reader, node: Any, label: str, rank: int) -> list[int]:
    given = attributes(node).get("axes")
    if given is None:
        given = r.const_ints(node, 1, "axes", label)
    if given is None:
        raise InputError(f"{label} squeezes every size-1 axis; grusym needs the axes named")
    return sorted({axis_index(label, a, rank) for a in given})


def _squeeze(r: Reader, node: Any, label: str) -> Any:
    x = r.tensor_arg(node, 0, label)
    axes = list(x.axes)
    drop = _squeeze_axes(r, node, label, len(axes))
    for k in drop:
        a = axes[k]
        if isinstance(a, Dirs) and len(a.dirs) == 1:
            one = Feat(((a.layer, a.dirs[0]),))  # the direction's hidden units become its features
            axes = [one if isinstance(b, Hid) and b.layer == a.layer else b for b in axes]
        elif (
            (isinstance(a, Rows) and len(a.cells) == 1)
            or isinstance(a, One)
            or (isinstance(a, In) and a.start is not None and a.stop == a.start + 1)
        ):
            pass
        else:
            raise InputError(f"{label} squeezes axis {k}, {describe((a,))}, which grusym cannot tell is 1")
    return Tensor(tuple(a for k, a in enumerate(axes) if k not in drop), label)


def _unsqueeze(r: Reader, node: Any, label: str) -> Any:
    x = r.arg(node, 0)
    if isinstance(x, Ints):
        return Ints(label)
    if not isinstance(x, Tensor):
        raise InputError(f"{label} unsqueezes {getattr(x, 'producer', 'nothing')}, not a placed tensor")
    given = attributes(node).get("axes") or r.const_ints(node, 1, "axes", label) or []
    rank = len(x.axes) + len(given)
    axes: list[Any] = list(x.axes)
    for k in sorted(axis_index(label, a, rank) for a in given):
        units = next((a for a in axes if isinstance(a, Units) and len(a.cells) == 1), None)
        axes.insert(k, Rows(units.kind, units.cells) if units is not None else One())
    return Tensor(tuple(axes), label)


def _slice(r: Reader, node: Any, label: str) -> Any:
    x = r.tensor_arg(node, 0, label)
    attrs = attributes(node)
    if "starts" in attrs:  # opset < 10: attributes
        starts, ends, axes_, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts = r.const_ints(node, 1, "starts", label)
        ends = r.const_ints(node, 2, "ends", label)
        axes_, steps = r.const_ints(node, 3, "axes", label), r.const_ints(node, 4, "steps", label)
    assert starts is not None and ends is not None
    axes_ = axes_ if axes_ is not None else list(range(len(starts)))
    out = list(x.axes)
    for a, start, end, step in zip(axes_, starts, ends, steps or [1] * len(starts), strict=True):
        k = axis_index(label, a, len(out))
        out[k] = _sliced(out[k], start, end, step, label)
    return Tensor(tuple(out), label)


def _bounds(start: int, end: int, size: int) -> tuple[int, int]:
    s = max(0, min(size, start + size if start < 0 else start))
    e = max(0, min(size, end + size if end < 0 else end))
    return s, e


def _sliced(a: Any, start: int, end: int, step: int, label: str) -> Any:
    if step != 1:
        raise InputError(f"{label} slices with step {step}; grusym places contiguous slices only")
    if isinstance(a, Dirs):
        s, e = _bounds(start, end, len(a.dirs))
        return Dirs(a.layer, a.dirs[s:e])
    if isinstance(a, Rows):
        s, e = _bounds(start, end, len(a.cells))
        return Rows(a.kind, a.cells[s:e])
    if isinstance(a, Units):
        raise InputError(f"{label} slices the hidden units; grusym places whole states only")
    if isinstance(a, In) and a.start is None and start >= 0 and 0 <= end < 2**62:
        return In(a.name, a.axis, start, end)
    raise InputError(
        f"{label} slices {describe((a,))}; grusym places slices of directions, of stacked "
        "states and of a graph input's first axis only"
    )


def _split(r: Reader, node: Any, label: str) -> Any:
    x = r.tensor_arg(node, 0, label)
    attrs = attributes(node)
    k = axis_index(label, attrs.get("axis", 0), len(x.axes))
    sizes = attrs.get("split") or r.const_ints(node, 1, "split", label)
    a = x.axes[k]
    total = len(a.dirs) if isinstance(a, Dirs) else len(a.cells) if isinstance(a, Rows) else None
    if total is None:
        raise InputError(f"{label} splits {describe((a,))}; grusym places splits of directions and states")
    sizes = sizes or [1] * len(node.output)
    if sum(sizes) != total:
        raise InputError(f"{label} splits {total} entries into {sizes}")
    outs, start = [], 0
    for size in sizes:
        axes = list(x.axes)
        axes[k] = _sliced(a, start, start + size, 1, label)
        outs.append(Tensor(tuple(axes), label))
        start += size
    return outs


def _concat(r: Reader, node: Any, label: str) -> Any:
    parts = [r.arg(node, k) for k in range(len(node.input))]
    if all(isinstance(p, (Ints, Const)) for p in parts) and any(isinstance(p, Ints) for p in parts):
        return Ints(label)
    if not all(isinstance(p, Tensor) for p in parts) or not parts:
        what = next((getattr(p, "producer", "?") for p in parts if not isinstance(p, Tensor)), "nothing")
        raise InputError(f"{label} concatenates {what}, which is not a placed tensor")
    tensors: list[Tensor] = parts  # type: ignore[assignment]
    rank = len(tensors[0].axes)
    k = axis_index(label, attributes(node).get("axis", 0), rank)

    def others(t: Tensor) -> tuple[Any, ...]:  # a state's units follow its rows: compare their kind only
        rest = t.axes[:k] + t.axes[k + 1 :]
        return tuple(Units(a.kind, ()) if isinstance(a, Units) else a for a in rest)

    if any(len(t.axes) != rank or others(t) != others(tensors[0]) for t in tensors):
        raise InputError(
            f"{label} concatenates tensors whose other axes differ: {[describe(t.axes) for t in tensors]}"
        )
    axis = [t.axes[k] for t in tensors]
    if all(isinstance(a, Feat) for a in axis):
        joined: Any = Feat(tuple(c for a in axis for c in a.parts))
    elif all(isinstance(a, Dirs) for a in axis) and len({a.layer for a in axis}) == 1:
        joined = Dirs(axis[0].layer, tuple(d for a in axis for d in a.dirs))
    elif all(isinstance(a, Rows) for a in axis) and len({a.kind for a in axis}) == 1:
        joined = Rows(axis[0].kind, tuple(c for a in axis for c in a.cells))
        units = Units(joined.kind, joined.cells)
        stacked = (*tensors[0].axes[:k], joined, *tensors[0].axes[k + 1 :])
        return Tensor(tuple(units if isinstance(b, Units) else b for b in stacked), label)
    else:
        raise InputError(
            f"{label} concatenates along {[describe((a,)) for a in axis]}; grusym places "
            "concatenations of directions, features and stacked states"
        )
    return Tensor((*tensors[0].axes[:k], joined, *tensors[0].axes[k + 1 :]), label)


def _reshape(r: Reader, node: Any, label: str) -> Any:
    x = r.tensor_arg(node, 0, label)
    shape = r.const_ints(node, 1, "shape", label)
    axes = x.axes
    if shape is not None and len(axes) == 4 and len(shape) == 3 and shape[2] == -1 and shape[:2] == [0, 0]:
        dirs, hid = axes[2], axes[3]
        if isinstance(dirs, Dirs) and isinstance(hid, Hid) and dirs.layer == hid.layer:
            return Tensor((*axes[:2], Feat(tuple((dirs.layer, d) for d in dirs.dirs))), label)
    raise InputError(
        f"{label} reshapes {describe(axes)} to {shape}; grusym places only the reshape that "
        "folds a (.., D, h) direction axis into the features, shape [0, 0, -1]"
    )


def _identity(r: Reader, node: Any, label: str) -> Any:
    return r.arg(node, 0)


def _cast(r: Reader, node: Any, label: str) -> Any:
    x = r.arg(node, 0)
    if isinstance(x, Tensor) and len(x.axes) == 1 and isinstance(x.axes[0], In):
        return x  # sequence lengths cast to int32
    if isinstance(x, Ints):
        return x
    raise InputError(f"{label} casts {getattr(x, 'producer', '?')}; grusym places casts of lengths only")


def _constant(r: Reader, node: Any, label: str) -> Any:
    attrs = attributes(node)
    if "value" in attrs:
        return Const(attrs["value"], label)
    for key in ("value_ints", "value_int"):
        if key in attrs:
            return Const(np.array(attrs[key], np.int64), label)
    raise InputError(f"{label} has {sorted(attrs)}; grusym reads tensor or integer constants")


def _shape(r: Reader, node: Any, label: str) -> Any:
    return Ints(label)  # the sizes of a tensor: they only ever feed Expand / ConstantOfShape here


def _gather(r: Reader, node: Any, label: str) -> Any:
    x = r.arg(node, 0)
    if isinstance(x, (Ints, Const)):
        return Ints(label)
    raise InputError(
        f"{label} gathers from {getattr(x, 'producer', '?')}; grusym places gathers of sizes only"
    )


def _expand(r: Reader, node: Any, label: str) -> Any:
    x = r.arg(node, 0)
    if isinstance(x, Zeros) or (isinstance(x, Const) and is_zero(x.value)):
        return Zeros(label)
    raise InputError(f"{label} expands {getattr(x, 'producer', '?')}; grusym places expanded zeros only")


def _constant_of_shape(r: Reader, node: Any, label: str) -> Any:
    value = attributes(node).get("value")
    if value is None or is_zero(value):
        return Zeros(label)
    raise InputError(f"{label} fills with a nonzero value; grusym places zero initial states only")


def _matmul(r: Reader, node: Any, label: str) -> Any:
    x, w = r.arg(node, 0), r.arg(node, 1)
    if isinstance(x, Tensor) and x.axes and isinstance(x.axes[-1], Feat) and isinstance(w, Const):
        weight = tensor(f"{label} weight", w.value)
        if weight.ndim == 2:
            return Head(x, weight, None, label)
    raise InputError(
        f"{label} multiplies {getattr(x, 'producer', '?')} by {getattr(w, 'producer', '?')}; grusym places a "
        "head only: the outputs times a constant (o, q) matrix, plus a constant (q,) bias"
    )


def _add(r: Reader, node: Any, label: str) -> Any:
    a, b = r.arg(node, 0), r.arg(node, 1)
    head, bias = (a, b) if isinstance(a, Head) else (b, a)
    if isinstance(head, Head) and head.bias is None and isinstance(bias, Const):
        return Head(head.tensor, head.weight, tensor(f"{label} bias", bias.value), label)
    raise InputError(
        f"{label} adds {getattr(a, 'producer', '?')} and {getattr(b, 'producer', '?')}; grusym "
        "places the bias of a head only"
    )


GLUE = {
    "Transpose": _transpose,
    "MatMul": _matmul,
    "Add": _add,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Split": _split,
    "Concat": _concat,
    "Reshape": _reshape,
    "Identity": _identity,
    "Cast": _cast,
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _gather,
    "Expand": _expand,
    "ConstantOfShape": _constant_of_shape,
}
