"""Every adjoint of a BPTT run, evaluated from the derivation's own contributions, for the worked example.

Contract: :func:`bptt_values` interprets the :class:`~grusym.symbolic.derive.Derivation` of a cell
numerically, contribution by contribution (elementwise rules through their SymPy form, matrix products as
``@``), over a sequence of token ids with the shared head and mean cross-entropy loss. It returns the value
of every adjoint at every step (the generated module keeps these private) and the parameter gradients, and
raises if the gradients differ from the generated ``loss_and_grads``: the numbers a reader sees are the
ones the code computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...symbolic.cell import INPUT, OUTPUT, prev_name
from ...symbolic.derive import adjoint_name, derive
from ..analysis.compile import compile_scalar
from ..context import Subject
from .values import step_values

__all__ = ["bptt_values"]

Arrays = dict[str, np.ndarray]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def bptt_values(sub: Subject, params: Arrays, X: np.ndarray, Y: np.ndarray, h0: Any) -> dict[str, Any]:
    """Forward values, logits, loss, every adjoint per step and the gradients; X, Y: (T, n) token ids.

    Returns ``{"values": {v: (T, n, h)}, "logits": (T, n, q), "loss": float, "adjoints": {dv: (T, ...)}
    (``dH`` is the direct part from the head), "grads": {p: array}, "agreement": max relative difference
    from the generated gradients}``.
    """
    cell, m = sub.cell, sub.module
    der = derive(cell)
    values = step_values(cell, params, X, h0, m)
    T, nb = X.shape
    hid = values["h"].shape[-1]
    vectors = {k: np.broadcast_to(params[k], (nb, hid)) for k, p in cell.params.items() if p.kind == "vector"}
    q = params["W_hq"].shape[1]
    H = values["h"]
    logits = H @ params["W_hq"] + params["b_q"]
    onehot = np.eye(q)[Y]
    p = _softmax(logits)
    loss = float(-np.mean(np.sum(onehot * np.log(p), axis=-1)))
    dlogits = (p - onehot) / (T * nb)
    dH = dlogits @ params["W_hq"].T
    grads = {k: np.zeros_like(v, dtype=np.float64) for k, v in params.items()}
    grads["W_hq"] = np.einsum("tni,tnj->ij", H, dlogits)
    grads["b_q"] = dlogits.sum(axis=(0, 1))
    fns: dict[int, tuple[list[str], Any]] = {}
    for i, c in enumerate(der.contributions):
        if c.kind in ("elementwise", "vector"):
            fns[i] = compile_scalar(c.expr)
    adj: dict[str, list[np.ndarray]] = {"dH": list(dH), "dlogits": list(dlogits)}
    per_step: list[Arrays] = [{} for _ in range(T)]
    zero = np.zeros((nb, hid))
    carry = {s: zero for s in cell.states}  # d of each state from step t+1
    for t in reversed(range(T)):
        env: Arrays = {**vectors, **{k: v[t] for k, v in values.items()}}
        d: Arrays = {adjoint_name(s): carry[s] + (dH[t] if s == OUTPUT else 0) for s in cell.states}
        for i, c in enumerate(der.contributions):
            src = d.get(adjoint_name(c.source))
            if src is None:
                continue  # nothing reaches this step's value
            if c.kind in ("elementwise", "vector"):
                names, fn = fns[i]
                args = [src if a == adjoint_name(c.source) else env[a] for a in names]
                part = np.broadcast_to(fn(*args), src.shape)
                if c.kind == "vector":  # an (h,) parameter: summed over the batch rows (and over t)
                    grads[c.target] += part.sum(axis=0)
                    continue
            elif c.kind in ("mean", "sum"):  # reduce.RULES: the reduction of the adjoint, broadcast
                row = src.sum(axis=-1, keepdims=True) / (src.shape[-1] if c.kind == "mean" else 1)
                part = np.broadcast_to(row, src.shape)
            elif c.kind == "matmul_left":
                if c.target == INPUT:
                    continue  # token ids: one-hot rows have no gradient to return
                part = src @ params[str(c.weight)].T
            elif c.kind == "matmul_right":
                if c.left == INPUT:
                    np.add.at(grads[c.target], X[t], src)
                else:
                    grads[c.target] += env[str(c.left)].T @ src
                continue
            else:
                grads[c.target] += src.sum(axis=0)
                continue
            key = adjoint_name(c.target)
            d[key] = d[key] + part if key in d else np.array(part, dtype=np.float64)
        carry = {s: d.get(adjoint_name(prev_name(s)), zero) for s in cell.states}
        per_step[t] = d
    for key in dict.fromkeys(k for step in per_step for k in step):
        adj[key] = [step.get(key, zero) for step in per_step]
    _, code_grads, _ = m.loss_and_grads(params, X, Y, h0)
    agreement = max(
        float(np.max(np.abs(grads[k] - code_grads[k])) / max(np.max(np.abs(code_grads[k])), 1e-300))
        for k in params
    )
    if agreement > 1e-9:
        raise RuntimeError(
            f"{cell.name}: the derivation and the generated backward disagree ({agreement:.1e})"
        )
    return {
        "values": values,
        "logits": logits,
        "loss": loss,
        "adjoints": {k: np.stack(v) for k, v in adj.items()},
        "grads": grads,
        "agreement": agreement,
        "code_loss": float(m.loss(params, X, Y, h0)),
    }
