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

__all__ = ["HEAD", "Structure", "check_lengths", "reversal", "structure_of"]

Array = NDArray[Any]
HEAD = ("W_hq", "b_q")
_SUFFIX = re.compile(r"^.+_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


@dataclass(frozen=True)
class Structure:
    """Layers, directions, layout; ``directions``: ("forward",), ("reverse",) or ("forward", "reverse")."""

    num_layers: int = 1
    directions: tuple[str, ...] = ("forward",)
    batch_first: bool = False

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
        return f"{self.num_layers}-layer {kind}" + (" batch-first" if self.batch_first else "")

    def suffix(self, layer: int, direction: str) -> str:
        if self.single:
            return ""
        return f"_l{layer}" + ("_reverse" if direction == "reverse" else "")

    def spec(self, cell_spec: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """The model's parameters (name -> dimension names) from one cell's (its cell params only)."""
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
    """lengths (n,) integers in [1, T] (any order), or None; returned as an int64 array."""
    if lengths is None:
        return None
    if isinstance(lengths, (np.ndarray, Sequence)) or hasattr(lengths, "__array__"):
        try:
            a = np.asarray(lengths)
        except (TypeError, ValueError) as exc:
            raise InputError(f"lengths is not an array of integers: {exc}") from None
    else:
        raise DTypeError(f"lengths must be None or (n,) integers, got {type(lengths).__name__}")
    if a.dtype.kind not in "iu":
        raise DTypeError(f"lengths must hold integers (each sequence's length), got dtype {a.dtype}")
    if a.shape != (n,):
        raise ShapeError(
            f"lengths must have shape (n={n},), one length per sequence, got {shape_text(a.shape)}"
        )
    bad = np.flatnonzero((a < 1) | (a > T))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"lengths[{i}] = {int(a[i])} is out of range [1, T={T}] (each sequence needs 1..T steps)"
        )
    return a.astype(np.int64)


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
