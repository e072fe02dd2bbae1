"""The elementwise primitives and the one table of local derivative rules.

Contract: every nonlinearity a cell may use is a SymPy ``Function`` here, defined once by a closed form
(``closed``) and differentiated through ``RULES``, whose entries express the derivative through the
primitive's *output* ``y`` so that backward code reuses forward values. ``verify_rules`` lets SymPy
differentiate each closed form and proves it equals its rule. A primitive that is not differentiable
everywhere lists its ``kinks`` and the ``convention`` its rule follows there; its closed form is a
``Piecewise`` whose conditions encode the same convention, and the proof checks the rule on every open
interval between the kinks and at the kinks themselves. ``ufunc`` is the call the generated code makes
(``out=``); the runtime versions are complex-analytic, for the complex-step check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

__all__ = ["PRIMITIVES", "RULES", "RuleProof", "Sigmoid", "Tanh", "verify_rules"]


class _Primitive(sp.Function):
    """An elementwise nonlinearity whose derivative is looked up in ``RULES``."""

    nargs = 1
    label: ClassVar[str]  # its name in equations and in ``grusym.symbolic.cell``
    ufunc: ClassVar[str]  # the generated code's call: ufunc(x, out=y)
    latex_name: ClassVar[str]
    kinks: ClassVar[tuple[sp.Rational, ...]] = ()
    convention: ClassVar[str] = ""  # the derivative used at the kinks, and whose convention it is

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:  # pragma: no cover - every primitive defines it
        raise NotImplementedError

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return RULES[type(self)](self, self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return type(self).closed(x)

    def _latex(self, printer: sp.printing.latex.LatexPrinter) -> str:
        return rf"{self.latex_name}\left({printer._print(self.args[0])}\right)"


class Sigmoid(_Primitive):
    """sigma(x) = 1 / (1 + exp(-x))."""

    label, ufunc, latex_name = "sigmoid", "rt.sigmoid", r"\sigma"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))


class Tanh(_Primitive):
    """tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))."""

    label, ufunc, latex_name = "tanh", "np.tanh", r"\tanh"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return (sp.exp(x) - sp.exp(-x)) / (sp.exp(x) + sp.exp(-x))


class Relu(_Primitive):
    """relu(x) = max(x, 0)."""

    label, ufunc, latex_name = "relu", "rt.relu", r"\operatorname{relu}"
    kinks = (sp.Integer(0),)
    convention = "relu'(0) = 0, as torch's autograd gives (tests/test_cells.py checks it)"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise((0, x <= 0), (x, True))


class Softplus(_Primitive):
    """softplus(x) = log(1 + exp(x))."""

    label, ufunc, latex_name = "softplus", "rt.softplus", r"\operatorname{softplus}"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.log(1 + sp.exp(x))


class Exp(_Primitive):
    """exp(x)."""

    label, ufunc, latex_name = "exp", "np.exp", r"\exp"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.exp(x)


class Identity(_Primitive):
    """identity(x) = x (a named linear activation)."""

    label, ufunc, latex_name = "identity", "np.copyto", r"\operatorname{id}"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return x


class HardSigmoid(_Primitive):
    """hard_sigmoid(x) = clip(x/5 + 1/2, 0, 1): Keras' older default (Keras 2 backend: 0.2*x + 0.5)."""

    # no "\_" in its LaTeX name: GitHub's Markdown would eat the backslash before MathJax sees it
    label, ufunc, latex_name = "hard_sigmoid", "rt.hard_sigmoid", r"\operatorname{hardsigmoid}"
    kinks = (sp.Rational(-5, 2), sp.Rational(5, 2))
    convention = (
        "hard_sigmoid'(+-5/2) = 0 (the rule reads the output, which is 0 or 1 there); frameworks that "
        "differentiate through clip may give 1/5 at these two points"
    )

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise(
            (0, x <= sp.Rational(-5, 2)), (1, x >= sp.Rational(5, 2)), (x / 5 + sp.Rational(1, 2), True)
        )


RuleTable = dict[type[_Primitive], Callable[[sp.Expr, sp.Expr], sp.Expr]]

# d[x] = d[y] * RULES[f](y, x), where y = f(x) is the primitive's output
RULES: RuleTable = {
    Sigmoid: lambda y, x: y * (1 - y),
    Tanh: lambda y, x: 1 - y**2,
    Relu: lambda y, x: sp.sign(y),  # 1 where y > 0, else 0 (the kink included)
    Softplus: lambda y, x: 1 - sp.exp(-y),  # = sigmoid(x)
    Exp: lambda y, x: y,
    Identity: lambda y, x: sp.Integer(1),
    HardSigmoid: lambda y, x: sp.sign(y * (1 - y)) / 5,  # 1/5 where 0 < y < 1, else 0 (kinks included)
}

PRIMITIVES: dict[str, type[_Primitive]] = {p.label: p for p in RULES}


@dataclass(frozen=True)
class RuleProof:
    """SymPy's derivative of a primitive's closed form next to the rule the generated code uses."""

    name: str
    derived: sp.Expr  # d/dx of the closed form, as SymPy returns it
    rule: sp.Expr  # the table's form, in the output y
    holds: bool  # derived - rule(closed form) is zero (on every interval between kinks, and at them)
    convention: str = ""  # at the kinks, for primitives that have them


def _active(expr: sp.Expr, x: sp.Symbol, at: sp.Rational) -> sp.Expr:
    """``expr`` with every Piecewise replaced by the branch active at x = ``at``."""

    def branch(pw: sp.Piecewise) -> sp.Expr:
        return next(e for e, cond in pw.args if bool(cond.subs(x, at)))

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), branch)


def _sign_free(expr: sp.Expr, x: sp.Symbol, lo: sp.Expr, hi: sp.Expr, at: sp.Rational) -> sp.Expr | None:
    """``expr`` with each sign(p) replaced by its constant value on (lo, hi); None if p has a root there."""
    for s in expr.atoms(sp.sign):
        if sp.solveset(s.args[0], x, sp.Interval.open(lo, hi)) != sp.S.EmptySet:
            return None
        expr = expr.xreplace({s: sp.sign(s.args[0].subs(x, at))})
    return expr


def _proof(fn: type[_Primitive], x: sp.Symbol, y: sp.Symbol, rules: RuleTable) -> RuleProof:
    closed = fn.closed(x)
    derived = sp.diff(closed, x)
    rule = rules[fn](y, x)
    gap = derived - rule.subs(y, closed)
    if not fn.kinks:
        return RuleProof(fn.label, derived, rule, sp.simplify(gap) == 0)
    edges = [-sp.oo, *fn.kinks, sp.oo]
    holds = True
    for lo, hi in itertools.pairwise(edges):
        at = lo + 1 if hi == sp.oo else hi - 1 if lo == -sp.oo else (lo + hi) / 2
        piece = _sign_free(_active(gap, x, at), x, lo, hi, at)
        holds &= piece is not None and sp.simplify(piece) == 0
    for k in fn.kinks:  # the convention: the Piecewise's own derivative at the kink equals the rule there
        holds &= sp.simplify(gap.subs(x, k)) == 0
    return RuleProof(fn.label, derived, rule, bool(holds), fn.convention)


def verify_rules(rules: RuleTable | None = None) -> list[RuleProof]:
    """Differentiate each primitive's closed form with SymPy and check it equals its rule in ``rules``
    (default: the table ``RULES`` the derivation uses; another table lets a test plant a wrong rule)."""
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    table = RULES if rules is None else rules
    return [_proof(fn, x, y, table) for fn in table]
