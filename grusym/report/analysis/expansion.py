"""The one-step Jacobian near initialisation, expanded to first order in the weight scale s.

Contract: with weights of order s, zero biases and h_0 = 0, every pre-activation (linear step) and the
state are O(s). :func:`expand` substitutes each elementwise value by its declared expression in those O(s)
quantities, expands every diagonal factor of the closed-form J (``jacobian.jacobian``) in powers of s
(a weight matrix counts as one power) and returns the terms of order 0 and 1 as a
:class:`~grusym.report.jacobian.Jacobian` together with the order of the first dropped term, found by
expanding further (up to :data:`MAX_ORDER`). Nothing is typed per variant: ``J = I/2 + (diag(a_z) +
W_hh^T)/4 + O(s^2)`` for ``gru`` is what this computes from the declaration.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp

from ...symbolic.cell import Cell, prev_name, scalar_form
from ...symbolic.primitives import RULES, _Primitive
from .jacobian import Factor, Jacobian, Term, _collect, factor_vectors

__all__ = ["MAX_ORDER", "Expansion", "NotExpandableError", "expand"]

MAX_ORDER = 3


@dataclass(frozen=True)
class Expansion:
    """J = ``kept`` + O(s^``order``): ``kept`` holds the terms of order 0 and 1."""

    kept: Jacobian
    order: int  # the order of the first nonzero dropped term (MAX_ORDER + 1 if none up to MAX_ORDER)
    zeroth: Jacobian  # the terms of order 0 alone


class NotExpandableError(ValueError):
    """The cell has no Taylor expansion at initialisation (a kinked primitive evaluated at its kink)."""


Series = list[sp.Expr]  # coefficients of epsilon^0 .. epsilon^MAX_ORDER


def _mul(a: Series, b: Series) -> Series:
    """The product of two truncated series, truncated again (so no expression grows past MAX_ORDER)."""
    return [sp.expand(sum((a[i] * b[k - i] for i in range(k + 1)), sp.Integer(0))) for k in range(len(a))]


def _primitive(kind: type[_Primitive], a: Series) -> Series:
    """kind(a0 + delta) = sum_k kind^(k)(a0) delta^k / k!, the derivatives from the rule table (in y)."""
    a0 = a[0]
    if kind.kinks and (not a0.is_number or any(a0 == k for k in kind.kinks)):
        raise NotExpandableError(f"{kind.label} is not differentiable at its value at initialisation ({a0})")
    y = sp.Symbol("y", real=True)
    y0 = sp.nsimplify(sp.simplify(kind.closed(a0))) if a0.is_number else kind(a0)
    delta = [sp.Integer(0), *a[1:]]
    out: Series = [y0] + [sp.Integer(0)] * MAX_ORDER
    power: Series = [sp.Integer(1)] + [sp.Integer(0)] * MAX_ORDER
    deriv: sp.Expr = y
    for k in range(1, MAX_ORDER + 1):
        deriv = sp.diff(deriv, y) * RULES[kind](y, y) if k > 1 else RULES[kind](y, y)
        power = _mul(power, delta)
        c = sp.simplify(deriv.subs(y, y0)) / sp.factorial(k)
        if c != 0:
            out = [o + c * p for o, p in zip(out, power, strict=True)]
    return [sp.expand(o) for o in out]


def _series_of(e: sp.Expr, known: dict[sp.Symbol, Series]) -> Series:
    """The truncated series of a scalar expression whose symbols are in ``known`` (others: O(1) constants)."""
    zero = [sp.Integer(0)] * MAX_ORDER
    if isinstance(e, sp.Symbol):
        return known.get(e, [e, *zero])
    if e.is_number:
        return [e, *zero]
    if isinstance(e, sp.Add):
        parts = [_series_of(a, known) for a in e.args]
        return [sp.expand(sum(p, sp.Integer(0))) for p in zip(*parts, strict=True)]
    if isinstance(e, sp.Mul):
        out = [sp.Integer(1), *zero]
        for a in e.args:
            out = _mul(out, _series_of(a, known))
        return out
    if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 0:
        base, out = _series_of(e.base, known), [sp.Integer(1), *zero]
        for _ in range(int(e.exp)):
            out = _mul(out, base)
        return out
    if isinstance(e, _Primitive):
        return _primitive(type(e), _series_of(e.args[0], known))
    if isinstance(e, (sp.sign, sp.Heaviside)):  # a kink's derivative: constant near a nonzero argument
        arg = _series_of(e.args[0], known)[0]
        if arg.is_number and arg != 0:
            return [type(e)(arg), *zero]
        raise NotExpandableError(f"{e.func.__name__}({e.args[0]}) changes at its value at initialisation")
    if not (e.free_symbols & set(known)):
        return [e, *zero]
    raise NotExpandableError(f"no expansion rule for {type(e).__name__}")


def _small(cell: Cell) -> dict[sp.Symbol, Series]:
    """Every value as a series in epsilon: the previous states and pre-activations are epsilon times
    themselves; a parameter vector is 0 like a bias (``init_params`` draws it zero), or O(1) when it scales
    another value (``jacobian.factor_vectors``)."""
    zero = [sp.Integer(0)] * MAX_ORDER
    small = lambda s: [sp.Integer(0), s, *zero[1:]]  # noqa: E731
    known: dict[sp.Symbol, Series] = {}
    for state in cell.states:
        sym = sp.Symbol(prev_name(state), real=True)
        known[sym] = small(sym)
    scaling = factor_vectors(cell)
    for name, p in cell.params.items():
        if p.kind == "vector":  # one that scales another value is O(1) (the report's runs set it to 1)
            sym = sp.Symbol(name, real=True)
            known[sym] = [sym if name in scaling else sp.Integer(0), *zero]
    for step in cell.steps:
        sym = sp.Symbol(step.name, real=True)
        if step.kind in ("mean", "sum"):  # a row's mean of a series is no scalar series of the row's values
            raise NotExpandableError(f"the row's {step.kind} {step.name} has no elementwise expansion")
        known[sym] = small(sym) if step.kind == "linear" else _series_of(scalar_form(step.expr), known)
    return known


def _series(expr: sp.Expr, subs: dict[sp.Symbol, Series]) -> list[sp.Expr]:
    """Coefficients of epsilon^0 .. epsilon^MAX_ORDER of ``expr`` with every value substituted."""
    return _series_of(expr, subs)


def expand(J: Jacobian) -> Expansion:
    """First-order expansion of ``J`` at initialisation (see the module docstring)."""
    subs = _small(J.cell)
    kept: list[Term] = []
    zeroth: list[Term] = []
    order = MAX_ORDER + 1
    for term in J.terms:
        weights = sum(f.weight is not None for f in term)
        diags = [i for i, f in enumerate(term) if f.weight is None]
        series = {i: _series(term[i].expr, subs) for i in diags}
        # the order-k part of the term: every way of giving the diagonals orders that add up to k - weights
        for k in range(weights, MAX_ORDER + 1):
            parts: list[Term] = []
            for orders in itertools.product(range(MAX_ORDER + 1), repeat=len(diags)):
                if sum(orders) != k - weights:
                    continue
                coefs = dict(
                    zip(diags, (series[i][o] for i, o in zip(diags, orders, strict=True)), strict=True)
                )
                if any(c == 0 for c in coefs.values()):
                    continue
                parts.append(tuple(Factor(coefs[i]) if i in coefs else f for i, f in enumerate(term)))
            if not parts:
                continue
            if k <= 1:
                kept += parts
                if k == 0:
                    zeroth += parts
            else:
                order = min(order, k)
                break
    return Expansion(
        Jacobian(J.cell, _collect(kept), J.target, J.source),
        order,
        Jacobian(J.cell, _collect(zeroth), J.target, J.source),
    )
