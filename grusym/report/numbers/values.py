"""Every intermediate value of a cell over a sequence, evaluated from the declared steps themselves.

Contract: :func:`step_values` interprets the variant's :class:`~grusym.symbolic.cell.Cell` step by step
(linear steps as matrix products, elementwise steps through their SymPy scalar form), so the report can show
gate activations and evaluate the closed-form Jacobian without depending on what the generated module
chooses to cache. It checks every step against one step of the generated module from the same state and
raises if they differ (one step at a time: a tolerance that fits a chaotic run's last step fits any).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ...symbolic.cell import INPUT, OUTPUT, Cell, prev_name, scalar_form
from ...symbolic.variants import CELLS
from ..analysis.compile import compile_scalar

__all__ = ["initial_state", "split_state", "state_grads", "step_values"]


def initial_state(cell: Cell, n: int, h: int, value: np.ndarray | None = None) -> Any:
    """Zeros (or ``value``, (n, S h) with the states side by side) in the form the generated module takes:
    an (n, h) array for one state, a tuple in ``cell.states`` order for several."""
    full = np.zeros((n, h * len(cell.states))) if value is None else np.asarray(value, dtype=np.float64)
    parts = split_state(cell, full)
    return parts[0] if len(parts) == 1 else tuple(parts)


def split_state(cell: Cell, full: np.ndarray) -> list[np.ndarray]:
    """(..., S h) with the states side by side -> one (..., h) array per state, in ``cell.states`` order."""
    return list(np.split(full, len(cell.states), axis=-1))


def state_grads(cell: Cell, grads: dict[str, Any]) -> np.ndarray:
    """The gradient of the full initial state, (n, S h): ``grads["h0"], grads["c0"], ...`` side by side."""
    return np.concatenate([grads[f"{s}0"] for s in cell.states], axis=-1)


def step_values(
    cell: Cell | str,
    params: dict[str, Any],
    X: np.ndarray,
    h0: Any,
    module: ModuleType | None = None,
) -> dict[str, np.ndarray]:
    """name -> (T, n, h) values of every step and every state's previous value (``h_prev``, ``c_prev``,
    ...); X: (T, n) ids or (T, n, d); h0: (n, h), or a tuple in ``cell.states`` order for several states.

    cell: a declared cell run by the generated ``module``, or a built-in variant's name (module loaded).
    """
    import grusym

    if isinstance(cell, str):
        module = module or grusym.load(cell)
        cell = CELLS[cell].cell()
    if module is None:
        raise ValueError(f"{cell.name}: step_values needs the generated module that runs the cell")
    tokens = X.ndim == 2
    fns = {}
    for s in cell.steps:
        if s.kind == "elementwise":
            fns[s.name] = compile_scalar(scalar_form(s.expr))
    T = X.shape[0]
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in cell.steps}
    states = [h0] if len(cell.states) == 1 else list(h0)
    state = {k: np.asarray(v, dtype=np.float64) for k, v in zip(cell.states, states, strict=True)}
    h = state[OUTPUT]
    vectors = {k: np.asarray(params[k], np.float64) for k, p in cell.params.items() if p.kind == "vector"}
    for k in cell.states:
        out[prev_name(k)] = []
    if cell.x_steps:
        out[INPUT] = []  # the rows the elementwise steps read (local derivatives may read them too)
    fixed = _inputs(module, X, params)
    out |= {k: [] for k in fixed}  # each per-step input's rows, as the steps read them
    for t in range(T):
        env: dict[str, np.ndarray] = {prev_name(k): v for k, v in state.items()}
        env |= {k: v[t] for k, v in fixed.items()}
        env |= {k: np.broadcast_to(v, h.shape) for k, v in vectors.items()}
        if cell.x_steps:  # X read elementwise (d == h): its row, one-hot for token ids
            env[INPUT] = np.eye(h.shape[-1])[X[t]] if tokens else X[t]
        for s in cell.steps:
            if s.kind == "linear":
                acc = np.zeros_like(h) + sum((params[b] for b in s.biases), np.zeros(h.shape[-1]))
                for term in s.terms:
                    W = params[term.weight]
                    if term.left == INPUT:
                        acc = acc + (W[X[t]] if tokens else X[t] @ W)
                    else:
                        acc = acc + env[term.left] @ W
                env[s.name] = acc
            elif s.kind in ("mean", "sum"):  # each row's mean (sum) over the units, in every column
                v = env[s.inputs[0]]
                row = v.sum(axis=-1, keepdims=True) / (v.shape[-1] if s.kind == "mean" else 1)
                env[s.name] = np.broadcast_to(row, h.shape).astype(np.float64)
            else:
                args, fn = fns[s.name]
                env[s.name] = np.broadcast_to(fn(*(env[a] for a in args)), h.shape).astype(np.float64)
        for k in out:
            out[k].append(env[k])
        state = {k: env[k] for k in cell.states}
    values = {k: np.stack(v) for k, v in out.items()}
    _check_steps(cell, module, params, X, values)
    return values


def _inputs(module: Any, X: np.ndarray, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-step inputs (c.input) a run of ``module`` over X reads: a report's module holds them
    fixed (grusym.stepinputs.HeldFixed); {} for a cell without any."""
    return module.inputs_at(X, params) if hasattr(module, "inputs_at") else {}


def _check_steps(
    cell: Cell, module: ModuleType, params: dict[str, Any], X: np.ndarray, values: dict[str, Any]
) -> None:
    """Each step of the declaration against one step of the generated module from the same state.

    One step at a time, never the whole run: on a chaotic trajectory (a recurrent highway network, a light
    GRU) rounding differences between two right implementations grow along the run, and a tolerance that
    fits step 40 would hide a wrong step.
    """
    fixed = _inputs(module, X, params)
    for t in range(X.shape[0]):
        before = [values[prev_name(k)][t] for k in cell.states]
        aux = {"aux": {k: v[t] for k, v in fixed.items()}} if fixed else {}
        new = module.step(params, X[t], before[0] if len(before) == 1 else tuple(before), **aux)
        for k, got in zip(cell.states, new if isinstance(new, tuple) else (new,), strict=True):
            want = values[k][t]
            if not np.allclose(got, want, rtol=1e-9, atol=1e-12 * max(1.0, float(np.max(np.abs(want))))):
                raise RuntimeError(
                    f"{cell.name}: the declared cell and the generated step disagree at t = {t + 1} "
                    f"(state {k}); regenerate the code"
                )
