"""NumPy kernels shared by the generated modules: stable primitives, projections, the loss head, init;
and, re-exported from :mod:`grusym.buffers`, the allocators their arrays come from.

Contract: NumPy only (never SymPy); input checking lives in :mod:`grusym.validate`. Functions that the
complex-step check runs through (``sigmoid``, ``project``, ``mean_cross_entropy``) are analytic: they use no
``abs``, ``max`` or comparisons on the value itself, so complex inputs give complex-step derivatives.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .buffers import ALIASING_STRIDE, Inference, Workspace, clear_workspaces, fresh, weight_buffer
from .validate import check_init

__all__ = [
    "ALIASING_STRIDE",
    "Inference",
    "Workspace",
    "absolute",
    "bias_column",
    "clear_workspaces",
    "elu",
    "fresh",
    "gelu",
    "hard_sigmoid",
    "head_zeros",
    "init_params",
    "last_state",
    "leaky_relu",
    "mask_upstream",
    "mean_cross_entropy",
    "one_hot_ids",
    "ordered",
    "project",
    "relu",
    "row_mean",
    "row_sum",
    "seed_last_states",
    "sigmoid",
    "silu",
    "softmax_cross_entropy",
    "softplus",
    "softsign",
    "state_upstream",
    "step",
    "token_weight_grad",
    "valid_rows",
    "weight_buffer",
    "zero_padded",
]

Array = NDArray[Any]

# above this vocabulary size a sort-and-segment-sum beats the one-hot GEMM for embedding gradients
ONE_HOT_MAX = 512
# below this many classes the loss reduces rows through a transposed copy and a matrix-vector product
_SHORT_ROWS = 128


_HALF: dict[Any, Array] = {}


def numba_cache(module: str) -> bool:
    """Whether a fused module's kernels may use numba's on-disk cache: numba reloads a cached kernel by
    importing its module by name, which a module loaded from a file path alone cannot be."""
    return module in sys.modules


def sigmoid(x: Array, out: Array | None = None) -> Array:
    """Logistic sigmoid as 0.5 + 0.5*tanh(x/2): no overflow at |x| = 1000, analytic for complex x."""
    half = _HALF.get(x.dtype)
    if half is None:  # a 0-d array: ufuncs take it without the conversion a Python float costs
        half = _HALF[x.dtype] = np.array(0.5, dtype=x.dtype)
    out = np.multiply(x, half, out=out)
    np.tanh(out, out=out)
    np.multiply(out, half, out=out)
    np.add(out, half, out=out)
    return out


def relu(x: Array, out: Array | None = None) -> Array:
    """max(x, 0); for complex x (the complex step) x where Re x > 0, else 0: analytic on each side."""
    if x.dtype.kind == "c":
        return np.multiply(x, x.real > 0, out=out)
    return np.maximum(x, _constant(0, x.dtype), out=out)


def softplus(x: Array, out: Array | None = None) -> Array:
    """log(1 + exp(x)) without overflow: logaddexp for real x; m + log(exp(-m) + exp(x - m)) with the real
    shift m = max(Re x, 0) for complex x (any real shift leaves the value, and its analyticity, unchanged)."""
    if x.dtype.kind != "c":
        return np.logaddexp(_constant(0, x.dtype), x, out=out)
    m = np.maximum(x.real, 0)
    return np.add(m, np.log(np.exp(-m) + np.exp(x - m)), out=out)


def hard_sigmoid(x: Array, out: Array | None = None) -> Array:
    """clip(x/5 + 1/2, 0, 1), Keras 2's hard sigmoid (0.2*x + 0.5); piecewise analytic for complex x."""
    fifth, half = _constant(0.2, x.dtype), _constant(0.5, x.dtype)
    y = np.multiply(x, fifth, out=out)
    np.add(y, half, out=y)
    if y.dtype.kind == "c":
        y[y.real <= 0] = 0
        y[y.real >= 1] = 1
        return y
    return np.clip(y, _constant(0, y.dtype), _constant(1, y.dtype), out=y)


def _sign_re(x: Array) -> Array:
    """sign(Re x): -1, 0 or 1 in the real dtype of x (the branch of |x| on each side of the kink)."""
    return np.sign(x.real)


def absolute(x: Array, out: Array | None = None) -> Array:
    """|x|; for complex x (the complex step) x*sign(Re x): analytic on each side, derivative 0 at 0."""
    if x.dtype.kind == "c":
        return np.multiply(x, _sign_re(x), out=out)
    return np.abs(x, out=out)


def softsign(x: Array, out: Array | None = None) -> Array:
    """x / (1 + |x|), |x| as in :func:`absolute` (analytic for complex x; 1 + |x| >= 1, no overflow)."""
    denominator = absolute(x)
    np.add(denominator, _constant(1, x.dtype), out=denominator)
    return np.divide(x, denominator, out=out)


def leaky_relu(x: Array, out: Array | None = None) -> Array:
    """x where x > 0, x/100 elsewhere (torch's default slope 0.01; at 0 the slope 1/100, as torch)."""
    slope = np.where(x.real > 0, _constant(1, x.dtype), _constant(0.01, x.dtype))
    return np.multiply(x, slope, out=out)


def elu(x: Array, out: Array | None = None) -> Array:
    """x where x > 0, exp(x) - 1 elsewhere (alpha 1, torch's default); exp only of the non-positive
    side (no overflow), expm1 for accuracy near 0; analytic on each side for complex x."""
    positive = x.real > 0
    negative_side = np.expm1(np.where(positive, _constant(0, x.dtype), x))
    y = np.where(positive, x, negative_side)
    if out is None:
        return y
    np.copyto(out, y)
    return out


# gelu's tanh form (torch's approximate="tanh"): sqrt(2/pi) and 0.044715
_GELU_K, _GELU_C = float(np.sqrt(2 / np.pi)), 0.044715
# beyond |x| = 50 the tanh is +-1 to the last bit; clipping there keeps x**3 from overflowing (float32)
_GELU_CLIP = 50.0


def gelu(x: Array, out: Array | None = None) -> Array:
    """x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as x*sigmoid(2u) with u the tanh's argument (the
    stable sigmoid: no overflow); analytic for complex x (the clip only touches |Re x| > 50, where the
    tanh is flat)."""
    xc = x if x.dtype.kind == "c" else np.clip(x, -_GELU_CLIP, _GELU_CLIP)
    u = np.multiply(xc, xc)
    np.multiply(u, _constant(_GELU_C, x.dtype), out=u)
    np.add(u, _constant(1, x.dtype), out=u)
    np.multiply(u, xc, out=u)
    np.multiply(u, _constant(2 * _GELU_K, x.dtype), out=u)
    sigmoid(u, out=u)
    return np.multiply(x, u, out=out)


def silu(x: Array, out: Array | None = None) -> Array:
    """x*sigmoid(x) through the stable sigmoid (no overflow at any x; analytic for complex x)."""
    s = sigmoid(x)
    return np.multiply(x, s, out=out)


def step(x: Array, out: Array | None = None) -> Array:
    """1 where x > 0, else 0 (0 at 0): the Heaviside step that leaky_relu's derivative rule reads."""
    positive = x.real > 0
    if out is None:
        return positive.astype(x.dtype)
    np.copyto(out, positive)
    return out


def row_sum(v: Array, out: Array) -> Array:
    """Each row's sum over the hidden units, in every column of that row (``out`` (n, h) like ``v``)."""
    np.copyto(out, v.sum(axis=1, keepdims=True))
    return out


def row_mean(v: Array, out: Array) -> Array:
    """Each row's mean over the hidden units, in every column of that row (``out`` (n, h) like ``v``)."""
    np.copyto(out, v.sum(axis=1, keepdims=True) / v.shape[1])
    return out


_CONSTANTS: dict[tuple[float, Any], Array] = {}


def _constant(value: float, dtype: Any) -> Array:
    """A cached 0-d array: ufuncs take it without converting a Python scalar on every call."""
    key = (value, dtype)
    c = _CONSTANTS.get(key)
    if c is None:
        c = _CONSTANTS[key] = np.array(value, dtype=dtype)
    return c


def project(X: Array, ids: Array | None, W: Array, b: Array, out: Array | None = None) -> Array:
    """X @ W + b for every time step at once: a row gather by token ids, else one GEMM.

    X: (T, n, d) floats or (T, n) token ids; ids: what :func:`one_hot_ids` says of X (token ids in
    [0, d), already checked, to gather by), or None for the GEMM of float X; W: (d, k); b: (k,).
    Returns (T, n, k), written into ``out`` when given.
    """
    if ids is not None:  # the bias folded into the small (d, k) table: one pass over the (T, n, k) result
        return np.take(W + b, ids, axis=0, out=out, mode="clip")  # "clip" never buffers; ids are in range
    T, n, d = X.shape
    k = W.shape[1]
    rows = out.reshape(T * n, k) if out is not None and out.strides[0] == n * out.strides[1] else None
    if bias_column(d, k):  # one pass over the result: X with a column of ones, W with the bias row
        dtype = np.result_type(X, W)
        Xb = np.empty((T * n, d + 1), dtype)
        Xb[:, :d] = X.reshape(T * n, d)
        Xb[:, d] = 1
        Wb = weight_buffer(fresh, "Wb", (d + 1, k), dtype)
        Wb[:d] = W
        Wb[d] = b
        result = np.matmul(Xb, Wb, out=rows)
    else:
        result = np.matmul(X.reshape(T * n, d), W, out=rows)
        result += b
    if out is None:
        return result.reshape(T, n, k)
    if rows is None:  # the (T, n) axes of out do not merge into rows: through a temporary
        out[...] = result.reshape(T, n, k)
    return out


def one_hot_ids(X: Array, tokens: bool) -> Array | None:
    """The token ids (T, n) :func:`project` can gather by: X itself for token ids, and the ids of real
    float rows (T, n, d) that are all exactly one-hot (one 1, every other entry 0); else None.

    For such rows the GEMM's every sum is 1*W[i, j] plus zeros plus b[j]: the row gather of W + b gives
    the same values (tests/test_projection.py), without the GEMM (d2l, h 256: 0.56 -> 0.10 ms). Other
    inputs cost a look at one row; complex X (the complex-step check's dX) always takes the GEMM."""
    if tokens:
        return X
    if X.dtype.kind != "f" or X.ndim != 3 or X.size == 0:
        return None
    rows = X.reshape(-1, X.shape[2])
    if np.count_nonzero(rows[0]) != 1:  # the common case of dense floats ends here
        return None
    ids = rows.argmax(axis=1)
    if np.count_nonzero(rows) != len(rows) or not (rows[np.arange(len(rows)), ids] == 1).all():
        return None  # a row with two entries, or whose one entry is not 1 (every row has one: argmax)
    return ids.reshape(X.shape[:2])


def bias_column(d: int, k: int) -> bool:
    """Whether :func:`project` folds the bias into its GEMM as a column of ones (X (., d) @ W (d, k)).

    Folded, the GEMM writes the (T*n, k) result in one pass; a separate ``+= b`` reads and writes all of it
    again (d2l, one-hot rows: 0.72 -> 0.43 ms; n 64, d 128, h 512: 26.7 -> 16.1 ms). The copy of X it
    needs costs less than that second pass while d < k; for wider inputs the bias is added after."""
    return d < k


def token_weight_grad(X: Array, dA: Array, vocab: int) -> Array:
    """X_onehot.T @ dA for token ids X (T, n) and dA (T, n, k), without materialising a large one-hot."""
    ids = X.reshape(-1)
    rows = dA.reshape(ids.size, -1)
    if vocab <= ONE_HOT_MAX:
        onehot = np.zeros((ids.size, vocab), dtype=rows.dtype)
        onehot[np.arange(ids.size), ids] = 1
        return onehot.T @ rows
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((vocab, rows.shape[1]), dtype=rows.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def softmax_cross_entropy(
    logits: Array, targets: Array, overwrite: bool = False, valid: Array | None = None
) -> tuple[Any, Array]:
    """Mean cross-entropy of rows of ``logits`` (N, q) against ``targets`` (N,) and its gradient (N, q).

    Rule: with p = softmax(logits), d loss / d logits = (p - onehot(targets)) / N.
    The row maximum is subtracted before exponentiating (log-sum-exp trick). ``overwrite=True`` reuses
    ``logits`` as the gradient's memory. ``valid`` (N,) bool: the mean runs over those rows only, N being
    their count, and the other rows' gradient is zero (padded positions).
    """
    if valid is not None:
        return _masked_softmax_cross_entropy(logits, targets, overwrite, valid)
    N, q = logits.shape
    p = logits if overwrite else logits.copy()
    # NumPy reduces short rows slowly (d2l: 55 us for a (1120, 28) max); a transposed copy reduced along
    # axis 0 takes 14 us, and the row sums are a matrix-vector product
    short = q < _SHORT_ROWS
    p -= (np.ascontiguousarray(p.T).max(axis=0) if short else p.max(axis=1))[:, None]
    rows = np.arange(N)
    picked = p[rows, targets].sum()
    np.exp(p, out=p)
    total = p @ np.ones(q, dtype=p.dtype) if short else p.sum(axis=1)
    loss = (np.log(total).sum() - picked) / N
    np.multiply(total, N, out=total)
    p /= total[:, None]
    p[rows, targets] -= 1 / N
    return loss, p


def _masked_softmax_cross_entropy(
    logits: Array, targets: Array, overwrite: bool, valid: Array
) -> tuple[Any, Array]:
    N = int(np.count_nonzero(valid))
    p = logits if overwrite else logits.copy()
    p -= p.max(axis=1, keepdims=True)
    rows = np.arange(p.shape[0])
    picked = p[rows, targets]
    np.exp(p, out=p)
    total = p.sum(axis=1)
    loss = (np.log(total)[valid].sum() - picked[valid].sum()) / N
    p /= (total * N)[:, None]
    p[rows, targets] -= 1 / N
    p[~valid] = 0
    return loss, p


def mean_cross_entropy(logits: Array, targets: Array, valid: Array | None = None) -> Any:
    """The loss of ``softmax_cross_entropy`` alone, analytic in complex logits (for the complex step).

    valid: (N,) bool, the rows the mean runs over (all when None).
    """
    if valid is not None:
        logits, targets = logits[valid], targets[valid]
    shifted = logits - logits.real.max(axis=1, keepdims=True)  # any real shift leaves log-sum-exp unchanged
    rows = np.arange(logits.shape[0])
    return np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[rows, targets])


def valid_rows(lengths: Array, T: int) -> Array:
    """(T * n,) bool in time-major row order: True where step t is inside sequence i (t < lengths[i])."""
    return (np.arange(T)[:, None] < lengths[None, :]).reshape(-1)


def zero_padded(S: Array, lengths: Array) -> None:
    """Zero the states after each sequence's end in S (T + 1, n, h), where S[t + 1] is step t's state."""
    S[1:][~valid_rows(lengths, S.shape[0] - 1).reshape(S.shape[0] - 1, -1)] = 0


def last_state(S: Array, lengths: Array | None) -> Array:
    """Each sequence's last state from S (T + 1, n, h): S[lengths[i], i] (S[T] without lengths), a copy."""
    if lengths is None:
        return S[-1].copy()
    return S[lengths, np.arange(S.shape[1])]


def mask_upstream(dH: Array, lengths: Array | None) -> Array:
    """dH (T, n, h) with the padded positions zeroed (a copy; dH itself unchanged when lengths is None)."""
    if lengths is None:
        return dH
    return dH * (np.arange(dH.shape[0])[:, None] < lengths[None, :])[:, :, None]


def seed_last_states(
    dH: Array,
    dlast: tuple[Array | None, ...] | None,
    states: tuple[str, ...],
    output: str,
    lengths: Array | None,
) -> tuple[Array, dict[str, Array]]:
    """Put the gradient on each sequence's last state where that state was made: at step ``lengths[i] - 1``
    (T - 1 without lengths). The output state's goes into dH (a copy) there; every other state's into an
    upstream array (T, n, h) of its own, zero elsewhere, which ``_backward`` adds to the gradient it
    carries back through that state. Returns (dH, {state: upstream})."""
    if dlast is None:
        return dH, {}
    T, n = dH.shape[:2]
    last = np.full(n, T - 1) if lengths is None else lengths - 1
    rows = np.arange(n)
    upstream: dict[str, Array] = {}
    for state, seed in zip(states, dlast, strict=True):
        if seed is None:
            continue
        if state == output:
            dH = dH.copy()
            dH[last, rows] += seed
        else:
            a = upstream[state] = np.zeros(dH.shape, dH.dtype)
            a[last, rows] = seed
    return dH, upstream


def state_upstream(upstream: dict[str, Array] | None, state: str, like: Array, buf: Any) -> Array:
    """The upstream gradient (T, n, h) of a state other than the output: ``seed_last_states``' array, or
    zeros when there is none."""
    if upstream and state in upstream:
        return upstream[state]
    a = buf("d" + state + "@upstream", like.shape, like.dtype)
    a.fill(0)
    return a


def ordered(grads: dict[str, Array], spec: Mapping[str, Any]) -> dict[str, Array]:
    """grads with the parameters first, in ``spec`` order (the head among them when present), then the
    initial states' and the input's gradients."""
    out = {k: grads[k] for k in spec if k in grads}
    out.update((k, v) for k, v in grads.items() if k not in out)
    return out


def head_zeros(
    grads: dict[str, Array], params: Mapping[str, Any], spec: Mapping[str, Any]
) -> dict[str, Array]:
    """``backward``'s gradients: the head's are zero (the recurrence does not read it), present when params
    hold the head."""
    for k in ("W_hq", "b_q"):
        if k in params:
            grads[k] = np.zeros_like(params[k])
    return ordered(grads, spec)


def init_params(
    spec: Mapping[str, tuple[str, ...]],
    input_size: int,
    hidden_size: int,
    output_size: int,
    seed: int | None,
    dtype: Any,
    scale: float,
    init: Mapping[str, float] | None = None,
) -> dict[str, Array]:
    """Weights drawn from N(0, scale^2) in ``spec`` order from one seeded generator; biases zero (d2l),
    the vectors ``init`` names filled with its constant (a layer norm's gains, 1)."""
    d, nh, q, dt = check_init(input_size, hidden_size, output_size, seed, dtype, scale)
    sizes = {"d": d, "h": nh, "q": q}
    rng = np.random.default_rng(seed)
    params = {}
    for name, dim_names in spec.items():
        shape = tuple(sizes[dn] for dn in dim_names)
        if len(shape) == 1:
            params[name] = np.full(shape, (init or {}).get(name, 0), dtype=dt)
        else:
            params[name] = (rng.standard_normal(shape) * scale).astype(dt)
    return params
