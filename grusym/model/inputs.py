"""A model's per-step inputs (a cell's ``c.input``s: masks, time deltas), shared out to its cells.

Contract: a :class:`~grusym.model.Model` of a cell with ``INPUTS`` takes ``aux``, a dict of one array per
input, in X's layout: (T, n, h) or (T, n, 1) (batch-first: (n, T, ...)), the same values for every layer
and direction, or (K, T, n, h) / (K, T, n, 1) (batch-first (K, n, T, ...)), K = num_layers *
num_directions, one slice per layer and direction in torch's order (the order of the state stacks).
Value t belongs to the step that reads X[t]: the reverse direction, which runs each sequence backwards
within its length, gets its inputs reversed the same way. ``step`` takes (n, h) or (n, 1), or (K, n, h) /
(K, n, 1). The cell module checks each slice's shape and values; here the layout and the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..stepinputs import inputs_of
from ..validate import shape_text

__all__ = ["per_cell", "per_cell_step"]


def _given(model: Any, aux: object) -> Mapping[str, Any] | None:
    inputs = inputs_of(model.cell)
    if not inputs:
        if aux is not None:
            raise InputError(f"cell {model.VARIANT!r} reads no per-step inputs: aux must be None")
        return None
    if not isinstance(aux, Mapping):
        return {k: aux for k in inputs}  # the cell module names what is wrong (missing, not a dict)
    return aux


def per_cell(model: Any, aux: object, T: int, n: int) -> list[dict[str, Any] | None]:
    """Each cell's ``aux`` in time-major (T, n, .) (before alignment and reversal), K = len(model cells)."""
    K = len(model._cells)
    given = _given(model, aux)
    if given is None:
        return [None] * K
    if not isinstance(aux, Mapping):
        return [aux] * K  # type: ignore[list-item]
    out: list[dict[str, Any]] = [{} for _ in range(K)]
    bf = model.structure.batch_first
    for name, value in given.items():
        a = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else value
        if not isinstance(a, np.ndarray) or a.ndim not in (3, 4):
            for k in range(K):  # the cell module names the problem
                out[k][name] = value
            continue
        if bf:
            a = a.swapaxes(-3, -2)
        if a.shape[-3:-1] != (T, n) or (a.ndim == 4 and a.shape[0] != K):
            lead = "(n, T" if bf else "(T, n"
            raise InputError(
                f"aux[{name!r}] of a {model.structure.describe()} model must have shape {lead}, h) or "
                f"{lead}, 1) (every layer and direction), or (K = {K}, {lead[1:]}, h) (one per layer and "
                f"direction), X's {'(n, T)' if bf else '(T, n)'} = {(n, T) if bf else (T, n)}; got "
                f"{shape_text(np.shape(value))}"
            )
        for k in range(K):
            out[k][name] = a if a.ndim == 3 else a[k]
    return [*out]


def per_cell_step(model: Any, aux: object, n: int) -> list[dict[str, Any] | None]:
    """Each cell's ``aux`` for ``step``: (n, h) / (n, 1) shared, or (K, n, .) one per cell."""
    K = len(model._cells)
    given = _given(model, aux)
    if given is None:
        return [None] * K
    if not isinstance(aux, Mapping):
        return [aux] * K  # type: ignore[list-item]
    out: list[dict[str, Any]] = [{} for _ in range(K)]
    for name, value in given.items():
        a = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else value
        stacked = isinstance(a, np.ndarray) and a.ndim == 3
        if stacked and a.shape[0] != K:
            raise InputError(
                f"aux[{name!r}] of step must have shape (n, h), (n, 1) or (K = {K}, n, h), got "
                f"{shape_text(a.shape)}"
            )
        for k in range(K):
            out[k][name] = a[k] if stacked else value
    return [*out]


def arranged(a: dict[str, Any] | None, at: Any) -> dict[str, Any] | None:
    """One cell's inputs after ``at`` (the model's alignment or reversal of (T, n, ...) arrays)."""
    if a is None:
        return None
    return {k: at(v) if isinstance(v, np.ndarray) and v.ndim == 3 else v for k, v in a.items()}
