"""What the report derives symbolically about a cell, once per declaration: J, its bound and expansion.

Contract: every function here is a pure function of the cell's declaration, cached by it (deriving and
SymPy's suprema are slow): the closed-form J (:func:`state_jacobian_of`), the uniform bound of its norm
(:func:`uniform_terms`, in a time box), the expansion at initialisation (:func:`expansion`, in a time box)
and the gate on J's weight-free path (:func:`keep_gate`). Sections and measurements both read these.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from ...symbolic.cell import Cell, scalar_form
from .expansion import Expansion, NotExpandableError, expand
from .jacobian import Jacobian, StateJacobian, state_jacobian
from .jacobian import jacobian as _jacobian
from .timebox import SymbolicTimeoutError, symbolic_seconds, time_box

__all__ = ["bound_timeout", "expansion", "jacobian", "keep_gate", "state_jacobian_of", "uniform_terms"]

_CACHE: dict[tuple[str, str], Any] = {}


def _key(cell: Any) -> str:
    return cell.name + "|" + "|".join(str(s.expr) for s in cell.steps)


def jacobian(cell: Any) -> Jacobian:
    """The closed-form J of ``cell``, derived once per declaration (derive and SymPy are slow)."""
    key = ("J", _key(cell))
    if key not in _CACHE:
        _CACHE[key] = _jacobian(cell)
    return _CACHE[key]  # type: ignore[no-any-return]


def state_jacobian_of(cell: Any) -> StateJacobian:
    """The full-state J of ``cell`` (every block), derived once per declaration."""
    key = ("SJ", _key(cell))
    if key not in _CACHE:
        _CACHE[key] = state_jacobian(cell)
    return _CACHE[key]  # type: ignore[no-any-return]


def uniform_terms(cell: Cell) -> list[Any] | None:
    """The symbolic uniform bound of the cell, derived once per cell (SymPy's suprema are slow)."""
    key = ("bound", _key(cell))
    if key not in _CACHE:
        # ||J||_2 <= the sum of its blocks' norms, so the bounds of the blocks add up (one block: J itself)
        blocks = state_jacobian_of(cell).blocks.values()
        try:
            with time_box(symbolic_seconds(), "SymPy's bound of J"):
                _CACHE[key] = [t for J in blocks for t in J.uniform_bound()]
        except SymbolicTimeoutError as err:
            _CACHE[key] = err
    found = _CACHE[key]
    return None if isinstance(found, SymbolicTimeoutError) else found  # type: ignore[no-any-return]


def bound_timeout(cell: Cell) -> str:
    """Why there is no uniform bound (its symbolic work ran out of time), or ''."""
    uniform_terms(cell)
    found = _CACHE[("bound", _key(cell))]
    return str(found) if isinstance(found, SymbolicTimeoutError) else ""


def expansion(cell: Cell) -> dict[tuple[str, str], Expansion]:
    """:func:`~grusym.report.expansion.expand` of every block of the subject's J (cached); raises
    :class:`~grusym.report.expansion.NotExpandableError` when the cell has no expansion at initialisation."""
    key = ("expansion", _key(cell))
    if key not in _CACHE:
        try:
            with time_box(symbolic_seconds(), "SymPy's expansion of J"):
                _CACHE[key] = {k: expand(J) for k, J in state_jacobian_of(cell).blocks.items()}
        except NotExpandableError as err:
            _CACHE[key] = err
        except SymbolicTimeoutError as err:
            _CACHE[key] = NotExpandableError(str(err))
    if isinstance(_CACHE[key], NotExpandableError):
        raise _CACHE[key]
    return _CACHE[key]  # type: ignore[no-any-return]


def keep_gate(cell: Cell, J: Jacobian | None = None) -> tuple[str, str, int] | None:
    """(gate, its bias parameter, +1 or -1) for the gate on J's weight-free path, or None.

    The weight-free term is ``diag(g)`` or ``diag(1 - g)``: a bias b (sign +1) or -b (sign -1) makes the
    path carry sigma(b) at zero pre-activation. The bias is that of the gate's linear step (its other bias
    rows, if any, set to 0), or the parameter vector the gate reads alone (a = sigmoid(w_a)). With several
    states the diagonal blocks ds/ds_prev are searched in state order (LSTM: dc/dc_prev = diag(f)).
    """
    if J is None:
        full = state_jacobian_of(cell)
        for s in cell.states:
            found = keep_gate(cell, full.blocks[(s, s)])
            if found is not None:
                return found
        return None
    direct = [t for t in J.terms if not any(f.weight for f in t)]
    if len(direct) != 1 or len(direct[0]) != 1:
        return None
    coef = direct[0][0].expr
    if len(coef.free_symbols) != 1:
        return None
    (g,) = coef.free_symbols
    steps = {s.name: s for s in cell.steps}
    gate = steps.get(g.name)
    if gate is None or gate.kind != "elementwise":
        return None
    reads = scalar_form(gate.expr).free_symbols
    if len(reads) != 1:
        return None  # a gate of several values (a nested cell's): no single bias sets it
    name = next(iter(reads)).name
    slope = 1 if sp.diff(coef, g) > 0 else -1
    if name in cell.params and cell.params[name].kind == "vector":
        return g.name, name, slope  # the gate of a parameter vector alone (a = sigmoid(w_a)): set w_a
    linear = steps.get(name)
    if linear is None or linear.bias is None:
        return None
    return g.name, linear.bias, slope
