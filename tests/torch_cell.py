"""A cell declaration run as torch operations: the user's own cell function, re-executed on tensors.

:func:`unroll` calls the declaration function once per time step with a builder whose ``c.affine``,
``c.let``, ``c.prev``, ``c.vector`` ... compute torch tensors, and with the primitives it names replaced by
their torch formulas; torch's autograd differentiates the whole unrolled loss. Nothing of grusym takes part
(no builder, no SymPy, no derivation, no generated code): what the user wrote is what is run, so a defect
anywhere between the declaration and the generated module shows up. Needs torch (callers importorskip it).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import torch


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # derivative 1/5 inside (-5/2, 5/2), 0 outside and at the kinks: the convention grusym documents
    inside = (x > -2.5) & (x < 2.5)
    return torch.where(inside, 0.2 * x + 0.5, (x >= 2.5).to(x.dtype))


PRIMITIVES = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,  # derivative 0 at 0
    "softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x)),  # F.softplus is linear past 20
    "exp": torch.exp,
    "identity": lambda x: x,
    "hard_sigmoid": _hard_sigmoid,
}


class _Builder:
    """The ``c`` of one time step: every method computes its value at once."""

    def __init__(self, leaves: dict[str, torch.Tensor], x: torch.Tensor, prev: dict[str, torch.Tensor]):
        self.leaves, self.x, self.prev_values = leaves, x, prev
        self.values: dict[str, torch.Tensor] = {}
        self.n, self.h = next(iter(prev.values())).shape
        self.dtype = x.dtype

    @property
    def X(self) -> torch.Tensor:
        return self.x

    def prev(self, state: str) -> torch.Tensor:
        return self.prev_values[state]

    @property
    def h_prev(self) -> torch.Tensor:
        return self.prev("h")

    def value(self, name: str) -> torch.Tensor:
        return self.values[name]

    def vector(self, name: str) -> torch.Tensor:
        return self.leaves[name]

    def _set(self, name: str, v: Any) -> torch.Tensor:
        self.values[name] = torch.broadcast_to(torch.as_tensor(v, dtype=self.dtype), (self.n, self.h))
        return self.values[name]

    def let(self, name: str, value: Any) -> torch.Tensor:
        return self._set(name, value)

    def affine(self, gate, *, x=True, hidden=None, recurrent=True, bias=None, name=None):
        total = torch.zeros(self.n, self.h, dtype=self.dtype)
        if x:
            total = total + self.x @ self.leaves[f"W_x{gate}"]
        if recurrent:
            left = self.prev("h") if hidden is None else hidden
            total = total + left @ self.leaves[f"W_h{gate}"]
        if bias is None or bias is True:
            bias = (f"b_{gate}",)
        elif bias is False:
            bias = ()
        for b in (bias,) if isinstance(bias, str) else bias:
            total = total + self.leaves[b]
        return self._set(name or f"a_{gate}", total)


def _on_tensors(fn: Any) -> Any:
    """``fn`` with the primitives it names (as globals) replaced by their torch formulas."""
    env = dict(fn.__globals__)  # nested functions of the declaration see these globals too
    env.update({k: v for k, v in PRIMITIVES.items() if k in env})
    if "apply" in env:
        env["apply"] = lambda primitive, v: PRIMITIVES[primitive](v)
    return types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)


def unroll(
    fn: Any,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    initial: dict[str, np.ndarray],
    lengths: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(loss, gradients, last states, H) of cell function ``fn`` over X with the char-LM head.

    X: (T, n, d) floats or (T, n) token ids (one-hot rows; no "X" gradient); initial: state name ->
    (n, h); lengths: None or (n,) true lengths in any order. Gradients: every parameter, "<state>0" and
    "X"; H (T, n, h) is zero after each sequence's end; last states are each sequence's at its length.
    dtype: the precision of the whole computation (float32: to measure how rounding moves the result).
    """
    step = _on_tensors(fn)
    tokens = np.issubdtype(X.dtype, np.integer)
    leaves = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}
    starts = {s: torch.tensor(v, dtype=dtype, requires_grad=True) for s, v in initial.items()}
    if tokens:
        vocab = leaves[_input_weight(params)].shape[0]
        xs = torch.nn.functional.one_hot(torch.from_numpy(X), vocab).to(dtype)
    else:
        xs = torch.tensor(X, dtype=dtype, requires_grad=True)
    T, n = X.shape[:2]
    lengths = np.full(n, T) if lengths is None else np.asarray(lengths)
    valid = torch.from_numpy(np.arange(T)[:, None] < lengths[None, :])
    prev = dict(starts)
    history: dict[str, list[torch.Tensor]] = {s: [] for s in starts}
    for t in range(T):
        c = _Builder(leaves, xs[t], prev)
        step(c)
        prev = {s: c.values[s] for s in starts}
        for s in starts:
            history[s].append(prev[s])
    H = torch.stack(history["h"])
    logits = H @ leaves["W_hq"] + leaves["b_q"]
    rows = torch.logsumexp(logits, -1) - logits.gather(-1, torch.from_numpy(Y)[..., None])[..., 0]
    loss = (rows * valid).sum() / valid.sum()
    loss.backward()
    grads = {k: _grad(v) for k, v in leaves.items()} | {f"{s}0": _grad(v) for s, v in starts.items()}
    if not tokens:
        grads["X"] = _grad(xs)
    last = {s: torch.stack(history[s])[lengths - 1, np.arange(n)].detach().numpy() for s in starts}
    return loss.item(), grads, last, (H * valid[..., None]).detach().numpy()


def _input_weight(params: dict[str, np.ndarray]) -> str:
    return next(k for k in params if k.startswith("W_x"))


def _grad(v: torch.Tensor) -> np.ndarray:
    return np.zeros(tuple(v.shape)) if v.grad is None else v.grad.numpy()
