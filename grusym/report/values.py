"""Every intermediate value of a cell over a sequence, evaluated from the declared steps themselves.

Contract: :func:`step_values` interprets the variant's :class:`~grusym.symbolic.cell.Cell` step by step
(linear steps as matrix products, elementwise steps through their SymPy scalar form), so the report can show
gate activations and evaluate the closed-form Jacobian without depending on what the generated module
chooses to cache. It checks its hidden states against the generated ``forward`` and raises if they differ.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import sympy as sp

from ..symbolic.cell import INPUT, STATE, Cell, scalar_form
from ..symbolic.variants import VARIANTS

__all__ = ["step_values"]

_NUMERIC = {"Sigmoid": lambda v: 0.5 + 0.5 * np.tanh(0.5 * v), "Tanh": np.tanh}


def step_values(
    cell: Cell | str,
    params: dict[str, Any],
    X: np.ndarray,
    h0: np.ndarray,
    module: ModuleType | None = None,
) -> dict[str, np.ndarray]:
    """name -> (T, n, h) values of every step and ``h_prev``; X: (T, n) ids or (T, n, d); h0: (n, h).

    cell: a declared cell run by the generated ``module``, or a built-in variant's name (module loaded).
    """
    import grusym

    if isinstance(cell, str):
        module = module or grusym.load(cell)
        cell = VARIANTS[cell].cell()
    if module is None:
        raise ValueError(f"{cell.name}: step_values needs the generated module that runs the cell")
    name = cell.name
    tokens = X.ndim == 2
    fns = {}
    for s in cell.steps:
        if s.kind == "elementwise":
            f = scalar_form(s.expr)
            syms = sorted(f.free_symbols, key=lambda v: v.name)
            fns[s.name] = ([v.name for v in syms], sp.lambdify(syms, f, modules=[_NUMERIC, "numpy"]))
    T = X.shape[0]
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in cell.steps}
    out[STATE] = []
    h = np.asarray(h0, dtype=np.float64)
    for t in range(T):
        env: dict[str, np.ndarray] = {STATE: h}
        for s in cell.steps:
            if s.kind == "linear":
                acc = np.zeros_like(h) + params[str(s.bias)]
                for term in s.terms:
                    W = params[term.weight]
                    if term.left == INPUT:
                        acc = acc + (W[X[t]] if tokens else X[t] @ W)
                    else:
                        acc = acc + env[term.left] @ W
                env[s.name] = acc
            else:
                args, fn = fns[s.name]
                env[s.name] = np.broadcast_to(fn(*(env[a] for a in args)), h.shape).astype(np.float64)
        for k in out:
            out[k].append(env[k])
        h = env["h"]
    values = {k: np.stack(v) for k, v in out.items()}
    H, _ = module.forward(params, X, h0)
    if not np.allclose(H, values["h"], rtol=1e-10, atol=1e-12):
        raise RuntimeError(
            f"{name}: the declared cell and the generated forward disagree; regenerate the code"
        )
    return values
