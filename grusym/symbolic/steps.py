"""The cell's intermediate form: dimensions, parameters, steps, and the scalar form of an elementwise step.

Contract: a :class:`Step` assigns one new (n, h) value and is either *linear* (a sum of ``left @ W``
products plus broadcast bias rows, where ``W`` is a parameter) or *elementwise* (a SymPy matrix expression
of Hadamard products, sums, numbers, broadcast parameter vectors and primitives applied elementwise).
:func:`scalar_form` is what one element of an elementwise step computes; :func:`unread` and
:func:`loss_reach` say which steps the states and the loss depend on (code generation prunes the others,
or skips them in backward). The builder that produces steps is :mod:`grusym.symbolic.cell`; derivation,
code generation, reports and the oracle read these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sympy as sp
from sympy import MatrixExpr, MatrixSymbol, OneMatrix

from .primitives import _Primitive

__all__ = [
    "DIMS",
    "INPUT",
    "OUTPUT",
    "STATE",
    "Param",
    "Step",
    "Term",
    "loss_reach",
    "params_of",
    "prev_name",
    "scalar_form",
    "unread",
]

DIMS = n, d, h, q = sp.symbols("n d h q", integer=True, positive=True)
DIM_NAMES = {n: "n", d: "d", h: "h", q: "q"}

INPUT, OUTPUT = "X", "h"
STATE = f"{OUTPUT}_prev"  # the previous output state, h_prev


def prev_name(state: str) -> str:
    """The name of a state's previous value: ``h`` -> ``h_prev``."""
    return f"{state}_prev"


@dataclass(frozen=True)
class Param:
    """A learned parameter: a (rows, cols) weight, or an (h,) bias or elementwise vector, stored as (1, h).

    ``init``: the constant a vector starts at (0, or a layer norm's gain 1); weights are drawn."""

    name: str
    rows: sp.Symbol
    cols: sp.Symbol
    kind: Literal["weight", "bias", "vector"]
    init: float = 0.0

    @property
    def symbol(self) -> MatrixSymbol:
        return MatrixSymbol(self.name, self.rows if self.kind == "weight" else 1, self.cols)

    @property
    def shape_names(self) -> tuple[str, ...]:
        if self.kind != "weight":
            return (DIM_NAMES[self.cols],)
        return (DIM_NAMES[self.rows], DIM_NAMES[self.cols])


@dataclass(frozen=True)
class Term:
    """One product ``left @ weight`` of a linear step."""

    left: str
    weight: str


@dataclass(frozen=True)
class Step:
    """``name = expr``: one SSA operation of the cell.

    Linear steps: ``terms`` and ``biases`` (zero, one, or several rows, e.g. torch's b_ih and b_hh).
    Elementwise steps: ``vectors`` names the (h,) parameter vectors the expression multiplies or adds.
    Reductions (``mean``, ``sum``: :mod:`.reduce`) read one value; each row's result fills that row.
    """

    name: str
    expr: MatrixExpr
    kind: Literal["linear", "elementwise", "mean", "sum"]
    terms: tuple[Term, ...] = ()
    biases: tuple[str, ...] = ()
    vectors: tuple[str, ...] = ()

    @property
    def bias(self) -> str | None:
        """The first bias row (None without one); ``biases`` has them all."""
        return self.biases[0] if self.biases else None

    @property
    def symbol(self) -> MatrixSymbol:
        return MatrixSymbol(self.name, n, h)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the values (not parameters) this step reads, in a fixed order."""
        if self.kind == "linear":
            return tuple(dict.fromkeys(t.left for t in self.terms))
        return tuple(sorted(s.name for s in self.expr.atoms(MatrixSymbol) if s.name not in self.vectors))


def unread(steps: list[Step] | tuple[Step, ...], states: list[str] | tuple[str, ...]) -> list[str]:
    """The steps no state depends on, in declaration order.

    A step is *live* when it is a state's new value (the output feeds the loss, every state is returned
    as a last state) or a live step reads it; the others (a gate left declared after an ablation, a
    probe, a term that cancels as ``0*a`` or ``a - a`` does) change neither the loss nor the states.
    """
    live = set(states)
    for s in reversed(steps):
        if s.name in live:
            live |= set(s.inputs)
    return [s.name for s in steps if s.name not in live]


def loss_reach(steps: list[Step] | tuple[Step, ...], states: list[str] | tuple[str, ...]) -> set[str]:
    """The steps the output (and so the loss) depends on, at the same or an earlier time step.

    The others feed only states nothing the output reads (or read through a term that cancels): their
    adjoint is zero at every step, so backward skips them, and multiplying that zero by their forward
    values, which may overflow where no loss looks, cannot turn it into nan.
    """
    new_value = {prev_name(s): s for s in states}  # a state's prev is its new value one step earlier
    by_name = {s.name: s for s in steps}
    reach, todo = {OUTPUT}, [OUTPUT]
    while todo:
        step = by_name.get(todo.pop())
        for name in step.inputs if step else ():
            name = new_value.get(name, name)
            if name in by_name and name not in reach:
                reach.add(name)
                todo.append(name)
    return reach


def params_of(step: Step) -> tuple[str, ...]:
    """The parameters ``step`` reads: its weights, bias rows and (h,) vectors."""
    return (*(t.weight for t in step.terms), *step.biases, *step.vectors)


def scalar_form(expr: MatrixExpr) -> sp.Expr:
    """The scalar expression one element of an elementwise matrix expression computes.

    Matrix symbols become real scalar symbols of the same name (a broadcast parameter vector becomes its
    own name), Hadamard products become products and elementwise-applied primitives become scalar
    primitives. Matrix products are rejected.
    """
    if isinstance(expr, MatrixSymbol):
        return sp.Symbol(expr.name, real=True)
    if isinstance(expr, OneMatrix):
        return sp.Integer(1)
    if isinstance(expr, sp.ZeroMatrix):
        return sp.Integer(0)
    if isinstance(expr, sp.HadamardProduct):
        return sp.Mul(*(scalar_form(a) for a in expr.args))
    if isinstance(expr, sp.MatAdd):
        return sp.Add(*(scalar_form(a) for a in expr.args))
    if isinstance(expr, sp.HadamardPower):
        return sp.Pow(scalar_form(expr.base), expr.exp)
    if isinstance(expr, sp.MatMul):
        scalars = [a for a in expr.args if not a.is_Matrix]
        matrices = [a for a in expr.args if a.is_Matrix]
        if len(matrices) == 1:
            return sp.Mul(*scalars) * scalar_form(matrices[0])
        if (
            len(matrices) == 2
            and isinstance(matrices[0], OneMatrix)
            and matrices[0].shape[1] == 1
            and isinstance(matrices[1], MatrixSymbol)
            and matrices[1].shape[0] == 1
        ):  # 1 @ v: an (h,) parameter vector broadcast over the batch
            return sp.Mul(*scalars) * sp.Symbol(matrices[1].name, real=True)
    if isinstance(expr, sp.matrices.expressions.applyfunc.ElementwiseApplyFunction):
        # SymPy merges f applied to g applied to M into one function x -> f(g(x)) applied to M: keep the
        # whole chain of primitives, not only the outermost
        fn = expr.function
        x = sp.Dummy("x", real=True)
        body = fn(x) if isinstance(fn, sp.Lambda) else None
        chain: list[Any] = []
        while isinstance(body, _Primitive):
            chain.append(type(body))
            body = body.args[0]
        if chain and body == x:
            value = scalar_form(expr.expr)
            for primitive in reversed(chain):
                value = primitive(value)
            return value
    raise ValueError(f"not an elementwise expression (stage matrix products with c.affine()): {expr}")
