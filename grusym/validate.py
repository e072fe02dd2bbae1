"""Input validation for the generated modules and every public entry point.

Contract: NumPy only. Each check runs once per call, never per time step, and raises a
:mod:`grusym.errors` exception that names the argument, the expected and the actual shape, dtype or value;
no raw NumPy broadcasting error, KeyError or IndexError escapes from generated code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import DTypeError, InputError, NonFiniteError, ParameterError, ShapeError

__all__ = ["Dims", "check_inputs", "check_params", "check_targets", "check_upstream"]

Array = NDArray[Any]
Dims = dict[str, int]

_FLOATS = (np.float32, np.float64)
_COMPLEX = (np.complex64, np.complex128)


def _shape(a: Array) -> str:
    return "(" + ", ".join(str(s) for s in a.shape) + ")"


def _as_array(name: str, value: object) -> Array:
    if isinstance(value, np.ndarray):
        return value
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} is not an array: {exc}") from None
    return arr


def _check_finite(name: str, a: Array) -> None:
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise NonFiniteError(f"{name} holds NaN or infinity (first at index {tuple(int(i) for i in bad)})")


def check_params(
    spec: Mapping[str, tuple[str, ...]], params: Mapping[str, ArrayLike], *, allow_complex: bool = True
) -> tuple[dict[str, Array], Dims, np.dtype[Any]]:
    """Check a parameter dict against ``spec`` (name -> dimension names); return arrays, sizes and dtype."""
    if not isinstance(params, Mapping):
        raise ParameterError(f"params must be a dict of arrays, got {type(params).__name__}")
    missing = [k for k in spec if k not in params]
    extra = [k for k in params if k not in spec]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ParameterError(f"params: {'; '.join(parts)} (expected exactly {list(spec)})")
    arrays: dict[str, Array] = {}
    dims: Dims = {}
    dtype: np.dtype[Any] | None = None
    first = ""
    allowed = _FLOATS + _COMPLEX if allow_complex else _FLOATS
    for name, dim_names in spec.items():
        a = _as_array(f"params[{name!r}]", params[name])
        if a.dtype.type not in allowed:
            raise DTypeError(
                f"params[{name!r}] has dtype {a.dtype}; expected float32 or float64"
                + (" (complex only for the complex-step check)" if allow_complex else "")
            )
        if dtype is None:
            dtype, first = a.dtype, name
        elif a.dtype != dtype:
            raise DTypeError(
                f"params[{name!r}] has dtype {a.dtype} but params[{first!r}] has {dtype}; "
                "all parameters must share one dtype"
            )
        if a.ndim != len(dim_names):
            raise ShapeError(f"params[{name!r}] must have shape ({', '.join(dim_names)}), got {_shape(a)}")
        for axis, (dim, size) in enumerate(zip(dim_names, a.shape, strict=True)):
            if size == 0:
                raise ShapeError(f"params[{name!r}] has an empty axis {axis}: shape {_shape(a)}")
            if dims.setdefault(dim, size) != size:
                raise ShapeError(
                    f"params[{name!r}] has {dim} = {size} on axis {axis} (shape {_shape(a)}), but other "
                    f"parameters have {dim} = {dims[dim]}"
                )
        _check_finite(f"params[{name!r}]", a)
        arrays[name] = a
    assert dtype is not None
    return arrays, dims, dtype


def check_inputs(X: ArrayLike, h0: ArrayLike, dims: Dims, dtype: np.dtype[Any]) -> tuple[Array, bool, Array]:
    """Check X (T, n, d) floats or (T, n) token ids and h0 (n, h); return X, whether it is tokens, h0."""
    X = _as_array("X", X)
    tokens = X.dtype.kind in "iu"
    if X.dtype.kind == "b" or X.dtype.kind not in "iufc":
        raise DTypeError(f"X has dtype {X.dtype}; expected floats (T, n, d) or integer token ids (T, n)")
    if tokens:
        if X.ndim != 2:
            raise ShapeError(f"token ids X must have shape (T, n), got {_shape(X)}")
        if X.size and (X.min() < 0 or X.max() >= dims["d"]):
            bad = X.min() if X.min() < 0 else X.max()
            raise InputError(f"token id {int(bad)} in X is out of range [0, {dims['d']}) (d = input size)")
    else:
        if X.ndim != 3 or X.shape[2] != dims["d"]:
            raise ShapeError(
                f"X must have shape (T, n, d={dims['d']}) or be (T, n) token ids, got {_shape(X)}"
            )
        if X.dtype != dtype and not (np.issubdtype(dtype, np.complexfloating) and X.dtype.kind == "f"):
            raise DTypeError(f"X has dtype {X.dtype} but the parameters are {dtype}")
        _check_finite("X", X)
    if X.shape[0] == 0:
        raise ShapeError(f"X has T = 0 time steps (shape {_shape(X)}); need at least one")
    if X.shape[1] == 0:
        raise ShapeError(f"X has batch size n = 0 (shape {_shape(X)}); need at least one sequence")
    h0 = _as_array("h0", h0)
    n = X.shape[1]
    if h0.shape != (n, dims["h"]):
        raise ShapeError(f"h0 must have shape (n={n}, h={dims['h']}), got {_shape(h0)}")
    if h0.dtype != dtype and not (np.issubdtype(dtype, np.complexfloating) and h0.dtype.kind == "f"):
        raise DTypeError(f"h0 has dtype {h0.dtype} but the parameters are {dtype}")
    _check_finite("h0", h0)
    return X, tokens, h0


def check_targets(Y: ArrayLike, T: int, n: int, q: int) -> Array:
    """Check integer targets Y of shape (T, n) with values in [0, q)."""
    Y = _as_array("Y", Y)
    if Y.dtype.kind not in "iu":
        raise DTypeError(f"Y must hold integer class ids, got dtype {Y.dtype}")
    if Y.shape != (T, n):
        raise ShapeError(f"Y must have shape (T={T}, n={n}) like X, got {_shape(Y)}")
    if Y.min() < 0 or Y.max() >= q:
        bad = Y.min() if Y.min() < 0 else Y.max()
        raise InputError(f"target {int(bad)} in Y is out of range [0, {q}) (q = output size)")
    return Y


def check_upstream(dH: ArrayLike, H: Array) -> Array:
    """Check the upstream gradient dH against the hidden states H it belongs to."""
    dH = _as_array("dH", dH)
    if dH.shape != H.shape:
        raise ShapeError(f"dH must have the shape of H, (T, n, h) = {_shape(H)}, got {_shape(dH)}")
    if dH.dtype.kind != "f":
        raise DTypeError(f"dH must be floating point, got dtype {dH.dtype}")
    _check_finite("dH", dH)
    return dH.astype(H.dtype, copy=False)
