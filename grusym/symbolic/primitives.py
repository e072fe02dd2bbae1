"""The elementwise primitives and the one table of local derivative rules.

Contract: every nonlinearity a variant may use is a SymPy ``Function`` here, defined once by a closed form
(``definition``) and differentiated through ``RULES``, whose entries express the derivative through the
primitive's *output* ``y`` so that backward code reuses forward values. ``verify_rules`` lets SymPy
differentiate each definition and proves it equals its rule; the tests and the reports call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

__all__ = ["PRIMITIVES", "RULES", "RuleProof", "Sigmoid", "Tanh", "verify_rules"]


class _Primitive(sp.Function):
    """An elementwise nonlinearity whose derivative is looked up in ``RULES``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return RULES[type(self)](self, self.args[0])


class Sigmoid(_Primitive):
    """sigma(x) = 1 / (1 + exp(-x))."""

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))

    def _latex(self, printer: sp.printing.latex.LatexPrinter) -> str:
        return rf"\sigma\left({printer._print(self.args[0])}\right)"


class Tanh(_Primitive):
    """tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))."""

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return (sp.exp(x) - sp.exp(-x)) / (sp.exp(x) + sp.exp(-x))

    def _latex(self, printer: sp.printing.latex.LatexPrinter) -> str:
        return rf"\tanh\left({printer._print(self.args[0])}\right)"


# d[x] = d[y] * RULES[f](y, x), where y = f(x) is the primitive's output
RULES: dict[type[_Primitive], Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    Sigmoid: lambda y, x: y * (1 - y),
    Tanh: lambda y, x: 1 - y**2,
}

PRIMITIVES: dict[str, type[_Primitive]] = {"sigmoid": Sigmoid, "tanh": Tanh}


@dataclass(frozen=True)
class RuleProof:
    """SymPy's derivative of a primitive's closed form next to the rule the generated code uses."""

    name: str
    derived: sp.Expr  # d/dx of the closed form, as SymPy returns it
    rule: sp.Expr  # the table's form, in the output y
    holds: bool  # derived - rule(closed form) simplifies to zero


def verify_rules() -> list[RuleProof]:
    """Differentiate each primitive's closed form with SymPy and check it equals its table rule."""
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    proofs = []
    for name, fn in PRIMITIVES.items():
        closed = fn(x).rewrite(sp.exp)
        derived = sp.diff(closed, x)
        rule = RULES[fn](y, x)
        holds = sp.simplify(derived - rule.subs(y, closed)) == 0
        proofs.append(RuleProof(name, derived, rule, bool(holds)))
    return proofs
