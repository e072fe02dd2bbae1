"""Reductions over the hidden units: ``mean`` and ``sum`` of each row, as steps of their own.

Contract: a reduction step ``m = mean(v)`` (``c.mean(v)``) reads one named (n, h) value ``v`` and holds
the mean of each row of it in every column of that row: a row value stored broadcast, so every elementwise
step combines it with (n, h) values as it combines any other. As a matrix expression it is the linear map
``v @ M`` with ``M = J/h`` (``J`` the (h, h) matrix of ones; ``M = J`` for ``sum``); ``M`` is symmetric,
so the adjoint ``d[v] += d[m] @ M.T`` is again the reduction, broadcast: a mean's adjoint spreads each row's
adjoint sum evenly (1/h) over the units it averaged, a sum's gives each unit the whole of it. That rule,
one line per reduction in :data:`RULES`, is all derivation, code generation, the oracle and the reports
use. The generated code calls ``rt.row_mean`` / ``rt.row_sum`` (:mod:`grusym.runtime`), forward and
backward alike.
"""

from __future__ import annotations

from collections.abc import Callable

from sympy import MatrixExpr, MatrixSymbol, OneMatrix

from .steps import h

__all__ = ["REDUCTIONS", "RULES", "RUNTIME", "operator", "reduction"]

REDUCTIONS = ("mean", "sum")


def operator(kind: str) -> MatrixExpr:
    """The (h, h) matrix M a reduction multiplies by on the right: J/h (mean) or J (sum)."""
    J = OneMatrix(h, h)
    return J / h if kind == "mean" else J


def reduction(kind: str, v: MatrixSymbol) -> MatrixExpr:
    """The step's expression: ``v @ M``, each row's mean (sum) in every column of that row."""
    return v * operator(kind)  # flat: MatMul(1/h, v, J)


# d[v] += rule(d[m]) for m = reduce(v): d[m] @ M.T, which is the reduction again (M is symmetric)
RULES: dict[str, Callable[[MatrixExpr], MatrixExpr]] = {
    "mean": lambda dY: dY * operator("mean").T,
    "sum": lambda dY: dY * operator("sum").T,
}

# the runtime function that applies M (forward) and M.T (backward: the same, M is symmetric)
RUNTIME = {"mean": "rt.row_mean", "sum": "rt.row_sum"}
