"""Input validation for the generated modules and every public entry point.

Contract: NumPy only. Each check runs once per call, never per time step, and raises a
:mod:`grusym.errors` exception that names the argument, the expected and the actual shape, dtype or value;
no raw NumPy broadcasting error, KeyError, IndexError or AttributeError escapes from generated code.

What is accepted: ``params`` must be a dict of NumPy float32/float64 arrays sharing one dtype (complex only
where the complex-step check needs it); ``X``, ``h0``, ``Y`` and ``dH`` may be anything ``np.asarray``
turns into an array of the right shape and dtype (so nested lists of numbers work, but a list of floats
becomes float64 and must then match float64 parameters). Every float value must be finite and below
``limit(dtype)`` in magnitude, so that no single product in the forward pass can overflow.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import DTypeError, InputError, NonFiniteError, ParameterError, ShapeError

__all__ = [
    "Dims",
    "check_cache",
    "check_dstates",
    "check_dstates_reach",
    "check_final",
    "check_head",
    "check_init",
    "check_input_grad",
    "check_inputs",
    "check_lengths",
    "check_params",
    "check_step_input",
    "check_targets",
    "check_upstream",
    "limit",
]

Array = NDArray[Any]
Dims = dict[str, int]

_FLOATS = (np.float32, np.float64)
_COMPLEX = (np.complex64, np.complex128)


def limit(dtype: Any) -> float:
    """The largest magnitude accepted in a float array of ``dtype``: sqrt(max) / 1e4.

    The product of two such values is at most max / 1e8, so the pre-activations of a step (sums of d + h
    such products) stay finite for any realistic width; real weights and data are many orders below it.
    """
    key = np.dtype(dtype)
    if key not in _LIMITS:
        _LIMITS[key] = math.sqrt(float(np.finfo(key).max)) * 1e-4
    return _LIMITS[key]


_LIMITS: dict[np.dtype[Any], float] = {}


def shape_text(shape: Sequence[int]) -> str:
    """A shape as Python writes a tuple: ``(3,)``, ``(2, 3)``."""
    return str(tuple(int(s) for s in shape))


def _shape(a: Array) -> str:
    return shape_text(a.shape)


def _dims(names: Sequence[str]) -> str:
    return "(" + ", ".join(names) + (",)" if len(names) == 1 else ")")


def _as_array(name: str, value: object, expected: str) -> Array:
    if isinstance(value, np.ndarray):
        if not _plain(value):  # np.matrix and masked arrays: their operators differ from ndarray's
            raise DTypeError(f"{name} must be a plain numpy.ndarray {expected}, got {type(value).__name__}")
        return value
    if value is None:
        raise DTypeError(f"{name} is None; expected an array {expected}")
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{name} is not an array {expected}: {exc}") from None


def _first_bad(a: Array) -> str:
    bad = np.argwhere(~np.isfinite(a))
    return f"first at index {tuple(int(i) for i in bad[0])}" if len(bad) else ""


def _check_finite(name: str, a: Array, dtype: Any = None) -> None:
    """NaN, infinity or a magnitude beyond ``limit(dtype or a.dtype)``, without a temporary array."""
    if a.size == 0:
        return
    if a.dtype.kind == "c":
        if not np.isfinite(a).all():
            raise NonFiniteError(f"{name} holds NaN or infinity ({_first_bad(a)})")
        return
    bound = limit(dtype or a.dtype)
    if a.dtype.type in _FLOATS:
        # fast path, one BLAS call: sqrt(sum a^2) >= max |a|, and it is NaN or inf if any element is
        square = float(np.vdot(a, a))
        if square <= bound * bound:
            return
    lo, hi = float(a.min()), float(a.max())  # Python floats: comparing a float16 with 1e15 would overflow
    if -bound <= lo and hi <= bound:  # False for NaN too
        return
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise NonFiniteError(f"{name} holds NaN or infinity ({_first_bad(a)})")
    worst = lo if -lo > hi else hi
    raise NonFiniteError(
        f"{name} holds {worst:.3g}, beyond ±{bound:.2g}, the largest magnitude accepted in "
        f"{np.dtype(dtype or a.dtype)} (products of such values could overflow)"
    )


def _params_fast_path(
    spec: Mapping[str, tuple[str, ...]], params: object
) -> tuple[dict[str, Array], Dims, np.dtype[Any]] | None:
    """check_params for the usual good input, in a few microseconds; None sends anything else to the
    full check, which finds and names the problem (tiny models spend most of a step in validation)."""
    if type(params) is not dict or len(params) != len(spec):
        return None
    dims: Dims = {}
    dtype: np.dtype[Any] | None = None
    for name, dim_names in spec.items():
        a = params.get(name)
        if type(a) is not np.ndarray:
            return None
        if dtype is None:
            dtype = a.dtype
            if dtype.type not in _FLOATS:
                return None
        elif a.dtype is not dtype:
            return None
        shape = a.shape
        if len(shape) != len(dim_names):
            return None
        for dim, size in zip(dim_names, shape, strict=True):
            if not size or dims.setdefault(dim, size) != size:
                return None
    if dtype is None:
        return None
    # sqrt(sum of squares) bounds every |element| and is NaN or inf if any element is
    bound = limit(dtype)
    if not sum(float(np.vdot(a, a)) for a in params.values()) <= bound * bound:
        return None
    return dict(params), dims, dtype


HEAD = ("W_hq", "b_q")  # the output head every cell module shares


def check_params(
    spec: Mapping[str, tuple[str, ...]],
    params: Mapping[str, ArrayLike],
    *,
    allow_complex: bool = True,
    head: bool = True,
) -> tuple[dict[str, Array], Dims, np.dtype[Any]]:
    """Check a parameter dict against ``spec`` (name -> dimension names); return arrays, sizes and dtype.

    Every value must be a NumPy array (not a list: optimisers update parameters in place) of the shape the
    spec names, all sharing one float dtype, finite, with consistent sizes d, h, q across parameters.
    head=False: the head ``W_hq``, ``b_q`` is optional (forward, backward and predict need only the cell's
    parameters): params hold both or neither.
    """
    if not head and isinstance(params, Mapping) and HEAD[0] not in params:
        if HEAD[1] in params:
            raise ParameterError(
                "params has 'b_q' but not 'W_hq': give the head W_hq, b_q whole or not at all"
            )
        spec = {k: v for k, v in spec.items() if k not in HEAD}
    elif not head and isinstance(params, Mapping) and HEAD[1] not in params:
        raise ParameterError("params has 'W_hq' but not 'b_q': give the head W_hq, b_q whole or not at all")
    fast = _params_fast_path(spec, params)
    if fast is not None:
        return fast
    if not isinstance(params, Mapping):
        raise ParameterError(
            f"params must be a dict of arrays (from init_params), got {type(params).__name__}"
        )
    missing = [k for k in spec if k not in params]
    extra = [k for k in params if k not in spec]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        note = ""
        if set(missing) == set(HEAD) and not extra:
            note = "; the head W_hq (h, q), b_q (q,) is needed by head, loss and loss_and_grads"
        raise ParameterError(f"params: {'; '.join(parts)} (expected exactly {list(spec)}){note}")
    arrays: dict[str, Array] = {}
    dims: Dims = {}
    dtype: np.dtype[Any] | None = None
    first = ""
    allowed = _FLOATS + _COMPLEX if allow_complex else _FLOATS
    for name, dim_names in spec.items():
        a = params[name]
        if type(a) is not np.ndarray:  # messages are built only on failure: this loop runs every call
            expected = f"of shape {_dims(dim_names)}"
            if not isinstance(a, np.ndarray):
                raise DTypeError(
                    f"params[{name!r}] must be a numpy.ndarray {expected}, got {type(a).__name__}"
                    + (" (convert with np.asarray(..., dtype=np.float64))" if isinstance(a, Sequence) else "")
                )
            a = _as_array(f"params[{name!r}]", a, expected)
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
            raise ShapeError(f"params[{name!r}] must have shape {_dims(dim_names)}, got {_shape(a)}")
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
    if dtype is None:
        raise ParameterError("params: the parameter spec is empty")
    return arrays, dims, dtype


def _dtype_matches(a: Array, dtype: np.dtype[Any]) -> bool:
    # real inputs are fine with complex parameters (the complex-step check perturbs parameters only)
    return a.dtype == dtype or (dtype.kind == "c" and a.dtype == np.finfo(dtype).dtype)


def _dtype_hint(dtype: np.dtype[Any]) -> str:
    return f" (convert with np.asarray(..., dtype=np.{dtype}))" if dtype.kind == "f" else ""


def _check_ids(what: str, name: str, ids: Array, size: int, meaning: str) -> None:
    lo, hi = ids.min(), ids.max()
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        where = ", ".join(str(int(i)) for i in np.argwhere(ids == bad)[0])
        raise InputError(f"{what} {int(bad)} at {name}[{where}] is out of range [0, {size}) ({meaning})")


_LAYOUTS = "X is time-major: (T, n, d) floats or (T, n) integer token ids"


def check_inputs(
    X: ArrayLike, h0: object, dims: Dims, dtype: np.dtype[Any], states: Sequence[str] = ("h",)
) -> tuple[Array, bool, Any]:
    """Check X (T, n, d) floats or (T, n) token ids and the initial state(s); return X, tokens, state(s).

    h0: None (zeros), or for a one-state cell an (n, h) array, for a cell with ``states`` ("h", "c", ...)
    a tuple of (n, h) arrays in that order. Returns the state as an array for one state, else a tuple.
    Token ids must lie in [0, d); float X and the states must have the parameters' dtype and be finite.
    """
    d, nh = dims["d"], dims["h"]
    X = _as_array("X", X, f"of shape (T, n, d={d}) floats or (T, n) integer token ids")
    if X.dtype.kind not in "iufc" or X.dtype.kind == "b":
        raise DTypeError(f"X has dtype {X.dtype}; expected floats (T, n, d={d}) or integer token ids (T, n)")
    tokens = X.dtype.kind in "iu"
    if tokens and X.ndim != 2:
        raise ShapeError(
            f"integer X is read as token ids and must have shape (T, n), got {_shape(X)}"
            + ("; pass one-hot or other dense inputs as floats" if X.ndim == 3 else "")
        )
    if not tokens and (X.ndim != 3 or X.shape[2] != d):
        raise ShapeError(f"X must have shape (T, n, d={d}) or be (T, n) integer token ids, got {_shape(X)}")
    if X.shape[0] == 0:
        raise ShapeError(f"X has T = 0 time steps (shape {_shape(X)}); need at least one")
    if X.shape[1] == 0:
        raise ShapeError(f"X has batch size n = 0 (shape {_shape(X)}); need at least one sequence")
    if tokens:
        _check_ids("token id", "X", X, d, "d = input size")
    else:
        if not _dtype_matches(X, dtype):
            raise DTypeError(f"X has dtype {X.dtype} but the parameters are {dtype}{_dtype_hint(dtype)}")
        _check_finite("X", X)
    n = X.shape[1]
    if len(states) == 1:
        return X, tokens, _check_state(f"{states[0]}0", h0, X, n, nh, dtype)
    if h0 is None:
        return X, tokens, tuple(np.zeros((n, nh), dtype=dtype) for _ in states)
    names = ", ".join(f"{s}0" for s in states)
    if not isinstance(h0, (tuple, list)) or len(h0) != len(states):
        got = f"a {type(h0).__name__} of {len(h0)}" if isinstance(h0, (tuple, list)) else type(h0).__name__
        raise InputError(
            f"the initial state of this cell is a tuple ({names}) of {len(states)} arrays (n={n}, h={nh}) "
            f"in that order, or None for zeros; got {got}"
        )
    return (
        X,
        tokens,
        tuple(_check_state(f"{s}0", v, X, n, nh, dtype) for s, v in zip(states, h0, strict=True)),
    )


def _check_state(name: str, h0: object, X: Array, n: int, nh: int, dtype: np.dtype[Any]) -> Array:
    if h0 is None:
        return np.zeros((n, nh), dtype=dtype)
    a = _as_array(name, h0, f"of shape (n={n}, h={nh}) (e.g. np.zeros((n, h))), or None for zeros")
    if a.shape == (1, n, nh):  # torch's layout of one layer's state: (num_layers * num_directions = 1, n, h)
        a = a[0]
    if a.shape != (n, nh):
        hint = ""
        if a.shape == (X.shape[0], nh) and X.shape[0] != n:
            hint = (
                f"; {name} matches X.shape[0] = {X.shape[0]}, so X may be batch-first (n, T, ...): "
                f"{_LAYOUTS} (swap its first two axes, or load the model with batch_first=True)"
            )
        raise ShapeError(
            f"{name} must have shape (n={n}, h={nh}) (or (1, n, h)) with n = X.shape[1], "
            f"got {_shape(a)}{hint}"
        )
    if not _dtype_matches(a, dtype):
        raise DTypeError(f"{name} has dtype {a.dtype} but the parameters are {dtype}{_dtype_hint(dtype)}")
    _check_finite(name, a)
    return a


def check_lengths(lengths: object, T: int, n: int) -> Array | None:
    """Check the true length of every sequence: None, or (n,) integers in [1, T]; return an intp array."""
    if lengths is None:
        return None
    expected = f"of shape (n={n},) integers in [1, T={T}]"
    a = _as_array("lengths", lengths, expected)
    if a.dtype.kind not in "iu":
        raise DTypeError(f"lengths must be integers {expected}, got dtype {a.dtype}")
    if a.shape != (n,):
        hint = ""
        if a.shape == (T,) and n != T:
            hint = (
                f"; lengths matches X.shape[0] = {T}, so X may be batch-first (n, T, ...): {_LAYOUTS} "
                "(swap its first two axes, or load the model with batch_first=True)"
            )
        raise ShapeError(
            f"lengths must have one entry per sequence, shape (n={n},) = X.shape[1:2], got {_shape(a)}{hint}"
        )
    lo, hi = int(a.min()), int(a.max())
    if lo < 1 or hi > T:
        bad = lo if lo < 1 else hi
        where = int(np.argwhere(a == bad)[0][0])
        raise InputError(f"lengths[{where}] = {bad} is out of range [1, T={T}] (T = X.shape[0] time steps)")
    return a.astype(np.intp, copy=False)


def check_step_input(x_t: ArrayLike, dims: Dims) -> Array:
    """Check one step's input, (n, d) floats or (n,) token ids; return it as a one-step X (1, n, ...)."""
    d = dims["d"]
    x = _as_array("x_t", x_t, f"of shape (n, d={d}) floats or (n,) integer token ids")
    tokens = x.dtype.kind in "iu"
    if (tokens and x.ndim != 1) or (not tokens and x.ndim != 2):
        raise ShapeError(
            f"x_t (one step) must have shape (n, d={d}) floats or (n,) integer token ids, got {_shape(x)}"
        )
    return x[None]


def check_targets(Y: ArrayLike, T: int, n: int, q: int) -> Array:
    """Check integer targets Y of shape (T, n) with values in [0, q)."""
    Y = _as_array("Y", Y, f"of shape (T={T}, n={n}) integer class ids")
    if Y.dtype.kind not in "iu":
        hint = " (convert with Y.astype(np.int64))" if Y.dtype.kind == "f" else ""
        raise DTypeError(f"Y must hold integer class ids, got dtype {Y.dtype}{hint}")
    if Y.shape != (T, n):
        raise ShapeError(f"Y must have shape (T={T}, n={n}) like X, got {_shape(Y)}")
    _check_ids("target", "Y", Y, q, "q = output size")
    return Y


def check_input_grad(input_grad: object, tokens: bool) -> bool:
    """Whether to compute the input gradient ``grads["X"]``: ``input_grad`` None means "when X is floats";
    True with token ids is an error (ids have no gradient), never a silently missing key."""
    if input_grad is None:
        return not tokens
    if not isinstance(input_grad, (bool, np.bool_)):
        raise InputError(f"input_grad must be True, False or None, got {type(input_grad).__name__}")
    if input_grad and tokens:
        raise InputError("input_grad=True needs float inputs X (T, n, d): token ids have no gradient")
    return bool(input_grad)


def check_upstream(dH: ArrayLike | None, H: Array) -> Array:
    """Check the upstream gradient dH against the hidden states H (T, n, h) it belongs to; None is zeros.

    Any real float dtype is accepted and converted to H's; values must be finite and within limit(H.dtype).
    """
    if dH is None:
        return np.zeros(H.shape, H.dtype)
    dH = _as_array("dH", dH, f"of shape (T, n, h) = {_shape(H)}")
    if dH.shape != H.shape:
        raise ShapeError(f"dH must have the shape of H, (T, n, h) = {_shape(H)}, got {_shape(dH)}")
    if dH.dtype.kind != "f":
        raise DTypeError(f"dH must be real floating point like H ({H.dtype}), got dtype {dH.dtype}")
    _check_finite("dH", dH, H.dtype)  # before the cast, which would turn huge values into inf
    return dH.astype(H.dtype, copy=False)


def check_dstates(
    dstates: object, states: Sequence[str], n: int, nh: int, dtype: np.dtype[Any]
) -> tuple[Array, ...] | None:
    """Check the gradient on the last states, in ``final_states``' order and layout: None, an (n, h)
    array for a one-state cell, or a tuple of them (or of None, a zero gradient) in ``STATES`` order;
    (1, n, h) arrays are accepted too. Returns a tuple of (n, h) arrays or None per state, or None."""
    if dstates is None:
        return None
    if len(states) == 1:
        parts: Sequence[object] = (dstates,)
    elif isinstance(dstates, (tuple, list)) and len(dstates) == len(states):
        parts = dstates
    else:
        names = ", ".join(f"d{s}" for s in states)
        raise InputError(
            f"dstates of this cell is None or a tuple ({names}) of (n={n}, h={nh}) arrays in STATES order, "
            f"as final_states returns the states; got {type(dstates).__name__}"
        )
    out: list[Any] = []
    for state, part in zip(states, parts, strict=True):
        name = f"dstates[{states.index(state)}] (d{state})" if len(states) > 1 else "dstates"
        if part is None:
            out.append(None)
            continue
        a = _as_array(name, part, f"of shape (n={n}, h={nh}) like final_states")
        if a.shape == (1, n, nh):
            a = a[0]
        if a.shape != (n, nh):
            raise ShapeError(
                f"{name} must have the shape of the last state, (n={n}, h={nh}), got {_shape(a)}"
            )
        if a.dtype.kind != "f":
            raise DTypeError(f"{name} must be real floating point like the states ({dtype}), got {a.dtype}")
        _check_finite(name, a, dtype)
        out.append(a.astype(dtype, copy=False))
    return tuple(out)


def check_dstates_reach(
    dlast: tuple[Array | None, ...] | None, states: Sequence[str], unreached: Sequence[str]
) -> None:
    """Refuse a nonzero gradient on the last value of a state the output never reads: the generated
    backward does not differentiate the steps only such states depend on (their adjoints are zero for every
    loss on H), so it cannot take a gradient that enters there."""
    if dlast is None:
        return
    for state, a in zip(states, dlast, strict=True):
        if state in unreached and a is not None and np.any(a):
            raise InputError(
                f"dstates: d{state} is nonzero, but state {state!r} of this cell never reaches its output h "
                f"(no step h depends on reads it), so backward does not derive gradients through it; give "
                f"None or zeros for d{state}"
            )


def _plain(a: object) -> bool:
    return isinstance(a, np.ndarray) and not isinstance(a, (np.matrix, np.ma.MaskedArray))


def check_cache(
    cache: object, saved: Sequence[str], dims: Dims, dtype: np.dtype[Any], sequences: Sequence[str] = ()
) -> Array:
    """Check that ``cache`` is what ``forward`` returned for parameters of sizes ``dims`` and ``dtype``.

    saved: the names of the per-step arrays (T, n, k*h) the variant keeps besides "X", "tokens" and "H";
    sequences: the other states' (T + 1, n, h) arrays (a multi-state cell's "S_c", ...).
    Returns H (T + 1, n, h). The structure (keys, types, shapes, dtypes, token range) is checked, the
    values are not: forward produced them from checked inputs.
    """
    if not isinstance(cache, Mapping):
        raise InputError(f"cache must be the dict that forward returned, got {type(cache).__name__}")
    missing = [k for k in ("X", "tokens", "H", *sequences, *saved) if k not in cache]
    if missing:
        raise InputError(
            f"cache is not from this variant's forward: missing {missing} (it has {sorted(map(str, cache))})"
        )
    H = cache["H"]
    if not _plain(H) or H.ndim != 3 or H.shape[0] < 2 or H.shape[1] < 1:
        got = _shape(H) if isinstance(H, np.ndarray) else type(H).__name__
        raise InputError(f"cache['H'] must be an array of shape (T + 1, n, h) from forward, got {got}")
    T, n = H.shape[0] - 1, H.shape[1]
    if H.shape[2] != dims["h"]:
        raise ShapeError(
            f"cache comes from a forward pass with hidden size h = {H.shape[2]}, but params have "
            f"h = {dims['h']}"
        )
    if H.dtype != dtype:
        raise DTypeError(
            f"cache comes from a forward pass in {H.dtype}, but params are {dtype} "
            "(backward needs real parameters of the same dtype)"
        )
    X, tokens = cache["X"], cache["tokens"]
    if not isinstance(tokens, (bool, np.bool_)) or not _plain(X):
        raise InputError("cache['X'] and cache['tokens'] must be forward's array and flag")
    want = (T, n) if tokens else (T, n, dims["d"])
    if X.shape != want:
        raise ShapeError(
            f"cache['X'] has shape {_shape(X)} but params and cache['H'] imply {want} "
            f"(d = {dims['d']}): the cache is from another forward pass"
        )
    if tokens:
        if X.dtype.kind not in "iu":
            raise DTypeError(f"cache['X'] holds token ids but has dtype {X.dtype}")
        _check_ids("token id", "cache['X']", X, dims["d"], "d = input size of params")
    elif X.dtype != dtype:
        raise DTypeError(f"cache['X'] has dtype {X.dtype} but params are {dtype}")
    for key in sequences:
        S = cache[key]
        if not _plain(S) or S.shape != H.shape or S.dtype != dtype:
            got = f"{_shape(S)} {S.dtype}" if isinstance(S, np.ndarray) else type(S).__name__
            raise InputError(
                f"cache[{key!r}] must be an array like cache['H'], {_shape(H)} {dtype}, got {got}"
            )
    lengths = cache.get("lengths")
    if lengths is not None:
        check_lengths(lengths, T, n)
    for key in saved:
        a = cache[key]
        width = a.shape[2] if isinstance(a, np.ndarray) and a.ndim == 3 else 0
        if not _plain(a) or a.shape[:2] != (T, n) or not width or width % dims["h"] or a.dtype != dtype:
            got = f"{_shape(a)} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise InputError(
                f"cache[{key!r}] must be an array of shape (T={T}, n={n}, k*h) and dtype {dtype}, got {got}"
            )
    return H


def check_final(cache: object, keys: Sequence[str]) -> tuple[Any, Array | None]:
    """Check the parts of a forward cache that ``final_states`` reads: the state sequences ``keys``
    (T + 1, n, h) and the optional lengths. Returns the sequence (one key) or a tuple of them, and lengths."""
    if not isinstance(cache, Mapping):
        raise InputError(f"cache must be the dict that forward returned, got {type(cache).__name__}")
    missing = [k for k in keys if k not in cache]
    if missing:
        raise InputError(f"cache is not from this cell's forward: missing {missing}")
    seqs = []
    for key in keys:
        S = cache[key]
        if not _plain(S) or S.ndim != 3 or S.shape[0] < 2:
            got = _shape(S) if isinstance(S, np.ndarray) else type(S).__name__
            raise InputError(
                f"cache[{key!r}] must be an array of shape (T + 1, n, h) from forward, got {got}"
            )
        seqs.append(S)
    lengths = cache.get("lengths")
    if lengths is not None:
        lengths = check_lengths(lengths, seqs[0].shape[0] - 1, seqs[0].shape[1])
    return (seqs[0] if len(seqs) == 1 else tuple(seqs)), lengths


def check_head(
    spec: Mapping[str, tuple[str, ...]], params: Mapping[str, ArrayLike], H: ArrayLike
) -> tuple[dict[str, Array], Array]:
    """Check params and hidden states H (..., h) for the output head; return both as arrays."""
    arrays, dims, dtype = check_params(spec, params)
    H = _as_array("H", H, f"of shape (..., h={dims['h']})")
    if H.ndim == 0 or H.shape[-1] != dims["h"]:
        raise ShapeError(f"H must have shape (..., h={dims['h']}), got {_shape(H)}")
    if not _dtype_matches(H, dtype):
        raise DTypeError(f"H has dtype {H.dtype} but the parameters are {dtype}{_dtype_hint(dtype)}")
    _check_finite("H", H)
    return arrays, H


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_init(
    input_size: object, hidden_size: object, output_size: object, seed: object, dtype: object, scale: object
) -> tuple[int, int, int, np.dtype[Any]]:
    """Check the arguments of ``init_params``; return (d, h, q, dtype).

    Sizes are positive integers; seed is None, a non-negative integer or a NumPy SeedSequence/Generator;
    dtype is float32 or float64; scale (the weights' standard deviation) is a finite number >= 0.
    """
    d = _positive_int("input_size", input_size)
    nh = _positive_int("hidden_size", hidden_size)
    q = _positive_int("output_size", output_size)
    rng_types = (np.random.SeedSequence, np.random.BitGenerator, np.random.Generator)
    if not (seed is None or isinstance(seed, rng_types)) and (
        isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0
    ):
        raise InputError(f"seed must be None or a non-negative integer, got {seed!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated aliases such as "a" warn before failing below
            dt = np.dtype(dtype)  # type: ignore[call-overload]
    except Exception:  # numpy raises TypeError, ValueError or KeyError for what it cannot read
        raise DTypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt.type not in _FLOATS:
        raise DTypeError(f"dtype must be float32 or float64, got {dt}")
    ok = not isinstance(scale, (bool, np.bool_)) and isinstance(scale, numbers.Real)
    if not (ok and math.isfinite(float(scale)) and 0 <= float(scale) <= limit(dt)):  # type: ignore[arg-type]
        raise InputError(
            f"scale (the weights' standard deviation) must be a number in [0, {limit(dt):.2g}] for {dt}, "
            f"got {scale!r}"
        )
    return d, nh, q, dt


def check_elementwise_sizes(where: str, d: object, nh: object) -> None:
    """A cell that reads the input X elementwise (``where``: its name and step) needs d == h."""
    sizes = isinstance(d, numbers.Integral) and isinstance(nh, numbers.Integral)  # else check_init says
    if sizes and d != nh:
        raise ShapeError(
            f"{where} reads the input X elementwise, so the input size d must equal the hidden size h; "
            f"got d = {d}, h = {nh}"
        )


def elementwise_rows(X: Array, tokens: bool, d: int, nh: int, dtype: Any, where: str) -> Array:
    """X as the (T, n, h) rows a cell reads elementwise: float X itself, token ids as their one-hot rows
    of width d (the rows the input projections read), after checking d == h."""
    check_elementwise_sizes(where, d, nh)
    if not tokens:
        return X
    rows = np.zeros((*X.shape, nh), dtype=dtype)
    np.put_along_axis(rows, X[..., None], 1, axis=2)
    return rows
