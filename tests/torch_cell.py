"""A cell declaration run as torch operations: the user's own cell function, re-executed on tensors.

:func:`unroll` runs the declaration function on torch tensors (tests/source_cell.py: a builder whose
``c.affine``, ``c.let``, ``c.prev`` ... compute at once, the primitives replaced by their torch formulas),
and torch's autograd differentiates the whole unrolled loss. Nothing of grusym takes part (no builder, no
SymPy, no derivation, no generated code): what the user wrote is what is run, so a defect anywhere between
the declaration and the generated module shows up. Needs torch (callers importorskip it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import source_cell


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
    "softsign": torch.nn.functional.softsign,
    "sqrt": torch.sqrt,
    "log": torch.log,
    "leaky_relu": torch.nn.functional.leaky_relu,  # slope 0.01
    "elu": torch.nn.functional.elu,  # alpha 1
    "gelu": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "silu": torch.nn.functional.silu,
}


def unroll(
    fn: Any,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    initial: dict[str, np.ndarray],
    lengths: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
    aux: dict | None = None,
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(loss, gradients, last states, H) of cell function ``fn`` over X with the char-LM head.

    X: (T, n, d) floats or (T, n) token ids (one-hot rows; no "X" gradient); initial: state name ->
    (n, h); lengths: None or (n,) true lengths in any order. Gradients: every parameter, "<state>0" and
    "X"; H (T, n, h) is zero after each sequence's end; last states are each sequence's at its length.
    dtype: the precision of the whole computation (float32: to measure how rounding moves the result).
    aux: the per-step inputs (c.input), name -> (T, n, h), constants (no gradient).
    """
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
    shape = next(iter(initial.values())).shape

    def broadcast(v: Any) -> torch.Tensor:
        return torch.broadcast_to(torch.as_tensor(v, dtype=dtype), shape)

    fixed = {k: torch.tensor(np.asarray(v), dtype=dtype) for k, v in (aux or {}).items()}
    history = source_cell.run(source_cell.on(fn, PRIMITIVES), leaves, xs, starts, broadcast, fixed)
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
