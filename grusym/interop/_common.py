"""What every converter shares: reading foreign arrays, checking shapes, dtypes and parameter dicts, and
splitting a model's parameters into its cells and back.

Contract: NumPy only (no framework is imported). Every function returns new arrays, never views of its
arguments; errors are :mod:`grusym.errors` exceptions naming the key, the expected and the actual value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import load, validate, variants
from ..errors import DTypeError, InputError, ParameterError, ShapeError
from ..model.structure import Structure, structure_of
from ..validate import shape_text

Array = NDArray[Any]
Params = dict[str, Array]
Cell = tuple[int, str]  # (layer, direction)

HEAD = ("W_hq", "b_q")


def array(name: str, value: object) -> Array:
    """A float NumPy copy of ``value``: an ndarray, a tensor (``.detach().cpu().numpy()``) or array-like."""
    v = value
    try:
        if not isinstance(v, np.ndarray):
            for method in ("detach", "cpu", "numpy"):  # torch.Tensor, tf.Variable, ... without importing them
                if callable(getattr(v, method, None)):
                    v = getattr(v, method)()
        a = np.array(v, copy=True)
    except TypeError as exc:
        raise DTypeError(f"{name} cannot be converted to a NumPy float array: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{name} cannot be converted to a NumPy array: {exc}") from None
    if a.dtype.type not in (np.float32, np.float64):
        raise DTypeError(f"{name} has dtype {a.dtype}; expected float32 or float64 (cast it first)")
    return a


def expect(name: str, a: Array, shape: tuple[int, ...], symbolic: str, note: str = "") -> None:
    if a.shape != shape:
        raise ShapeError(
            f"{name} must have shape {symbolic} = {shape_text(shape)}{note}, got {shape_text(a.shape)}"
        )


def gate_axis(name: str, a: Array, axis: int, symbolic: str, gates: int = 3) -> int:
    """The hidden size h of a weight whose ``axis`` stacks ``gates`` gate blocks of h each."""
    if a.ndim != 2 or a.shape[axis] == 0 or a.shape[axis] % gates or a.shape[1 - axis] == 0:
        raise ShapeError(
            f"{name} must have shape {symbolic} ({gates} gate blocks of h on axis {axis}), "
            f"got {shape_text(a.shape)}"
        )
    return a.shape[axis] // gates


def one_dtype(arrays: Mapping[str, Array]) -> None:
    first, a = next(iter(arrays.items()))
    for name, b in arrays.items():
        if b.dtype != a.dtype:
            raise DTypeError(
                f"{name} has dtype {b.dtype} but {first} has {a.dtype}; all must share one dtype"
            )


def blocks(a: Array, axis: int, gates: tuple[str, ...]) -> dict[str, Array]:
    return dict(zip(gates, np.split(a, len(gates), axis=axis), strict=True))


def mapping(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParameterError(f"{name} must be a dict (a state_dict), got {type(value).__name__}")
    return value


def cell_spec(variant: str) -> dict[str, tuple[str, ...]]:
    m = load(variant)
    return {k: m.PARAMS[k] for k in m.CELL_PARAMS}


def matching_variants(keys: set[str]) -> list[str]:
    return [v for v in variants() if set(cell_spec(v)) == keys - set(HEAD)]


def check(
    variant: str, values: Mapping[str, Any], arg: str = "params"
) -> tuple[Params, dict[str, int], np.dtype[Any], bool]:
    """Check ``values`` against the variant's parameters, head optional; return arrays, dims, dtype, head."""
    if not isinstance(values, Mapping):
        raise ParameterError(f"{arg} must be a dict of arrays, got {type(values).__name__}")
    m = load(variant)
    present = [k for k in HEAD if k in values]
    if len(present) == 1:
        raise ParameterError(
            f"{arg} has {present[0]!r} but not its partner: give both W_hq and b_q or neither"
        )
    has_head = bool(present)
    spec = {k: v for k, v in m.PARAMS.items() if has_head or k not in HEAD}
    missing = [k for k in spec if k not in values]
    extra = [k for k in values if k not in spec]
    if missing or extra:
        hint = matching_variants(set(values))
        raise ParameterError(
            f"{arg} are not {variant!r} parameters: "
            + "; ".join(p for p in (missing and f"missing {missing}", extra and f"unexpected {extra}") if p)
            + f" (expected {list(spec)}"
            + (f"; the keys match {', '.join(map(repr, hint))})" if hint else ")")
        )
    arrays, dims, dtype = validate.check_params(spec, values, allow_complex=False)
    return arrays, dims, dtype, has_head


def check_model(
    variant: str, params: object, merge: str = "concat"
) -> tuple[Structure, dict[Cell, Params], Params | None, dict[str, int], np.dtype[Any]]:
    """Check the params of a model of ``variant`` (structure read from the keys, head optional; merge: how
    its directions merge, which sets the width the layers above read).

    Returns the structure, each cell's params under the cell's own names, the head (or None), the sizes
    and the dtype.
    """
    values = mapping("params", params)
    structure = replace(structure_of(map(str, values)), merge=merge)
    if structure.single:
        p, dims, dtype, has_head = check(variant, values)
        head = {k: p[k] for k in HEAD} if has_head else None
        return structure, {(0, "forward"): {k: p[k] for k in cell_spec(variant)}}, head, dims, dtype
    spec = structure.spec(cell_spec(variant))
    has_head = any(k in values for k in HEAD)
    if not has_head:
        spec = {k: v for k, v in spec.items() if k not in HEAD}
    structure.check_keys(spec, values, variant)
    arrays, dims, dtype = validate.check_params(spec, values, allow_complex=False)
    width = structure.width(dims["h"])
    if dims.get("o", width) != width:
        what = "num_directions * h" if merge == "concat" else f"h ({merge} merges directions)"
        raise ShapeError(
            f"the layers above the first (and W_hq) must read o = {what} = {width} inputs, "
            f"got o = {dims['o']}"
        )
    cells = {
        (layer, d): {k: arrays[k + structure.suffix(layer, d)] for k in cell_spec(variant)}
        for layer, d in structure.cells
    }
    return structure, cells, ({k: arrays[k] for k in HEAD} if has_head else None), dims, dtype


def join_cells(structure: Structure, cells: Mapping[Cell, Params], head: Params | None = None) -> Params:
    """The model's params from each cell's (cell names) and an optional head."""
    out: Params = {}
    for layer, d in structure.cells:
        out.update({k + structure.suffix(layer, d): v for k, v in cells[(layer, d)].items()})
    return {**out, **(head or {})}
