"""NumPy kernels shared by the generated modules: stable primitives, projections, the loss head, init.

Contract: NumPy only (never SymPy); input checking lives in :mod:`grusym.validate`. Functions that the
complex-step check runs through (``sigmoid``, ``project``, ``mean_cross_entropy``) are analytic: they use no
``abs``, ``max`` or comparisons on the value itself, so complex inputs give complex-step derivatives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import DTypeError, InputError

__all__ = [
    "init_params",
    "mean_cross_entropy",
    "project",
    "sigmoid",
    "softmax_cross_entropy",
    "token_weight_grad",
]

Array = NDArray[Any]

_FLOATS = (np.float32, np.float64)
# above this vocabulary size a sort-and-segment-sum beats the one-hot GEMM for embedding gradients
_ONE_HOT_MAX = 512


def sigmoid(x: Array, out: Array | None = None) -> Array:
    """Logistic sigmoid as 0.5 + 0.5*tanh(x/2): no overflow at |x| = 1000, analytic for complex x."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def project(X: Array, tokens: bool, W: Array, b: Array) -> Array:
    """X @ W + b for every time step at once: one GEMM for floats, a row gather for token ids."""
    if tokens:
        return W[X] + b
    T, n, d = X.shape
    return (X.reshape(T * n, d) @ W + b).reshape(T, n, -1)


def token_weight_grad(X: Array, dA: Array, vocab: int) -> Array:
    """X_onehot.T @ dA for token ids X (T, n) and dA (T, n, k), without materialising a large one-hot."""
    ids = X.reshape(-1)
    rows = dA.reshape(ids.size, -1)
    if vocab <= _ONE_HOT_MAX:
        onehot = np.zeros((ids.size, vocab), dtype=rows.dtype)
        onehot[np.arange(ids.size), ids] = 1
        return onehot.T @ rows
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((vocab, rows.shape[1]), dtype=rows.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def softmax_cross_entropy(logits: Array, targets: Array) -> tuple[Any, Array]:
    """Mean cross-entropy of rows of ``logits`` (N, q) against ``targets`` (N,) and its gradient.

    Rule: with p = softmax(logits), d loss / d logits = (p - onehot(targets)) / N.
    The row maximum is subtracted before exponentiating (log-sum-exp trick).
    """
    N = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    total = p.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    loss = np.mean(np.log(total[:, 0]) - shifted[rows, targets])
    p /= total
    p[rows, targets] -= 1
    p /= N
    return loss, p


def mean_cross_entropy(logits: Array, targets: Array) -> Any:
    """The loss of ``softmax_cross_entropy`` alone, analytic in complex logits (for the complex step)."""
    shifted = logits - logits.real.max(axis=1, keepdims=True)  # any real shift leaves log-sum-exp unchanged
    rows = np.arange(logits.shape[0])
    return np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[rows, targets])


def init_params(
    spec: Mapping[str, tuple[str, ...]],
    input_size: int,
    hidden_size: int,
    output_size: int,
    seed: int | None,
    dtype: Any,
    scale: float,
) -> dict[str, Array]:
    """Weights drawn from N(0, scale^2) in ``spec`` order from one seeded generator; biases zero (d2l)."""
    sizes = {"d": input_size, "h": hidden_size, "q": output_size}
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            arg = {"d": "input_size", "h": "hidden_size", "q": "output_size"}[name]
            raise InputError(f"{arg} must be a positive integer, got {size!r}")
    dt = np.dtype(dtype)
    if dt.type not in _FLOATS:
        raise DTypeError(f"dtype must be float32 or float64, got {dt}")
    rng = np.random.default_rng(seed)
    params = {}
    for name, dim_names in spec.items():
        shape = tuple(sizes[dn] for dn in dim_names)
        if len(shape) == 1:
            params[name] = np.zeros(shape, dtype=dt)
        else:
            params[name] = (rng.standard_normal(shape) * scale).astype(dt)
    return params
