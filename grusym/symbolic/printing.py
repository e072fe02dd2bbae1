"""Printers shared by the code generator and the reports, so code and documents name things alike.

``code(expr)`` prints a scalar elementwise expression as NumPy code; ``text(expr)`` prints it for a human
(comments, plain-text equations); ``equation(step)`` prints a whole step as ``name = rhs`` in NumPy notation
(``@`` for matrix products, ``*`` elementwise). SymPy's stock NumPy printer prints elementwise Lambdas as
invalid code, hence the subclass.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.str import StrPrinter

from .primitives import PRIMITIVES
from .steps import Step, scalar_form

__all__ = ["code", "equation", "text"]


class _CodePrinter(NumPyPrinter):
    """NumPy code for elementwise expressions, with grusym's stable sigmoid and ``np`` as the module."""

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": False, "allow_unknown_functions": False})

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == 2:  # x*x is faster than x**2 in NumPy
            base = self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE["Mul"] + 1)
            return f"{base}*{base}"
        return str(super()._print_Pow(expr, rational=rational))


class _TextPrinter(StrPrinter):
    pass


# SymPy's printers dispatch on the class name (and skip base classes of a Function): one method per primitive
for _fn in PRIMITIVES.values():
    setattr(
        _CodePrinter, f"_print_{_fn.__name__}", lambda self, e: f"{type(e).ufunc}({self._print(e.args[0])})"
    )
    setattr(
        _TextPrinter, f"_print_{_fn.__name__}", lambda self, e: f"{type(e).label}({self._print(e.args[0])})"
    )


_CODE, _TEXT = _CodePrinter(), _TextPrinter({"order": "none"})


def code(expr: sp.Expr) -> str:
    return str(_CODE.doprint(expr))


def text(expr: sp.Expr) -> str:
    return str(_TEXT.doprint(expr))


def equation(step: Step) -> str:
    """``name = rhs`` of a step, in NumPy notation."""
    if step.kind == "linear":
        rhs = " + ".join([f"{t.left} @ {t.weight}" for t in step.terms] + list(step.biases))
    elif step.kind in ("mean", "sum"):  # over the hidden units of each row (symbolic/reduce.py)
        rhs = f"{step.kind}({step.inputs[0]})"
    else:
        rhs = text(scalar_form(step.expr))
    return f"{step.name} = {rhs}"
