"""LSTM with a recurrent projection (LSTMP, Sak et al. 2014; ``torch.nn.LSTM(..., proj_size=p)``): a cell
module with the functions of a generated one, built from the generated ``lstm`` module.

One step, torch's convention (``torch/nn/modules/rnn.py``, ``aten/src/ATen/native/RNN.cpp``), with c the
cell size (torch's ``hidden_size``) and h = p < c the projected size (``proj_size``)::

    a_<g> = X @ W_x<g> + h_prev @ W_h<g> + b_x<g> + b_h<g>     g in i, f, g, o; W_h<g> (h, c)
    c = f*c_prev + i*g;  m = o*tanh(c)                         the lstm's own step, (n, c)
    h = m @ W_hr                                               the state h and the output, (n, h)

No equation of the lstm is written here, and no gradient of one: both runs below are the generated
``lstm`` module's ``forward`` and derived ``backward``. What this module adds is exact linear algebra:

* step 0 reads h0 (n, h): one lstm step whose state is h0 padded with zero columns to width c and whose
  W_h<g> are padded with zero rows, so h0 @ W_h<g> is unchanged;
* from step 1 on, h_prev @ W_h<g> = m_prev @ (W_hr @ W_h<g>): the rest of the sequence is one lstm run on
  the state m with recurrent weights W_hr @ W_h<g> (c, c);
* H = M @ W_hr.

The gradients are the lstm's, pulled back through these maps (a product's adjoint: dW_hr += dW' W_h<g>^T,
dW_h<g> = W_hr^T dW'; the padding's: drop the padded rows and columns), plus the projection's (dW_hr +=
M^T dH, dM = dH W_hr^T). A sequence of length 1 takes no part in the second run (its rows there are
zeroed and get no gradient). Shapes as the lstm module's, except h0 (n, h) and c0 (n, c).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import runtime as rt
from .. import validate
from ..errors import InputError, ShapeError
from ..generated import lstm as _lstm

__all__ = [
    "CELL_PARAMS",
    "OUTPUT",
    "PARAMS",
    "STATES",
    "STATE_SIZES",
    "VARIANT",
    "backward",
    "final_states",
    "forward",
    "head",
    "init_params",
    "loss",
    "loss_and_grads",
    "predict",
    "step",
]

Array = NDArray[Any]

VARIANT = "lstmp"
STATES = ("h", "c")
OUTPUT = "h"
STATE_SIZES = {"h": "h", "c": "c"}  # each state's dimension: h the projected size, c the cell size
_GATES = ("i", "f", "g", "o")
PARAMS: dict[str, tuple[str, ...]] = {}
for _g in _GATES:
    PARAMS |= {f"W_x{_g}": ("d", "c"), f"W_h{_g}": ("h", "c"), f"b_x{_g}": ("c",), f"b_h{_g}": ("c",)}
PARAMS |= {"W_hr": ("c", "h"), "W_hq": ("h", "q"), "b_q": ("q",)}
CELL_PARAMS = tuple(k for k in PARAMS if k not in ("W_hq", "b_q"))
_RECURRENT = tuple(f"W_h{g}" for g in _GATES)


def init_params(
    input_size: int,
    hidden_size: int,
    output_size: int,
    seed: Any = 0,
    dtype: Any = np.float64,
    scale: float = 0.01,
    proj_size: Any = None,
) -> dict[str, Array]:
    """Parameters for d = input_size, c = hidden_size (the cell), h = proj_size (< c), q = output_size;
    weights N(0, scale^2) in ``PARAMS`` order from ``numpy.random.default_rng(seed)``, biases zero."""
    d, nc, q, dt = validate.check_init(input_size, hidden_size, output_size, seed, dtype, scale)
    if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or not 0 < proj_size < nc:
        raise InputError(
            f"lstmp needs proj_size, an integer in [1, hidden_size = {nc}) (torch: proj_size < hidden_size), "
            f"got {proj_size!r}"
        )
    sizes = {"d": d, "c": nc, "h": int(proj_size), "q": q}
    rng = np.random.default_rng(seed)
    params = {}
    for name, dims in PARAMS.items():
        shape = tuple(sizes[k] for k in dims)
        params[name] = (
            np.zeros(shape, dt) if len(shape) == 1 else (rng.standard_normal(shape) * scale).astype(dt)
        )
    return params


def _check(params: Any, allow_complex: bool = True) -> tuple[dict[str, Array], dict[str, int], Any]:
    p, dims, dtype = validate.check_params(PARAMS, params, allow_complex=allow_complex, head=False)
    if dims["h"] >= dims["c"]:
        raise ShapeError(
            f"params['W_hr'] is (c, h) = ({dims['c']}, {dims['h']}): lstmp projects the cell's c = "
            f"{dims['c']} units to fewer, h < c (torch: proj_size < hidden_size)"
        )
    return p, dims, dtype


def _lstm_params(p: Mapping[str, Array], recurrent: Mapping[str, Array]) -> dict[str, Array]:
    return {k: recurrent[k] if k in recurrent else p[k] for k in _lstm.CELL_PARAMS}


def _first(p: Mapping[str, Array]) -> dict[str, Array]:
    """The lstm params of step 0: W_h<g> (h, c) padded with zero rows to (c, c)."""
    c, h = p["W_hr"].shape
    pad = np.zeros((c - h, c), p["W_hr"].dtype)
    return _lstm_params(p, {k: np.concatenate([p[k], pad]) for k in _RECURRENT})


def _rest(p: Mapping[str, Array]) -> dict[str, Array]:
    """The lstm params of steps 1..T-1, on the state m: W_hr @ W_h<g> (c, c)."""
    return _lstm_params(p, {k: p["W_hr"] @ p[k] for k in _RECURRENT})


def _states(state: Any, X: Array, dims: Mapping[str, int], dtype: Any) -> tuple[Array, Array]:
    """h0 (n, h) and c0 (n, c) from None or a tuple (h0, c0); h0 padded with zero columns to width c."""
    n = X.shape[1]
    if state is None:
        state = (None, None)
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise InputError(
            f"the initial state of an lstmp cell is None or a tuple (h0, c0) of (n, h = {dims['h']}) and "
            f"(n, c = {dims['c']}) arrays, got {type(state).__name__}"
        )
    h0 = validate._check_state("h0", state[0], X, n, dims["h"], dtype)
    c0 = validate._check_state("c0", state[1], X, n, dims["c"], dtype)
    pad = np.zeros((n, dims["c"] - dims["h"]), h0.dtype)
    return np.concatenate([h0, pad], axis=1), c0


def _inputs(params: Any, X: Any, state: Any, lengths: Any, allow_complex: bool = True) -> tuple[Any, ...]:
    p, dims, dtype = _check(params, allow_complex)
    X, _, _ = validate.check_inputs(X, None, {"d": dims["d"], "h": dims["h"]}, dtype, ("h",))
    lengths = validate.check_lengths(lengths, *X.shape[:2])
    return p, dims, X, _states(state, X, dims, dtype), lengths


def _run(
    p: Mapping[str, Array], X: Array, state: tuple[Array, Array], lengths: Array | None, keep: bool
) -> dict[str, Any]:
    """The two lstm runs: M (T, n, c), zero at padded steps; the last m and c; the lstm caches (keep)."""
    run = _lstm.forward if keep else _lstm.predict
    M, first = run(_first(p), X[:1], state)
    m, c = _lstm.final_states(first) if keep else first
    rest = None
    one = np.zeros(X.shape[1], bool) if lengths is None else lengths == 1
    if X.shape[0] > 1:
        later = None if lengths is None else np.maximum(lengths - 1, 1)
        M_rest, rest = run(_rest(p), X[1:], (m, c), later)
        m_rest, c_rest = _lstm.final_states(rest) if keep else rest
        M = np.concatenate([M, M_rest])
        M[1:, one] = 0  # a sequence of length 1 ran the second run for nothing
        m, c = np.where(one[:, None], m, m_rest), np.where(one[:, None], c, c_rest)
    out = {"lstmp": True, "M": M, "m": m, "c": c, "h": m @ p["W_hr"], "one": one, "lengths": lengths}
    return out | ({"first": first, "rest": rest} if keep else {})


def forward(params: Any, X: Any, h0: Any = None, lengths: Any = None) -> tuple[Array, dict[str, Any]]:
    """H (T, n, h), zero after each sequence's length, and the cache; h0 None or (h0 (n, h), c0 (n, c))."""
    p, _, X, state, lengths = _inputs(params, X, h0, lengths)
    cache = _run(p, X, state, lengths, keep=True)
    return cache["M"] @ p["W_hr"], cache


def predict(params: Any, X: Any, h0: Any = None, lengths: Any = None) -> tuple[Array, tuple[Array, Array]]:
    """Forward only (each run the lstm's ``predict``): ``(H, (h_last (n, h), c_last (n, c)))``."""
    p, _, X, state, lengths = _inputs(params, X, h0, lengths)
    run = _run(p, X, state, lengths, keep=False)
    return run["M"] @ p["W_hr"], (run["h"], run["c"])


def _cache(cache: object) -> dict[str, Any]:
    if not isinstance(cache, dict) or not cache.get("lstmp") or "first" not in cache:
        raise InputError("cache must be what lstmp's forward returned")
    return cache


def final_states(cache: Any) -> tuple[Array, Array]:
    """The last states (h (n, h), c (n, c)) of every sequence, at its own length."""
    cache = _cache(cache)
    return cache["h"].copy(), cache["c"].copy()


def step(params: Any, x_t: Any, state: Any = None) -> tuple[Array, Array]:
    """One time step for streaming: x_t (n, d) floats or (n,) ids; state None or (h (n, h), c (n, c))."""
    p, dims, _ = _check(params)
    X = validate.check_step_input(x_t, dims)
    _, _, X, padded, _ = _inputs(p, X, state, None)
    _, (m, c) = _lstm.predict(_first(p), X, padded)
    return m @ p["W_hr"], c


def _gradient(name: str, value: Any, shape: tuple[int, ...], dtype: Any) -> Array | None:
    if value is None:
        return None
    a = np.asarray(value)
    if a.shape == (1, *shape):
        a = a[0]
    if a.shape != shape or a.dtype.kind != "f":
        raise ShapeError(
            f"{name} must be a float array of shape {validate.shape_text(shape)} like final_states, got "
            f"{a.dtype} {validate.shape_text(a.shape)}"
        )
    validate._check_finite(name, a, dtype)
    return a.astype(dtype, copy=False)


def backward(
    params: Any, cache: Any, dH: Any = None, dstates: Any = None, input_grad: Any = None
) -> dict[str, Array]:
    """Gradients of sum(dH * H) + sum(dstates * final_states) for the ``forward`` that returned ``cache``:
    every key of params (the head's zero), ``"h0"`` (n, h), ``"c0"`` (n, c) and ``"X"`` as the lstm
    module's ``backward`` gives it (input_grad likewise). dstates None or (dh, dc), None inside: zero."""
    p, dims, dtype = _check(params, allow_complex=False)
    cache = _cache(cache)
    M, one, lengths = cache["M"], cache["one"], cache["lengths"]
    T, n, nc = M.shape
    nh = dims["h"]
    if nc != dims["c"] or cache["h"].shape[1] != nh:
        raise ShapeError(
            f"cache has c = {nc}, h = {cache['h'].shape[1]}, the params c = {dims['c']}, h = {nh}"
        )
    dH = validate.check_upstream(dH, np.empty((T, n, nh), dtype))
    dH = rt.mask_upstream(dH, lengths)
    if dstates is not None and not (isinstance(dstates, (tuple, list)) and len(dstates) == 2):
        raise InputError(
            f"dstates of an lstmp cell is None or a tuple (dh, dc), got {type(dstates).__name__}"
        )
    dh, dc = dstates if dstates is not None else (None, None)
    dh = _gradient("dstates[0] (dh)", dh, (n, nh), dtype)
    dc = _gradient("dstates[1] (dc)", dc, (n, nc), dtype)
    dh = np.zeros((n, nh), dtype) if dh is None else dh
    dc = np.zeros((n, nc), dtype) if dc is None else dc
    W_hr = p["W_hr"]
    dM = dH @ W_hr.T  # the projection H = M @ W_hr, and h_last = m_last @ W_hr
    dm = dh @ W_hr.T
    dW_hr = M.reshape(-1, nc).T @ dH.reshape(-1, nh) + cache["m"].T @ dh
    grads: dict[str, Array] = {}
    up_m, up_c = dM[0] + dm * one[:, None], dc * one[:, None]
    if cache["rest"] is not None:
        later = ~one[:, None]
        g = _lstm.backward(_rest(p), cache["rest"], dM[1:], (dm * later, dc * later), input_grad)
        for k in _RECURRENT:  # the rest's W' = W_hr @ W_h<g>
            dW_hr += g[k] @ p[k].T
            grads[k] = W_hr.T @ g[k]
        grads |= {k: g[k] for k in _lstm.CELL_PARAMS if k not in _RECURRENT}
        up_m, up_c = up_m + g["h0"], up_c + g["c0"]
        dX_rest = g.get("X")
    else:
        up_m, up_c = dM[0] + dm, dc
    g0 = _lstm.backward(_first(p), cache["first"], up_m[None], (None, up_c), input_grad)
    for k in _lstm.CELL_PARAMS:
        part = g0[k][:nh] if k in _RECURRENT else g0[k]  # the padded rows' gradients are dropped
        grads[k] = grads[k] + part if k in grads else part
    grads["W_hr"] = dW_hr
    grads["h0"], grads["c0"] = np.ascontiguousarray(g0["h0"][:, :nh]), g0["c0"]
    if "X" in g0:
        grads["X"] = g0["X"] if cache["rest"] is None else np.concatenate([g0["X"], dX_rest])
    return rt.head_zeros(grads, params, PARAMS)


def _single() -> Any:
    from .stack import Model  # imported on use: the model package does not import this module
    from .structure import Structure

    return Model(sys.modules[__name__], Structure())  # type: ignore[arg-type]


def head(params: Any, H: Any) -> Array:
    """logits = H @ W_hq + b_q for H (..., h)."""
    return _single().head(params, H)  # type: ignore[no-any-return]


def loss(params: Any, X: Any, Y: Any, h0: Any = None, lengths: Any = None) -> Any:
    """Mean softmax cross-entropy over the real positions."""
    return _single().loss(params, X, Y, h0, lengths)


def loss_and_grads(
    params: Any, X: Any, Y: Any, h0: Any = None, lengths: Any = None, input_grad: Any = None
) -> tuple[float, dict[str, Array], tuple[Array, Array]]:
    """The loss, every gradient (``h0`` (n, h), ``c0`` (n, c), X) and the last states (h, c)."""
    value, grads, last = _single().loss_and_grads(params, X, Y, h0, lengths, input_grad)
    grads["h0"], grads["c0"] = grads["h0"][0], grads["c0"][0]
    return value, grads, (last[0][0], last[1][0])
