"""LaTeX for the symbols and equations of a derivation, named as the generated code names them.

Contract: one naming scheme maps code names to math: a value ``v`` of the step at time t prints as ``v_t``
(``a_z`` -> ``a_{z,t}``, ``h_tilde`` -> ``\\tilde{h}_t``, ``h_prev`` -> ``h_{t-1}``, ``X`` -> ``X_t``), a
parameter as itself (``W_hz`` -> ``W_{hz}``), an adjoint ``dv`` as ``\\delta v``. ``elementwise`` prints a
scalar form as the matrix equation it stands for (``\\odot`` for products), ``scalar`` prints it as plain
per-element algebra, ``matrix`` prints SymPy matrix expressions (``@`` products, ``^\\top``). The output is
also valid GitHub math: no ``\\\\``, no backslash before punctuation, no ``*``, ``<`` or ``|``.

Names keep one symbol from meaning two things: the hidden size prints as ``d_h`` (``h`` is the state, and
a subscript meaning "hidden"); ``\\delta v`` is always the total adjoint of v, and its parts are named
apart: the part of ``\\delta h_t`` that comes from the output of step t (the code's ``dH[t]``) prints as
``\\delta^{\\mathrm{out}} h_t`` and the message step t+1 sends back to a state (:func:`message`) as
``\\delta^{\\mathrm{next}} h_t``; a partial derivative of one equation is ``\\partial``, the total
derivative through a whole step (a block of the Jacobian, :func:`total`) is ``\\mathrm{d}``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ...symbolic.cell import DIM_NAMES, INPUT, STATE, Step, scalar_form
from ...symbolic.primitives import _Primitive

__all__ = [
    "adjoint",
    "dim",
    "elementwise",
    "matrix",
    "message",
    "name",
    "scalar",
    "shape",
    "shape_text",
    "shifted",
    "step_equation",
    "total",
]

_SPECIAL = {
    STATE: "h_{t-1}",
    "h_tilde": r"\tilde{h}_{t}",
    "h": "h_{t}",
    INPUT: "X_{t}",
    "H": "h_{t}",  # the head reads the state of every step
    "logits": r"\mathrm{logits}_{t}",
    "sign": r"\epsilon",  # the side (+-1) a tanh output saturates on
    # a row's mean (sum) over the units as a matrix in a Jacobian (analysis/jacobian.py): symmetric
    "<mean>": r"\left(\tfrac{1}{d_{h}} \mathbf{1}\mathbf{1}^{\top}\right)",
    "<sum>": r"\left(\mathbf{1}\mathbf{1}^{\top}\right)",
}


_DIM_TEX = {"n": "n", "d": "d", "h": "d_{h}", "q": "q"}
_DIM_TEXT = {"n": "n", "d": "d", "h": "d_h", "q": "q"}


def dim(symbol: sp.Basic) -> str:
    """The math name of a dimension symbol of ``grusym.symbolic.cell`` (1 for a bias row)."""
    return _DIM_TEX[DIM_NAMES[symbol]] if symbol in DIM_NAMES else str(symbol)


def shape(dims: tuple[sp.Basic, ...]) -> str:
    """``n \\times d_{h}``: a shape for an ``\\underset``."""
    return r" \times ".join(dim(x) for x in dims)


def shape_text(dims: tuple[sp.Basic, ...]) -> str:
    """``(n, d_h)`` or ``(d_h,)``: a shape for plain text."""
    names = [_DIM_TEXT[DIM_NAMES[x]] if x in DIM_NAMES else str(x) for x in dims]
    return "(" + ", ".join(names) + (",)" if len(names) == 1 else ")")


def adjoint(value: str, *, params: frozenset[str] | set[str] = frozenset()) -> str:
    """``\\delta v`` of a code name; the head's input ``H`` is the direct part ``\\delta^{out} h_t``."""
    if value == "H":
        return r"\delta^{\mathrm{out}} h_{t}"
    return rf"\delta {name(value, params=params)}"


def message(value: str, *, params: frozenset[str] | set[str] = frozenset()) -> str:
    """``\\delta^{next} v``: what the step after v's sends back to it (``h_prev``: the message to h_{t-1})."""
    return rf"\delta^{{\mathrm{{next}}}} {name(value, params=params)}"


def total(target: str, source: str) -> str:
    """``\\frac{d target_t}{d source}``: the total derivative through a step (``source`` a code name)."""
    return rf"\frac{{\mathrm{{d}} {name(target)}}}{{\mathrm{{d}} {name(source)}}}"


def name(value: str, *, params: frozenset[str] | set[str] = frozenset(), t: bool = True) -> str:
    """The math name of a code name: values get the time index t, parameters and adjoints follow suit."""
    if value.startswith("d") and len(value) > 1 and value[1:] in params:
        return rf"\delta {name(value[1:], params=params)}"
    if value in params:
        base, _, sub = value.partition("_")
        return f"{base}_{{{sub}}}" if sub else base
    if value in _SPECIAL:
        return _SPECIAL[value] if t else _SPECIAL[value].replace("_{t}", "")
    if value.endswith("_prev") and len(value) > 5:  # a state's previous value: c_prev -> c_{t-1}
        return name(value[:-5], params=params).replace(",t}", ",t-1}").replace("_{t}", "_{t-1}")
    base, _, sub = value.partition("_")
    if len(base) > 1:  # a word (lstm's tanh_c, a user's names) is upright, not a product of letters
        base = rf"\mathrm{{{base}}}"
    if not t:
        return f"{base}_{{{sub}}}" if sub else base
    return f"{base}_{{{sub},t}}" if sub else f"{base}_{{t}}"


def _print_abs(self: LatexPrinter, expr: sp.Abs, exp: object = None) -> str:
    """|x| without "|": GitHub's Markdown reads it as a table column (softsign's closed form)."""
    body = rf"\left\lvert {self._print(expr.args[0])} \right\rvert"
    return body if exp is None else rf"{body}^{{{exp}}}"


class _InlinePrinter(LatexPrinter):
    """SymPy's printer with a piecewise function on one line (``cases`` needs ``\\\\``, which GitHub's inline
    math loses)."""

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        pieces = []
        for value, cond in expr.args:
            where = r"\text{ otherwise}" if cond is sp.true else rf"\text{{ if }} {self._print(cond)}"
            pieces.append(f"{self._print(value)}{where}")
        return r"\left[" + r", \quad ".join(pieces) + r"\right]"

    _print_Abs = _print_abs


class _Printer(LatexPrinter):
    """SymPy's LaTeX printer with grusym's names; ``adjoints`` are symbols named ``d<value>``."""

    _print_Abs = _print_abs

    def __init__(
        self, params: frozenset[str], adjoints: frozenset[str], hadamard: bool, plain: bool = False
    ) -> None:
        super().__init__({"order": "none", "mul_symbol": r" \odot " if hadamard else None})
        self.params, self.adjoints, self.hadamard, self.plain = params, adjoints, hadamard, plain

    def _name(self, s: str) -> str:
        if self.plain:
            return rf"\delta {s[1:]}" if s in self.adjoints else s
        if s in self.adjoints:
            return adjoint(s[1:], params=self.params)
        return name(s, params=self.params)

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        return self._name(expr.name)

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        return self._name(expr.name)

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        arg = expr.arg
        base = self._print(arg) if isinstance(arg, sp.MatrixSymbol) else rf"\left({self._print(arg)}\right)"
        return rf"{base}^{{\top}}"

    def _print_OneMatrix(self, expr: sp.OneMatrix) -> str:
        return r"\mathbf{1}^{\top}" if expr.shape[0] == 1 else r"\mathbf{1}"

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        atoms = (sp.MatrixSymbol, sp.Transpose, sp.OneMatrix)
        factors = [a for a in expr.args if not (a.is_Number and a == 1)]
        return " ".join(
            self._print(a) if isinstance(a, atoms) or a.is_Number else rf"\left({self._print(a)}\right)"
            for a in factors
        )

    def _print_Pow(self, expr: sp.Pow) -> str:
        if isinstance(expr.base, _Primitive) and expr.exp.is_Integer:  # tanh^2(a), as in print
            power = rf"\odot {expr.exp}" if self.hadamard else str(expr.exp)
            fn = {"Sigmoid": r"\sigma", "Tanh": r"\tanh"}.get(type(expr.base).__name__)
            if fn is None:  # |a|^2, \operatorname{gelu}(a)^2: the whole call raised
                return rf"\left({self._print(expr.base)}\right)^{{{power}}}"
            return rf"{fn}^{{{power}}}\left({self._print(expr.base.args[0])}\right)"
        if self.hadamard and expr.exp.is_Integer:
            base = self._print(expr.base) if expr.base.is_Symbol else self.parenthesize(expr.base, 1000)
            return rf"{base}^{{\odot {expr.exp}}}"
        return str(super()._print_Pow(expr))


def _printer(
    params: set[str] | frozenset[str], adjoints: set[str] | frozenset[str], hadamard: bool
) -> _Printer:
    return _Printer(frozenset(params), frozenset(adjoints), hadamard)


def elementwise(
    expr: sp.Expr,
    *,
    params: set[str] | frozenset[str] = frozenset(),
    adjoints: set[str] | frozenset[str] = frozenset(),
) -> str:
    """A scalar form printed as the matrix expression it computes elementwise (``\\odot`` products)."""
    return str(_printer(params, frozenset(adjoints), True).doprint(expr))


def scalar(expr: sp.Expr, *, params: set[str] | frozenset[str] = frozenset(), plain: bool = False) -> str:
    """A scalar expression printed as per-element algebra (juxtaposition for products).

    ``plain`` keeps SymPy's own symbol names (for rules stated in x and y rather than in the cell's values).
    """
    if plain:
        return str(_InlinePrinter({"order": "none"}).doprint(expr))
    return str(_printer(params, frozenset(), False).doprint(expr))


def matrix(
    expr: sp.MatrixExpr,
    *,
    params: set[str] | frozenset[str] = frozenset(),
    adjoints: set[str] | frozenset[str] = frozenset(),
    plain: bool = False,
) -> str:
    """A SymPy matrix expression (matrix products, transposes, the ones row of a bias sum).

    ``plain`` keeps the symbols' own names (for rules stated in A, B, Y), adjoints still print as delta.
    """
    return str(_Printer(frozenset(params), frozenset(adjoints), True, plain).doprint(expr))


def step_equation(step: Step, params: set[str] | frozenset[str]) -> str:
    """``lhs = rhs`` of one forward step in matrix form."""
    lhs = name(step.name)
    if step.kind == "linear":
        terms = [f"{name(t.left)} {name(t.weight, params=params)}" for t in step.terms]
        terms += [name(b, params=params) for b in step.biases]  # torch-style cells keep two rows
        return f"{lhs} = {' + '.join(terms)}"
    if step.kind in ("mean", "sum"):  # each row's mean (sum) in every column: the row times 11^T (/ d_h)
        return f"{lhs} = {name(step.inputs[0])} {_SPECIAL[f'<{step.kind}>']}"
    return f"{lhs} = {elementwise(scalar_form(step.expr), params=params)}"


def shifted(tex: str) -> str:
    """``tex`` with every time index moved from t to t+1 (``h_{t-1}`` -> ``h_{t}``, ``a_{z,t}`` -> ...)."""
    return (
        tex.replace("_{t-1}", "_{@}")
        .replace(",t}", ",t+1}")
        .replace("_{t}", "_{t+1}")
        .replace("_{@}", "_{t}")
    )
