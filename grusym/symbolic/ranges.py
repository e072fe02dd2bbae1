"""The sign lattice the builder proves arguments positive or nonzero with (sqrt, log, negative powers).

Contract: :func:`sign` maps a scalar elementwise form (``steps.scalar_form``) to ``"positive"`` (> 0),
``"nonnegative"`` (>= 0) or ``"real"`` (nothing known), reading the signs of earlier steps from the step
graph. A state's previous value is ``"real"`` (h0 is the caller's), as are linear steps, parameter vectors
and the input; a row's mean or sum has the sign of the value it reduces. Sound, not complete:
``1 - sigmoid(a)`` is positive but the lattice says ``"real"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .primitives import _Primitive
from .steps import Step, scalar_form

__all__ = ["sign"]

POSITIVE, NONNEGATIVE, REAL = "positive", "nonnegative", "real"
_ORDER = {POSITIVE: 0, NONNEGATIVE: 1, REAL: 2}


def _weakest(signs: list[str]) -> str:
    return max(signs, key=_ORDER.__getitem__, default=POSITIVE)


def _primitive(fn: type[_Primitive], arg: str) -> str:
    """The output's sign of ``fn`` given its argument's (``_Primitive.sign``)."""
    if fn.sign in (POSITIVE, NONNEGATIVE):
        return fn.sign
    if fn.label in ("relu", "hard_sigmoid") and arg == POSITIVE:
        return POSITIVE  # relu(x) > 0 and hard_sigmoid(x) > 0 for x > 0
    if fn.sign in ("odd", "upper"):  # odd: the argument's sign; upper: positive (nonneg.) where it is
        return arg
    return REAL


def sign(expr: sp.Expr, steps: Sequence[Step]) -> str:
    """The sign of the scalar form ``expr`` whose symbols are values of ``steps`` (or inputs)."""
    by_name = {s.name: s for s in steps}
    memo: dict[str, str] = {}

    def of_symbol(name: str) -> str:
        if name not in memo:
            step = by_name.get(name)
            elementwise = step is not None and step.kind == "elementwise"
            memo[name] = walk(scalar_form(step.expr)) if elementwise and step is not None else REAL
            if step is not None and step.kind in ("mean", "sum"):  # of positive (nonneg.) terms: the same
                memo[name] = of_symbol(step.inputs[0])
        return memo[name]

    def walk(e: sp.Expr) -> str:
        if e.is_number:
            return POSITIVE if e.is_positive else NONNEGATIVE if e.is_zero else REAL
        if isinstance(e, sp.Symbol):
            return of_symbol(e.name)
        if isinstance(e, _Primitive):
            return _primitive(type(e), walk(e.args[0]))
        if isinstance(e, sp.Add):
            signs = [walk(a) for a in e.args]
            if REAL in signs:
                return REAL
            return POSITIVE if POSITIVE in signs else NONNEGATIVE
        if isinstance(e, sp.Mul):
            signs = [walk(a) for a in e.args]
            return _weakest(signs)
        if isinstance(e, sp.Pow) and e.exp.is_integer:
            base = walk(e.base)
            if e.exp.is_even and base == REAL:
                return NONNEGATIVE
            return base
        return REAL

    return walk(expr)
