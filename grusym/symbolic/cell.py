"""The language variants are declared in: a GRU cell as a list of named matrix-level operations (SSA).

Contract: a :class:`Cell` holds steps in evaluation order. Each step assigns one new (n, h) value and is
either *linear* (a sum of ``left @ W`` products plus a broadcast bias row, where ``W`` is a parameter) or
*elementwise* (a SymPy matrix expression of Hadamard products, sums and primitives applied elementwise).
Steps are SymPy matrix expressions with symbolic dimensions n (batch), d (input), h (hidden), q (output),
so SymPy checks every shape when a variant is declared. The last step assigns ``h``, the new hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import sympy as sp
from sympy import MatrixExpr, MatrixSymbol, OneMatrix

from .primitives import PRIMITIVES, Sigmoid, Tanh, _Primitive

__all__ = [
    "DIMS",
    "Cell",
    "Param",
    "Step",
    "Term",
    "Value",
    "d",
    "h",
    "n",
    "q",
    "scalar_form",
    "sigmoid",
    "tanh",
]

DIMS = n, d, h, q = sp.symbols("n d h q", integer=True, positive=True)
DIM_NAMES = {n: "n", d: "d", h: "h", q: "q"}

INPUT, STATE = "X", "h_prev"


@dataclass(frozen=True)
class Param:
    """A learned parameter: a (rows, cols) weight or an (h,) bias stored as a (1, h) row."""

    name: str
    rows: sp.Symbol
    cols: sp.Symbol
    kind: Literal["weight", "bias"]

    @property
    def symbol(self) -> MatrixSymbol:
        return MatrixSymbol(self.name, 1 if self.kind == "bias" else self.rows, self.cols)

    @property
    def shape_names(self) -> tuple[str, ...]:
        if self.kind == "bias":
            return (DIM_NAMES[self.cols],)
        return (DIM_NAMES[self.rows], DIM_NAMES[self.cols])


@dataclass(frozen=True)
class Term:
    """One product ``left @ weight`` of a linear step."""

    left: str
    weight: str


@dataclass(frozen=True)
class Step:
    """``name = expr``: one SSA operation of the cell."""

    name: str
    expr: MatrixExpr
    kind: Literal["linear", "elementwise"]
    terms: tuple[Term, ...] = ()
    bias: str | None = None

    @property
    def symbol(self) -> MatrixSymbol:
        return MatrixSymbol(self.name, n, h)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the values (not parameters) this step reads, in a fixed order."""
        if self.kind == "linear":
            return tuple(dict.fromkeys(t.left for t in self.terms))
        return tuple(sorted(s.name for s in self.expr.atoms(MatrixSymbol)))


class Value:
    """A matrix value inside a declaration; ``*`` is elementwise, ``@`` is the matrix product (as NumPy)."""

    def __init__(self, expr: MatrixExpr) -> None:
        self.expr = expr

    @staticmethod
    def _lift(other: Value | int | float, like: MatrixExpr) -> MatrixExpr:
        if isinstance(other, Value):
            return other.expr
        return sp.sympify(other) * OneMatrix(*like.shape)

    def __add__(self, other: Value | int | float) -> Value:
        return Value(sp.MatAdd(self.expr, self._lift(other, self.expr)).doit())

    __radd__ = __add__

    def __sub__(self, other: Value | int | float) -> Value:
        return Value(sp.MatAdd(self.expr, -self._lift(other, self.expr)).doit())

    def __rsub__(self, other: Value | int | float) -> Value:
        return Value(sp.MatAdd(self._lift(other, self.expr), -self.expr).doit())

    def __neg__(self) -> Value:
        return Value(-self.expr)

    def __mul__(self, other: Value | int | float) -> Value:
        if isinstance(other, Value):
            return Value(sp.hadamard_product(self.expr, other.expr))
        return Value(sp.sympify(other) * self.expr)

    __rmul__ = __mul__

    def __matmul__(self, other: Value) -> Value:
        return Value(self.expr * other.expr)


def _elementwise(fn: type[_Primitive], v: Value) -> Value:
    x = sp.Symbol("x", real=True)  # a named bound variable keeps printing deterministic
    return Value(v.expr.applyfunc(sp.Lambda(x, fn(x))))


def sigmoid(v: Value) -> Value:
    """Elementwise logistic sigmoid."""
    return _elementwise(Sigmoid, v)


def tanh(v: Value) -> Value:
    """Elementwise hyperbolic tangent."""
    return _elementwise(Tanh, v)


@dataclass
class Cell:
    """A recurrent cell under construction: parameters and steps in declaration order."""

    name: str
    params: dict[str, Param] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    @property
    def X(self) -> Value:
        return Value(MatrixSymbol(INPUT, n, d))

    @property
    def h_prev(self) -> Value:
        return Value(MatrixSymbol(STATE, n, h))

    def _param(self, name: str, rows: sp.Symbol, cols: sp.Symbol, kind: Literal["weight", "bias"]) -> Param:
        if name in self.params:
            raise ValueError(f"{self.name}: parameter {name!r} declared twice")
        self.params[name] = Param(name, rows, cols, kind)
        return self.params[name]

    def _add(self, step: Step) -> Value:
        known = {INPUT, STATE, *(s.name for s in self.steps)}
        if step.name in known:
            raise ValueError(f"{self.name}: value {step.name!r} assigned twice")
        if step.expr.shape != (n, h):
            raise ValueError(f"{self.name}: {step.name} has shape {step.expr.shape}, expected (n, h)")
        unknown = set(step.inputs) - known
        if unknown:
            raise ValueError(f"{self.name}: {step.name} reads undefined values {sorted(unknown)}")
        self.steps.append(step)
        return Value(step.symbol)

    def affine(
        self,
        gate: str,
        *,
        x: bool = True,
        hidden: Value | None = None,
        recurrent: bool = True,
        bias: str | None = None,
        name: str | None = None,
    ) -> Value:
        """Declare ``a_<gate> = X @ W_x<gate> + hidden @ W_h<gate> + b_<gate>`` (hidden: h_prev default)."""
        terms = []
        if x:
            terms.append(Term(INPUT, self._param(f"W_x{gate}", d, h, "weight").name))
        if recurrent:
            left = hidden.expr if hidden is not None else MatrixSymbol(STATE, n, h)
            if not isinstance(left, MatrixSymbol):
                raise ValueError(
                    f"{self.name}: the left factor of a matmul must be a named value, got {left}"
                )
            terms.append(Term(left.name, self._param(f"W_h{gate}", h, h, "weight").name))
        b = self._param(bias or f"b_{gate}", h, h, "bias")
        expr = sp.MatAdd(
            *(
                MatrixSymbol(t.left, n, d if t.left == INPUT else h) * self.params[t.weight].symbol
                for t in terms
            ),
            OneMatrix(n, 1) * b.symbol,
        )
        return self._add(Step(name or f"a_{gate}", expr, "linear", tuple(terms), b.name))

    def let(self, name: str, value: Value) -> Value:
        """Declare the elementwise step ``name = value``."""
        scalar_form(value.expr)  # rejects matrix products, which belong in affine()
        return self._add(Step(name, value.expr, "elementwise"))

    def check(self) -> Cell:
        if not self.steps or self.steps[-1].name != "h":
            raise ValueError(f"{self.name}: the last step must assign the new hidden state 'h'")
        return self


def scalar_form(expr: MatrixExpr) -> sp.Expr:
    """The scalar expression one element of an elementwise matrix expression computes.

    Matrix symbols become real scalar symbols of the same name, Hadamard products become products and
    elementwise-applied primitives become scalar primitives. Matrix products are rejected.
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
    if isinstance(expr, sp.matrices.expressions.applyfunc.ElementwiseApplyFunction):
        fn = expr.function
        body = fn(sp.Symbol("x", real=True)) if isinstance(fn, sp.Lambda) else None
        if body is not None and isinstance(body, tuple(PRIMITIVES.values())):
            primitive: Any = type(body)
            return primitive(scalar_form(expr.expr))
    raise ValueError(f"not an elementwise expression (stage matrix products with affine()): {expr}")
