"""Reverse mode on a cell: the local derivatives of each step and the adjoint equations of one time step.

Contract: :func:`derive` walks the steps of a :class:`~grusym.symbolic.cell.Cell` backwards and returns
every adjoint *contribution* ``d[target] += expr``. Elementwise steps are differentiated by SymPy as scalar
expressions (primitives through ``primitives.RULES``, so derivatives reuse forward values); linear steps
use ``LINEAR_RULES``. The adjoint of value ``v`` is named ``d<v>``; it is the sum of the contributions whose
target is ``v``. Backpropagation through time is this one-step adjoint inside a loop over t: ``dh_prev`` of
step t joins the upstream gradient of step t-1, and parameter contributions are summed over t. The code
generator and the report both read the same :class:`Derivation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sympy as sp
from sympy import MatrixExpr, MatrixSymbol, OneMatrix

from . import reduce
from .cell import INPUT, Cell, Step, d, h, n, scalar_form
from .variants import head

__all__ = [
    "LINEAR_RULES",
    "Contribution",
    "Derivation",
    "LocalDerivative",
    "adjoint_name",
    "derive",
    "derive_head",
]


def adjoint_name(value: str) -> str:
    return f"d{value}"


# d[·] of the operands of Y = A @ B and of Y = 1 @ b (a bias row broadcast over the n rows)
LINEAR_RULES: dict[str, Callable[..., MatrixExpr]] = {
    "matmul_left": lambda dY, A, B: dY * B.T,
    "matmul_right": lambda dY, A, B: A.T * dY,
    "bias": lambda dY: OneMatrix(1, dY.shape[0]) * dY,
}


@dataclass(frozen=True)
class LocalDerivative:
    """d(step)/d(input) of an elementwise step: SymPy's result and the form the code uses."""

    step: str
    wrt: str
    derived: sp.Expr  # sp.diff of the step's scalar form
    used: sp.Expr  # the same with the step's own primitive output replaced by its name


@dataclass(frozen=True)
class Contribution:
    """``d[target] += expr``, produced by the adjoint of step ``source``.

    ``kind`` says which rule made it: ``elementwise`` (``expr`` is a scalar SymPy expression applied per
    element), ``matmul_left`` (``expr`` = d[source] @ weight.T), ``matmul_right`` (``expr`` = left.T @
    d[source], a parameter gradient summed over t), ``bias`` (the column sums of d[source], summed over
    t), ``vector`` (``expr`` is scalar, applied per element, then summed over the batch rows and over t:
    the gradient of an (h,) parameter vector of an elementwise step) or ``mean`` / ``sum`` (``expr`` =
    d[source] @ M.T, ``reduce.RULES``: d[source] reduced over each row's units again, broadcast).
    """

    target: str
    source: str
    kind: Literal["elementwise", "vector", "matmul_left", "matmul_right", "bias", "mean", "sum"]
    expr: sp.Expr | MatrixExpr
    left: str | None = None  # matmul rules: the left factor of the forward product
    weight: str | None = None  # matmul rules: the parameter of the forward product


@dataclass(frozen=True)
class Derivation:
    """The derived adjoint of one time step of ``cell``."""

    cell: Cell
    local: tuple[LocalDerivative, ...]
    contributions: tuple[Contribution, ...]  # grouped by source, sources in reverse step order

    def into(self, target: str) -> list[Contribution]:
        """All contributions to d[target]."""
        return [c for c in self.contributions if c.target == target]

    def out_of(self, source: str) -> list[Contribution]:
        """The contributions produced by the adjoint of step ``source``."""
        return [c for c in self.contributions if c.source == source]


def _matrix(name: str, cell: Cell) -> MatrixExpr:
    if name == INPUT:
        return MatrixSymbol(INPUT, n, d)
    if name in cell.params:
        return cell.params[name].symbol
    return MatrixSymbol(name, n, h)


def _elementwise_adjoint(
    step: Step, fixed: tuple[str, ...] = ()
) -> tuple[list[LocalDerivative], list[Contribution]]:
    f = scalar_form(step.expr)
    y = sp.Symbol(step.name, real=True)
    dy = sp.Symbol(adjoint_name(step.name), real=True)
    local, contribs = [], []
    for name in (*step.inputs, *step.vectors):
        if name in fixed:  # a per-step input (c.input): a constant, no adjoint
            continue
        derived = sp.diff(f, sp.Symbol(name, real=True))
        used = derived.subs(f, y)  # reuse the forward value: sigma(a) -> z, tanh(a) -> h_tilde
        local.append(LocalDerivative(step.name, name, derived, used))
        kind: Literal["elementwise", "vector"] = "vector" if name in step.vectors else "elementwise"
        contribs.append(Contribution(name, step.name, kind, dy * used))
    return local, contribs


def _linear_adjoint(step: Step, cell: Cell) -> list[Contribution]:
    dY = MatrixSymbol(adjoint_name(step.name), *step.expr.shape)
    contribs = []
    for term in step.terms:
        A, B = _matrix(term.left, cell), _matrix(term.weight, cell)
        contribs.append(
            Contribution(
                term.left,
                step.name,
                "matmul_left",
                LINEAR_RULES["matmul_left"](dY, A, B),
                term.left,
                term.weight,
            )
        )
        contribs.append(
            Contribution(
                term.weight,
                step.name,
                "matmul_right",
                LINEAR_RULES["matmul_right"](dY, A, B),
                term.left,
                term.weight,
            )
        )
    for bias in step.biases:
        contribs.append(Contribution(bias, step.name, "bias", LINEAR_RULES["bias"](dY)))
    return contribs


def derive(cell: Cell) -> Derivation:
    """Derive the one-step adjoint of ``cell`` (see the module docstring)."""
    local: list[LocalDerivative] = []
    contribs: list[Contribution] = []
    for step in reversed(cell.steps):
        if step.kind == "elementwise":
            step_local, step_contribs = _elementwise_adjoint(step, tuple(cell.inputs))
            local.extend(step_local)
            contribs.extend(step_contribs)
        elif step.kind == "mean" or step.kind == "sum":
            dY = MatrixSymbol(adjoint_name(step.name), n, h)
            contribs.append(Contribution(step.inputs[0], step.name, step.kind, reduce.RULES[step.kind](dY)))
        else:
            contribs.extend(_linear_adjoint(step, cell))
    return Derivation(cell, tuple(local), tuple(contribs))


def derive_head() -> tuple[Step, Derivation]:
    """The head's step and its adjoint (linear rules only)."""
    cell, step = head()
    return step, Derivation(cell, (), tuple(_linear_adjoint(step, cell)))
