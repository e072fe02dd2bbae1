"""The structure of a model, cell-independent: which cells it holds, what their parameters are called, how
initial and last states are stacked, which steps of a padded batch are real, and how time is reversed.

Contract: NumPy only, no cell equations. A model holds ``num_layers * len(directions)`` copies of one cell,
indexed as torch stacks them: cell ``k = layer * num_directions + direction``. A model of a single forward
cell uses the cell's own parameter names (``W_xz``); any other model suffixes them as torch does:
``W_xz_l0``, ``W_xz_l0_reverse``, ``W_xz_l1``, ... The head ``W_hq``, ``b_q`` is never suffixed.
Dimension names: ``d`` the input size, ``h`` the hidden size, ``q`` the output size, ``o`` the width of a
layer's output (``num_directions * h``), which is the input size of every layer above the first.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import DTypeError, InputError, ParameterError, ShapeError
from ..validate import shape_text

__all__ = [
    "HEAD",
    "MERGES",
    "PAD_OUTPUTS",
    "Structure",
    "carried",
    "check_lengths",
    "check_mask",
    "read_lengths",
    "reversal",
    "rotation",
    "structure_of",
]

Array = NDArray[Any]
HEAD = ("W_hq", "b_q")
_SUFFIX = re.compile(r"^.+_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


MERGES = ("concat", "sum", "ave", "mul")  # how the directions' outputs combine (Keras' merge_mode names)
PAD_OUTPUTS = ("zeros", "carry")  # what H holds at padded steps: zeros (torch), or Keras' carried outputs


@dataclass(frozen=True)
class Structure:
    """Layers, directions, layout; ``directions``: ("forward",), ("reverse",) or ("forward", "reverse").

    merge: how a bidirectional layer's two outputs combine into what the layer above (and H) sees: side by
    side (``"concat"``, torch and ONNX: o = 2h) or elementwise ``"sum"``, ``"ave"``, ``"mul"`` (Keras'
    ``merge_mode``: o = h). flip_output: H is returned in reverse time order (Keras ``go_backwards``
    returns its outputs in the order it reads the inputs: last step first). pad_outputs: what H holds at
    padded steps, zeros (torch's packed sequences) or ``"carry"`` (a Keras RNN layer with a mask and
    ``zero_output_for_mask=False``: after a sequence's real steps the last real output, before them
    zeros; a reverse direction carries back the output at the first real step).
    """

    num_layers: int = 1
    directions: tuple[str, ...] = ("forward",)
    batch_first: bool = False
    merge: str = "concat"
    flip_output: bool = False
    pad_outputs: str = "zeros"

    def __post_init__(self) -> None:
        layers = self.num_layers
        if isinstance(layers, (bool, np.bool_)) or not isinstance(layers, numbers.Integral) or layers < 1:
            raise InputError(f"num_layers must be a positive integer, got {layers!r}")
        if self.directions not in (("forward",), ("reverse",), ("forward", "reverse")):
            raise InputError(
                "directions must be ('forward',), ('reverse',) or ('forward', 'reverse'), "
                f"got {self.directions!r}"
            )
        if not isinstance(self.batch_first, (bool, np.bool_)):
            raise InputError(f"batch_first must be True or False, got {self.batch_first!r}")
        if self.merge not in MERGES:
            raise InputError(f"merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if not isinstance(self.flip_output, (bool, np.bool_)):
            raise InputError(f"flip_output must be True or False, got {self.flip_output!r}")
        if self.pad_outputs not in PAD_OUTPUTS:
            raise InputError(f"pad_outputs must be one of {', '.join(PAD_OUTPUTS)}, got {self.pad_outputs!r}")

    @property
    def single(self) -> bool:
        """One forward cell: the cell's own parameter names and layouts."""
        return self.num_layers == 1 and self.directions == ("forward",)

    @property
    def cells(self) -> list[tuple[int, str]]:
        """(layer, direction) of every cell, in torch's stacking order."""
        return [(layer, d) for layer in range(self.num_layers) for d in self.directions]

    def describe(self) -> str:
        kind = {1: "unidirectional", 2: "bidirectional"}[len(self.directions)]
        if self.directions == ("reverse",):
            kind = "reverse-only"
        extra = [
            *(["batch-first"] if self.batch_first else []),
            *([f"merge {self.merge}"] if self.merge != "concat" and len(self.directions) == 2 else []),
            *(["outputs last step first"] if self.flip_output else []),
            *(["padded outputs carried"] if self.pad_outputs == "carry" else []),
        ]
        return f"{self.num_layers}-layer {kind}" + "".join(" " + e for e in extra)

    def width(self, hidden: int) -> int:
        """o, the width of a layer's output: what H has and what the layers above read."""
        return hidden * (len(self.directions) if self.merge == "concat" else 1)

    def suffix(self, layer: int, direction: str) -> str:
        if self.single:
            return ""
        return f"_l{layer}" + ("_reverse" if direction == "reverse" else "")

    def spec(self, cell_spec: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """The model's parameters (name -> dimension names) from one cell's (its cell params only); ``o``
        is :meth:`width`."""
        if self.single:
            return {**cell_spec, "W_hq": ("h", "q"), "b_q": ("q",)}
        out: dict[str, tuple[str, ...]] = {}
        for layer, direction in self.cells:
            for name, dims in cell_spec.items():
                below = tuple("o" if dn == "d" else dn for dn in dims) if layer else dims
                out[name + self.suffix(layer, direction)] = below
        return {**out, "W_hq": ("o", "q"), "b_q": ("q",)}

    def check_keys(self, spec: Mapping[str, Any], params: object, variant: str) -> None:
        """ParameterError naming the missing and unexpected keys, and what structure the keys suggest."""
        if not isinstance(params, Mapping):
            raise ParameterError(
                f"params must be a dict of arrays (from init_params), got {type(params).__name__}"
            )
        missing = [k for k in spec if k not in params]
        extra = [k for k in params if k not in spec]
        if not (missing or extra):
            return
        if sorted(missing) == sorted(HEAD) and not extra:
            raise ParameterError(
                f"params of this {self.describe()} {variant!r} model lack the head W_hq (o, q), b_q (q,): "
                "head, loss and loss_and_grads need it (forward, backward and predict run without)"
            )
        guess = structure_of(map(str, params))
        looks = (
            "; the keys look like a single cell (no _l<k> suffixes)"
            if guess.single
            else f"; the keys look like a {guess.describe()} model"
        )
        shown = ", ".join(
            p for p in (missing and f"missing {missing[:6]}", extra and f"unexpected {extra[:6]}") if p
        )
        raise ParameterError(
            f"params do not fit a {self.describe()} {variant!r} model: {shown}"
            f"{' ...' if len(missing) > 6 or len(extra) > 6 else ''}{looks}"
        )


def structure_of(keys: Iterable[str]) -> Structure:
    """The (time-major) structure whose parameter names are ``keys``: plain names are a single cell, else
    the layers and directions their ``_l<k>[_reverse]`` suffixes name."""
    cells = set()
    for k in keys:
        if k in HEAD:
            continue
        found = _SUFFIX.match(k)
        if found is None:
            return Structure()
        cells.add((int(found["layer"]), "reverse" if found["reverse"] else "forward"))
    layers = 1 + max((layer for layer, _ in cells), default=0)
    directions = tuple(d for d in ("forward", "reverse") if any(c[1] == d for c in cells))
    return Structure(layers, directions or ("forward",))


def check_lengths(lengths: object, T: int, n: int) -> Array | None:
    """lengths (n,) integers in [1, T] (any order), or None; returned as an int64 array. A shape that fits
    X's other leading axis is named: X may be in the other layout."""
    if lengths is None:
        return None
    a = _array("lengths", lengths, "(n,) integers")
    if a.dtype.kind not in "iu":
        raise DTypeError(f"lengths must hold integers (each sequence's length), got dtype {a.dtype}")
    if a.shape != (n,):
        raise ShapeError(
            f"lengths must have shape (n={n},), one length per sequence, got {shape_text(a.shape)}"
            + (_swapped_hint("lengths", T) if a.shape == (T,) and n != T else "")
        )
    bad = np.flatnonzero((a < 1) | (a > T))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"lengths[{i}] = {int(a[i])} is out of range [1, T={T}] (each sequence needs 1..T steps)"
        )
    return a.astype(np.int64)


def _array(name: str, value: object, expected: str) -> Array:
    if isinstance(value, (np.ndarray, Sequence)) or hasattr(value, "__array__"):
        try:
            return np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} is not an array of {expected}: {exc}") from None
    raise DTypeError(f"{name} must be None or {expected}, got {type(value).__name__}")


def _swapped_hint(name: str, size: int) -> str:
    return (
        f"; {name} fits X's first axis ({size}), so X may be in the other layout (batch-first (n, T, ...) "
        "against time-major (T, n, ...)): swap its first two axes, or load the model with the other "
        "batch_first"
    )


def check_mask(mask: object, T: int, n: int, batch_first: bool) -> tuple[Array, Array]:
    """A boolean mask (T, n) (batch-first: (n, T)), True at real steps, as (starts, lengths) (n,) each.

    Each sequence's real steps must be one run, anywhere (Keras masks: pre-padded batches, the default of
    pad_sequences, are real at the end); a gap or an empty sequence is refused by name."""
    a = _array("lengths", mask, "(n,) integers or a boolean mask")
    want = (n, T) if batch_first else (T, n)
    if a.shape != want:
        layout = "(n, T) for a batch-first model" if batch_first else "(T, n) for a time-major model"
        raise ShapeError(f"a boolean mask must have X's first two axes, {layout} = {want}, got {a.shape}")
    real = a.T if batch_first else a  # (T, n)
    counts = real.sum(axis=0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise InputError(f"the mask of sequence {int(empty[0])} has no real step; each needs 1..T")
    starts = real.argmax(axis=0)
    inside = (np.arange(T)[:, None] >= starts) & (np.arange(T)[:, None] < starts + counts)
    gap = np.flatnonzero((inside != real).any(axis=0))
    if gap.size:
        i = int(gap[0])
        hole = int(np.flatnonzero(inside[:, i] & ~real[:, i])[0])
        raise InputError(
            f"the mask of sequence {i} has a gap at step {hole}: grusym runs each sequence's real steps as "
            "one run (masked steps before or after them only)"
        )
    return starts.astype(np.int64), counts.astype(np.int64)


def read_lengths(lengths: object, T: int, n: int, batch_first: bool) -> tuple[Array | None, Array | None]:
    """(starts, lengths) from ``lengths``: None; (n,) integers (real steps first); or a boolean mask of
    X's first two axes (:func:`check_mask`). starts is None when every sequence starts at step 0."""
    if lengths is None:
        return None, None
    a = _array("lengths", lengths, "(n,) integers or a boolean mask")
    if a.dtype == np.bool_ and a.ndim == 2:
        starts, counts = check_mask(a, T, n, batch_first)
        return (starts if starts.any() else None), counts
    return None, check_lengths(a, T, n)


def rotation(starts: Array | None, T: int, n: int, inverse: bool = False) -> tuple[Array, Array] | None:
    """Index arrays (rows (T, n), cols (1, n)): ``a[rows, cols]`` moves each sequence's real steps, which
    start at ``starts[i]``, to the front (a rotation of its T steps: nothing is lost); ``inverse`` puts
    them back. None when nothing moves."""
    if starts is None:
        return None
    shift = -starts if inverse else starts
    return (np.arange(T)[:, None] + shift[None, :]) % T, np.arange(n)[None, :]


def carried(lengths: Array, starts: Array | None, T: int, direction: str) -> tuple[Array, Array]:
    """Where each step of a direction's aligned outputs (T, n) reads from when padded outputs carry
    (``pad_outputs="carry"``): (rows (T, n), used (T, n) bool). Real steps read themselves; for the forward
    direction the steps after the real run read its last step, for the reverse direction the steps before
    it (aligned to the end by the rotation) read its first; the others are zero (unused)."""
    t = np.arange(T)[:, None]
    s = np.zeros_like(lengths) if starts is None else starts
    real = t < lengths[None, :]
    after = ~real & (
        t < (T - s)[None, :]
    )  # aligned positions of the steps after the run; the rest are before
    source = lengths[None, :] - 1 if direction == "forward" else np.zeros_like(lengths)[None, :]
    used = real | (after if direction == "forward" else ~real & ~after)
    rows = np.where(real, t, np.broadcast_to(source, (T, lengths.size)))
    return np.where(used, rows, t), used


def reversal(lengths: Array | None, T: int, n: int) -> tuple[Array, Array] | None:
    """Index arrays (rows (T, n), cols (1, n)) that reverse each sequence within its own length.

    ``X[rows, cols]`` puts step ``lengths[i] - 1 - t`` of sequence i at step t and leaves padded steps in
    place; applying it twice is the identity. None when there are no lengths (``X[::-1]`` does it).
    """
    if lengths is None:
        return None
    t = np.arange(T)[:, None]
    rows = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return rows, np.arange(n)[None, :]


def reverse_time(a: Array, index: tuple[Array, Array] | None) -> Array:
    """``a`` (T, n, ...) with each sequence reversed within its length (see :func:`reversal`)."""
    return a[::-1] if index is None else a[index]


def mask(lengths: Array | None, T: int, n: int) -> Array | None:
    """(T, n) booleans, True at real steps; None without lengths."""
    return None if lengths is None else np.arange(T)[:, None] < lengths[None, :]
