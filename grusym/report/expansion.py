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

from ..symbolic.cell import STATE, Cell, scalar_form
from ..symbolic.primitives import Sigmoid, Tanh
from .jacobian import Factor, Jacobian, Term, _collect

__all__ = ["MAX_ORDER", "Expansion", "expand"]

MAX_ORDER = 3
_EPS = sp.Symbol("epsilon_s", positive=True)


@dataclass(frozen=True)
class Expansion:
    """J = ``kept`` + O(s^``order``): ``kept`` holds the terms of order 0 and 1."""

    kept: Jacobian
    order: int  # the order of the first nonzero dropped term (MAX_ORDER + 1 if none up to MAX_ORDER)
    zeroth: Jacobian  # the terms of order 0 alone


def _taylor(kind: type, x: sp.Expr) -> sp.Expr:
    """The primitive's Taylor polynomial at 0, exact to O(x^5) (both are odd around their value at 0)."""
    x = sp.sympify(x)
    if kind is Sigmoid:
        return sp.Rational(1, 2) + x / 4 - x**3 / 48
    return x - x**3 / 3


def _truncate(e: sp.Expr) -> sp.Expr:
    e = sp.expand(e)
    return sp.Add(*(e.coeff(_EPS, k) * _EPS**k for k in range(MAX_ORDER + 1)))


def _polynomial(e: sp.Expr) -> sp.Expr:
    """``e`` with every primitive replaced by its Taylor polynomial, truncated after epsilon^MAX_ORDER."""
    for kind in (Sigmoid, Tanh):
        e = e.replace(lambda f, kind=kind: isinstance(f, kind), lambda f, kind=kind: _taylor(kind, f.args[0]))
    return _truncate(e)


def _small(cell: Cell) -> dict[sp.Symbol, sp.Expr]:
    """Every value as a polynomial in epsilon times the O(s) quantities (pre-activations and the state)."""
    subs: dict[sp.Symbol, sp.Expr] = {sp.Symbol(STATE, real=True): _EPS * sp.Symbol(STATE, real=True)}
    for step in cell.steps:
        sym = sp.Symbol(step.name, real=True)
        if step.kind == "linear":
            subs[sym] = _EPS * sym
        else:
            subs[sym] = _polynomial(scalar_form(step.expr).xreplace(subs))
    return subs


def _series(expr: sp.Expr, subs: dict[sp.Symbol, sp.Expr]) -> list[sp.Expr]:
    """Coefficients of epsilon^0 .. epsilon^MAX_ORDER of ``expr`` with every value substituted."""
    e = _polynomial(expr.xreplace(subs))
    return [sp.expand(e.coeff(_EPS, k)) for k in range(MAX_ORDER + 1)]


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
    # the O(s) quantities print under their own names again
    back = {_EPS: sp.Integer(1)}
    kept = [tuple(Factor(f.expr.xreplace(back)) if f.weight is None else f for f in t) for t in kept]
    return Expansion(Jacobian(J.cell, _collect(kept)), order, Jacobian(J.cell, _collect(zeroth)))
