"""A cell declaration's own source run on arrays: the builder of the torch and extended-precision oracles.

:func:`run` calls the declaration function once per time step with a builder whose ``c.affine``,
``c.let``, ``c.prev``, ``c.vector`` ... compute on the arrays of some library (torch tensors with
autograd in tests/torch_cell.py; NumPy 80-bit ``longdouble`` here), with the primitives the function
names replaced by that library's formulas. Nothing of grusym takes part: no builder, no SymPy, no
derivation, no generated code. :func:`extended_loss` is the mean cross-entropy of the unrolled cell in
extended precision (eps 1e-19, max 1e4932), for settling what float64 rounding does to one side or the
other.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np


class Builder:
    """The ``c`` of one time step: every method computes its value at once; ``broadcast(v)`` makes a value
    a full (n, h) array of the working type."""

    def __init__(
        self, leaves: dict[str, Any], x: Any, prev: dict[str, Any], broadcast: Callable, aux: Any = None
    ) -> None:
        self.leaves, self.x, self.prev_values, self.broadcast = leaves, x, prev, broadcast
        self.aux = aux or {}  # this step's per-step inputs (c.input)
        self.values: dict[str, Any] = {}

    @property
    def X(self) -> Any:
        return self.x

    def prev(self, state: str) -> Any:
        return self.prev_values[state]

    @property
    def h_prev(self) -> Any:
        return self.prev("h")

    def value(self, name: str) -> Any:
        return self.values[name]

    def vector(self, name: str, init: float = 0.0) -> Any:
        return self.leaves[name]

    def input(self, name: str) -> Any:
        return self.aux[name]

    def mean(self, v: Any, name: str | None = None, *, axis: int = -1) -> Any:
        v = self.broadcast(v)
        return self.let(name or "_mean", v.sum(-1)[..., None] / v.shape[-1])

    def sum(self, v: Any, name: str | None = None, *, axis: int = -1) -> Any:
        return self.let(name or "_sum", self.broadcast(v).sum(-1)[..., None])

    def let(self, name: str, value: Any) -> Any:
        self.values[name] = self.broadcast(value)
        return self.values[name]

    def affine(self, gate, *, x=True, hidden=None, recurrent=True, bias=None, name=None):
        terms = [self.x @ self.leaves[f"W_x{gate}"]] if x else []
        if recurrent:
            terms.append((self.prev("h") if hidden is None else hidden) @ self.leaves[f"W_h{gate}"])
        if bias is None or bias is True:
            bias = (f"b_{gate}",)
        elif bias is False:
            bias = ()
        terms += [self.leaves[b] for b in ((bias,) if isinstance(bias, str) else bias)]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return self.let(name or f"a_{gate}", total)


def on(fn: Any, primitives: dict[str, Callable]) -> Any:
    """``fn`` with the primitives it names (as globals, or through ``apply``) replaced by ``primitives``."""
    env = dict(fn.__globals__)  # nested functions of the declaration see these globals too
    env.update({k: v for k, v in primitives.items() if k in env})
    if "apply" in env:
        env["apply"] = lambda primitive, v: primitives[primitive](v)
    if env.get("layer_norm", fn) is not fn:  # grusym.symbolic.norm's helper, its own sqrt replaced too
        env["layer_norm"] = on(env["layer_norm"], primitives)
    return types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)


def run(
    step: Any, leaves: dict, xs: Any, starts: dict, broadcast: Callable, aux: dict | None = None
) -> dict[str, list]:
    """Each state's values after every time step of ``step`` (a function from :func:`on`); aux: the
    per-step inputs, name -> (T, n, h)."""
    prev = dict(starts)
    history: dict[str, list] = {s: [] for s in starts}
    for t in range(len(xs)):
        c = Builder(leaves, xs[t], prev, broadcast, {k: v[t] for k, v in (aux or {}).items()})
        step(c)
        prev = {s: c.values[s] for s in starts}
        for s in starts:
            history[s].append(prev[s])
    return history


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 5 + np.longdouble(0.5), 0, 1)


EXTENDED = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "softplus": lambda x: np.logaddexp(x, 0),
    "exp": np.exp,
    "identity": lambda x: x,
    "hard_sigmoid": _hard_sigmoid,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "sqrt": np.sqrt,
    "log": np.log,
    "leaky_relu": lambda x: np.where(x > 0, x, x / 100),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "gelu": lambda x: x / 2 * (1 + np.tanh(np.sqrt(2 / np.pi, dtype=x.dtype) * (x + x**3 * 44715 / 10**6))),
    "silu": lambda x: x / (1 + np.exp(-x)),
}


def extended_loss(
    fn: Any,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    initial: dict[str, np.ndarray],
    lengths: np.ndarray | None = None,
    aux: dict | None = None,
) -> np.longdouble:
    """The mean cross-entropy over the valid positions of cell function ``fn`` with the char-LM head, in
    80-bit extended precision. X: (T, n, d) floats or (T, n) token ids; initial: state name -> (n, h)."""
    ld = np.longdouble
    leaves = {k: v.astype(ld) for k, v in params.items()}
    if np.issubdtype(X.dtype, np.integer):
        xs = np.eye(params[next(k for k in params if k.startswith("W_x"))].shape[0], dtype=ld)[X]
    else:
        xs = X.astype(ld)
    T, n = X.shape[:2]
    h = next(iter(initial.values())).shape[1]
    starts = {s: v.astype(ld) for s, v in initial.items()}

    def broadcast(v: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=ld), (n, h))

    with np.errstate(over="ignore", invalid="ignore"):
        fixed = {k: np.asarray(v).astype(ld) for k, v in (aux or {}).items()}
        H = np.stack(run(on(fn, EXTENDED), leaves, xs, starts, broadcast, fixed)["h"])
        logits = H @ leaves["W_hq"] + leaves["b_q"]
        top = logits.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
        rows = lse - np.take_along_axis(logits, Y[..., None], axis=-1)[..., 0]
    valid = np.arange(T)[:, None] < (np.full(n, T) if lengths is None else np.asarray(lengths))[None, :]
    return rows[valid].sum() / valid.sum()
