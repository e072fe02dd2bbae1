"""The elementwise primitives and the one table of local derivative rules.

Contract: every nonlinearity a cell may use is a SymPy ``Function`` here, defined once by a closed form
(``closed``) and differentiated through ``RULES``, whose entries express the derivative through the
primitive's *output* ``y`` so that backward code reuses forward values. ``verify_rules`` lets SymPy
differentiate each closed form and proves it equals its rule. A primitive that is not differentiable
everywhere lists its ``kinks`` and the ``convention`` its rule follows there; its closed form is a
``Piecewise`` whose conditions encode the same convention, and the proof checks the rule on every open
interval between the kinks and at the kinks themselves. ``ufunc`` is the call the generated code makes
(``out=``); the runtime versions are complex-analytic, for the complex-step check.

Most rules read only ``y``; a rule that cannot (``abs``, ``log``, ``gelu``, ``silu``) reads the argument ``x``
too, which backward then reads or recomputes (``rule_reads_x``). ``domain`` says where a primitive is defined
with a finite derivative (``sqrt`` and ``log``: positive arguments; the builder refuses an argument it cannot
prove positive), ``sign`` what its output's sign is given its argument's, in floating point (the builder
proves denominators nonzero with it, :mod:`grusym.symbolic.ranges`): sigmoid, softplus and exp are positive
in exact arithmetic but underflow to 0, so they are nonnegative here and a positive number beside them makes
them positive. ``breaks`` are the points where a closed form changes
branch (the kinks, and points such as elu's 0 where the derivative is continuous across the branches).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

__all__ = ["PRIMITIVES", "RULES", "RuleProof", "Sigmoid", "Tanh", "rule_reads_x", "verify_rules"]


class _Primitive(sp.Function):
    """An elementwise nonlinearity whose derivative is looked up in ``RULES``."""

    nargs = 1
    label: ClassVar[str]  # its name in equations and in ``grusym.symbolic.cell``
    ufunc: ClassVar[str]  # the generated code's call: ufunc(x, out=y)
    latex_name: ClassVar[str]
    kinks: ClassVar[tuple[sp.Rational, ...]] = ()
    convention: ClassVar[str] = ""  # the derivative used at the kinks, and whose convention it is
    breaks: ClassVar[tuple[sp.Rational, ...] | None] = None  # where the closed form branches (default kinks)
    domain: ClassVar[str] = "real"  # "positive": defined (with a finite derivative) for x > 0 only
    # the output's sign: "positive" (> 0), "nonnegative" (>= 0), "odd" (the argument's sign), "upper"
    # (positive / nonnegative where the argument is), "real" (nothing known)
    sign: ClassVar[str] = "real"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:  # pragma: no cover - every primitive defines it
        raise NotImplementedError

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return RULES[type(self)](self, self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return type(self).closed(x)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: object = None) -> str:
        return _power(rf"{self.latex_name}\left({printer._print(self.args[0])}\right)", exp)


def _power(body: str, exp: object) -> str:
    """``body`` raised to ``exp`` (SymPy's LaTeX printer passes the exponent of a power of a function)."""
    return body if exp is None else rf"\left({body}\right)^{{{exp}}}"


class Sigmoid(_Primitive):
    """sigma(x) = 1 / (1 + exp(-x))."""

    label, ufunc, latex_name = "sigmoid", "rt.sigmoid", r"\sigma"
    sign = "nonnegative"  # > 0 in exact arithmetic; 0 in float64 below about -37 (0.5 + 0.5*tanh(x/2))

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))


class Tanh(_Primitive):
    """tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))."""

    label, ufunc, latex_name = "tanh", "np.tanh", r"\tanh"
    sign = "odd"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return (sp.exp(x) - sp.exp(-x)) / (sp.exp(x) + sp.exp(-x))


class Relu(_Primitive):
    """relu(x) = max(x, 0)."""

    label, ufunc, latex_name = "relu", "rt.relu", r"\operatorname{relu}"
    sign = "nonnegative"
    kinks = (sp.Integer(0),)
    convention = "relu'(0) = 0, as torch's autograd gives (tests/test_cells.py checks it)"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise((0, x <= 0), (x, True))


class Softplus(_Primitive):
    """softplus(x) = log(1 + exp(x))."""

    label, ufunc, latex_name = "softplus", "rt.softplus", r"\operatorname{softplus}"
    sign = "nonnegative"  # > 0 in exact arithmetic; 0 once exp(x) underflows

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.log(1 + sp.exp(x))


class Exp(_Primitive):
    """exp(x)."""

    label, ufunc, latex_name = "exp", "np.exp", r"\exp"
    sign = "nonnegative"  # > 0 in exact arithmetic; 0 in float64 below about -745

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.exp(x)


class Identity(_Primitive):
    """identity(x) = x (a named linear activation)."""

    label, ufunc, latex_name = "identity", "np.copyto", r"\operatorname{id}"
    sign = "odd"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return x


class HardSigmoid(_Primitive):
    """hard_sigmoid(x) = clip(x/5 + 1/2, 0, 1): Keras' older default (Keras 2 backend: 0.2*x + 0.5)."""

    # no "\_" in its LaTeX name: GitHub's Markdown would eat the backslash before MathJax sees it
    label, ufunc, latex_name = "hard_sigmoid", "rt.hard_sigmoid", r"\operatorname{hardsigmoid}"
    kinks = (sp.Rational(-5, 2), sp.Rational(5, 2))
    sign = "nonnegative"
    convention = (
        "hard_sigmoid'(+-5/2) = 0 (the rule reads the output, which is 0 or 1 there); frameworks that "
        "differentiate through clip may give 1/5 at these two points"
    )

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise(
            (0, x <= sp.Rational(-5, 2)), (1, x >= sp.Rational(5, 2)), (x / 5 + sp.Rational(1, 2), True)
        )


class Softsign(_Primitive):
    """softsign(x) = x / (1 + |x|)."""

    label, ufunc, latex_name = "softsign", "rt.softsign", r"\operatorname{softsign}"
    breaks = (sp.Integer(0),)  # |x| branches there; the derivative, 1 on both sides, does not
    sign = "odd"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return x / (1 + sp.Abs(x))


class Absolute(_Primitive):
    """abs(x) = |x|."""

    label, ufunc, latex_name = "abs", "rt.absolute", r"\operatorname{abs}"
    kinks = (sp.Integer(0),)
    convention = "abs'(0) = 0, as torch's autograd gives (the sign of 0)"
    sign = "nonnegative"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise((0, sp.Eq(x, 0)), (-x, x <= 0), (x, True))  # no "<": unsafe in Markdown

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: object = None) -> str:
        return _power(rf"\left\lvert {printer._print(self.args[0])} \right\rvert", exp)  # no "|": tables


class Sqrt(_Primitive):
    """sqrt(x), for x > 0 (at 0 its derivative is infinite)."""

    label, ufunc, latex_name = "sqrt", "np.sqrt", r"\sqrt"
    domain, sign = "positive", "positive"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.sqrt(x)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: object = None) -> str:
        return _power(rf"\sqrt{{{printer._print(self.args[0])}}}", exp)


class Log(_Primitive):
    """log(x), the natural logarithm, for x > 0."""

    label, ufunc, latex_name = "log", "np.log", r"\log"
    domain = "positive"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.log(x)


class LeakyRelu(_Primitive):
    """leaky_relu(x) = x for x > 0, x/100 otherwise (torch's default negative slope 0.01)."""

    label, ufunc, latex_name = "leaky_relu", "rt.leaky_relu", r"\operatorname{leakyrelu}"
    kinks = (sp.Integer(0),)
    convention = "leaky_relu'(0) = 1/100, as torch's autograd gives (the negative slope)"
    sign = "odd"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise((x / 100, x <= 0), (x, True))


class Elu(_Primitive):
    """elu(x) = x for x > 0, exp(x) - 1 otherwise (alpha = 1, torch's default)."""

    label, ufunc, latex_name = "elu", "rt.elu", r"\operatorname{elu}"
    breaks = (sp.Integer(0),)  # alpha = 1: the derivative is 1 on both sides of 0, no kink
    sign = "upper"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return sp.Piecewise((sp.exp(x) - 1, x <= 0), (x, True))


GELU_K = sp.sqrt(2 / sp.pi)  # the tanh form of gelu (torch's approximate="tanh"): sqrt(2/pi), 0.044715
GELU_C = sp.Rational(44715, 10**6)


class Gelu(_Primitive):
    """gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh form (torch's approximate="tanh")."""

    label, ufunc, latex_name = "gelu", "rt.gelu", r"\operatorname{gelu}"
    sign = "upper"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return x / 2 * (1 + sp.tanh(GELU_K * (x + GELU_C * x**3)))


class Silu(_Primitive):
    """silu(x) = x sigmoid(x) (swish)."""

    label, ufunc, latex_name = "silu", "rt.silu", r"\operatorname{silu}"
    sign = "upper"

    @staticmethod
    def closed(x: sp.Expr) -> sp.Expr:
        return x / (1 + sp.exp(-x))


def _step(y: sp.Expr) -> sp.Expr:
    """1 where y > 0, else 0 (0 at 0 too): the Heaviside step the piecewise-linear rules use."""
    return sp.Heaviside(y, 0)


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
    Softsign: lambda y, x: (1 - sp.Abs(y)) ** 2,  # = 1/(1 + |x|)^2
    Absolute: lambda y, x: sp.sign(x),  # 0 at the kink
    Sqrt: lambda y, x: 1 / (2 * y),
    Log: lambda y, x: 1 / x,
    LeakyRelu: lambda y, x: _step(y) + (1 - _step(y)) / 100,  # 1/100 at the kink
    # 1 where y > 0, y + 1 = exp(x) elsewhere; through relu, as a polynomial in y and step(y) SymPy would
    # expand it to y + 1 - y*step(y), which rounds to 0 for large y
    Elu: lambda y, x: 1 - Relu(-y),
    Gelu: lambda y, x: (
        (1 + Tanh(GELU_K * (x + GELU_C * x**3))) / 2
        + x * (1 - Tanh(GELU_K * (x + GELU_C * x**3)) ** 2) * GELU_K * (1 + 3 * GELU_C * x**2) / 2
    ),
    Silu: lambda y, x: Sigmoid(x) * (1 + x * (1 - Sigmoid(x))),
}

PRIMITIVES: dict[str, type[_Primitive]] = {p.label: p for p in RULES}


def rule_reads_x(fn: type[_Primitive]) -> bool:
    """Whether the rule of ``fn`` reads its argument x, not only its output y."""
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    return x in RULES[fn](y, x).free_symbols


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
    """``expr`` with each sign(p), |p|, step(p) and relu(p) replaced by its value on (lo, hi) in terms of p (a
    constant sign); None if p has a root there."""
    expr = expr.replace(lambda e: isinstance(e, Relu), lambda e: e.args[0] * (sp.sign(e.args[0]) + 1) / 2)
    expr = expr.replace(lambda e: isinstance(e, sp.Abs), lambda e: e.args[0] * sp.sign(e.args[0]))
    expr = expr.replace(lambda e: isinstance(e, sp.Heaviside), lambda e: (sp.sign(e.args[0]) + 1) / 2)
    for s in expr.atoms(sp.sign):
        if sp.solveset(s.args[0], x, sp.Interval.open(lo, hi)) != sp.S.EmptySet:
            return None
        expr = expr.xreplace({s: sp.sign(s.args[0].subs(x, at))})
    return expr


def _zero(expr: sp.Expr, points: tuple[sp.Rational, ...] = (sp.Integer(0),)) -> bool:
    """Whether SymPy proves ``expr`` zero, the primitives inside written in their closed forms. A value
    clearly nonzero at one of ``points`` (inside the interval the form holds on) settles it false at once:
    simplify can take minutes over a wrong rule (a planted one)."""
    # tanh as SymPy's own function first: gelu's derivative is a polynomial in tanh(u) (fast to cancel)
    native = expr.replace(lambda e: isinstance(e, Tanh), lambda e: sp.tanh(e.args[0]))
    native = native.replace(lambda e: isinstance(e, _Primitive), lambda e: type(e).closed(e.args[0]))
    free = sorted(native.free_symbols, key=str)
    for p in points:
        value = native.subs({s: p for s in free}).evalf(30)
        if value.is_number and (value.has(sp.zoo, sp.nan) or abs(value) > sp.Float("1e-20")):
            return False
    if sp.expand(native) == 0:
        return True
    expr = expr.replace(lambda e: isinstance(e, _Primitive), lambda e: type(e).closed(e.args[0]))
    return bool(sp.simplify(expr) == 0 or sp.simplify(expr.rewrite(sp.exp)) == 0)


def _proof(fn: type[_Primitive], x: sp.Symbol, y: sp.Symbol, rules: RuleTable) -> RuleProof:
    closed = fn.closed(x)
    derived = sp.diff(closed, x)
    rule = rules[fn](y, x)
    gap = derived - rule.subs(y, closed)
    breaks = fn.kinks if fn.breaks is None else fn.breaks
    if not breaks:
        points = (sp.Rational(1, 3), sp.Rational(7, 5)) + (
            () if fn.domain == "positive" else (sp.Integer(-2),)
        )
        return RuleProof(fn.label, derived, rule, _zero(gap, points))
    edges = [-sp.oo, *breaks, sp.oo]
    holds = True
    for lo, hi in itertools.pairwise(edges):
        if fn.domain == "positive" and hi <= 0:
            continue
        at = lo + 1 if hi == sp.oo else hi - 1 if lo == -sp.oo else (lo + hi) / 2
        piece = _sign_free(_active(gap, x, at), x, lo, hi, at)
        holds &= piece is not None and _zero(piece, (at, at + sp.Rational(1, 7) if hi == sp.oo else at))
    for k in breaks:  # the convention: the Piecewise's own derivative at the kink equals the rule there
        holds &= _zero(gap.subs(x, k))
    return RuleProof(fn.label, derived, rule, bool(holds), fn.convention)


def verify_rules(rules: RuleTable | None = None) -> list[RuleProof]:
    """Differentiate each primitive's closed form with SymPy and check it equals its rule in ``rules``
    (default: the table ``RULES`` the derivation uses; another table lets a test plant a wrong rule)."""
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    table = RULES if rules is None else rules
    return [_proof(fn, x, y, table) for fn in table]
