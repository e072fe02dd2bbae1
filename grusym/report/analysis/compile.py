"""Scalar SymPy forms compiled to NumPy: how the report evaluates the declared steps and the diagonals of J.

Contract: :func:`compile_scalar` turns a scalar expression of values, parameters and primitives into
(argument names, NumPy function), each primitive through the same NumPy or runtime call the generated code
makes; :func:`numeric` is the same, cached per expression.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from ... import runtime
from ...symbolic.primitives import PRIMITIVES

__all__ = ["compile_scalar", "numeric"]


def _numeric_table() -> dict[str, Any]:
    """SymPy function name -> the NumPy call the generated code makes (``_Primitive.ufunc``)."""
    table: dict[str, Any] = {}
    for p in PRIMITIVES.values():
        where, fn = p.ufunc.split(".")
        if fn == "copyto":  # the identity copies its input
            table[p.__name__] = lambda v: v
        else:
            table[p.__name__] = getattr(runtime if where == "rt" else np, fn)
    return table


_NUMERIC = _numeric_table()


def compile_scalar(expr: sp.Expr) -> tuple[list[str], Any]:
    """(argument names, NumPy function) of a scalar expression of values, parameters and primitives."""
    # the identity primitive shares its class name with SymPy's identity matrix, whose printer would fail
    expr = expr.replace(lambda e: isinstance(e, PRIMITIVES["identity"]), lambda e: e.args[0])
    syms = sorted(expr.free_symbols, key=lambda v: v.name)
    return [v.name for v in syms], sp.lambdify(syms, expr, modules=[_NUMERIC, "numpy"])


@lru_cache(maxsize=1024)
def numeric(expr: sp.Expr) -> tuple[tuple[str, ...], Any]:
    """(argument names, NumPy function) of a diagonal's expression, compiled once per expression."""
    names, fn = compile_scalar(expr)
    return tuple(names), fn
