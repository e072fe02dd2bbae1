"""The cell language: a recurrent cell as a list of named matrix-level operations (SSA), and its builder.

A cell is declared by a function of a :class:`Cell` (the built-ins in ``variants.py``, or a user's own
file), e.g. the minimal gated unit::

    from grusym.symbolic.cell import sigmoid, tanh

    def mgu(c):
        f = c.let("f", sigmoid(c.affine("f")))         # f = sigmoid(X @ W_xf + h_prev @ W_hf + b_f)
        f_h = c.let("f_h", f * c.h_prev)
        h_tilde = c.let("h_tilde", tanh(c.affine("h", hidden=f_h)))
        c.let("h", (1 - f) * c.h_prev + f * h_tilde)   # assigning "h" updates the state h

Contract: a :class:`Cell` holds steps in evaluation order. Each step assigns one new (n, h) value and is
either *linear* (a sum of ``left @ W`` products plus broadcast bias rows, where ``W`` is a parameter) or
*elementwise* (a SymPy matrix expression of Hadamard products, sums, numbers, parameter vectors and the
primitives below, applied elementwise). Steps are SymPy matrix expressions with symbolic dimensions n
(batch), d (input), h (hidden), q (output), so every shape is checked when the cell is declared.

States: ``c.prev("c")`` is the previous value of the recurrent state ``c`` (``c.h_prev`` is
``c.prev("h")``); the step named ``c`` is its new value. States are listed in the order they are first
read; the output state (``h``, the one that forms ``H`` and feeds the head) is always one of them.
Every mistake raises :class:`CellError` naming the step and the problem.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import sympy as sp
from sympy import MatrixExpr, MatrixSymbol, OneMatrix

from ..errors import InputError
from .inputs import declare_input  # the rules of inputs live in their own module
from .names import clash, reserved
from .primitives import PRIMITIVES, _Primitive
from .ranges import sign
from .steps import (
    DIM_NAMES,
    DIMS,
    INPUT,
    OUTPUT,
    STATE,
    Param,
    Step,
    Term,
    d,
    h,
    n,
    prev_name,
    q,
    scalar_form,
    unread,
)

__all__ = [
    "DIMS",
    "INPUT",
    "OUTPUT",
    "STATE",
    "Cell",
    "CellError",
    "Param",
    "Step",
    "Term",
    "Value",
    "apply",
    "d",
    "elu",
    "exp",
    "gelu",
    "h",
    "hard_sigmoid",
    "identity",
    "leaky_relu",
    "log",
    "n",
    "prev_name",
    "q",
    "reads_input_elementwise",
    "relu",
    "scalar_form",
    "sigmoid",
    "silu",
    "softplus",
    "softsign",
    "sqrt",
    "tanh",
]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class CellError(InputError):
    """A cell declaration grusym cannot derive; the message names the cell, the step and the problem."""


def _shape_text(expr: MatrixExpr) -> str:
    return "(" + ", ".join(str(DIM_NAMES.get(s, s)) for s in expr.shape) + ")"


class Value:
    """A matrix value inside a declaration; ``*`` is elementwise, ``@`` is the matrix product (as NumPy).

    Numbers (int, float, fractions) broadcast over the whole value; floats are read as the decimal they
    print as (0.2 is 1/5), so derivations stay exact.
    """

    def __array_ufunc__(self, ufunc: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        # a NumPy scalar on the left (np.float32(2) * v) reaches here: the operator, the scalar a number
        op = _UFUNC_OPERATORS.get(ufunc.__name__)
        if op is not None and method == "__call__" and not kwargs and len(args) == 2:
            if isinstance(args[0], Value):
                return getattr(Value, f"__{op}__")(args[0], args[1])
            return getattr(Value, f"__r{op}__")(args[1], args[0])
        raise self.cell.error(
            f"numpy.{ufunc.__name__} does not apply to a cell value (a symbolic matrix): use the primitives "
            f"of grusym.symbolic.cell ({', '.join(PRIMITIVES)})"
        )

    def __init__(self, expr: MatrixExpr, cell: Cell) -> None:
        self.expr = expr
        self.cell = cell

    def __repr__(self) -> str:
        return f"Value({self.expr})"

    def _lift(self, other: object, op: str) -> MatrixExpr:
        if isinstance(other, Value):
            return other.expr
        number = _number(other)
        if number is None:
            raise self.cell.error(
                f"'{op}' of a cell value and {type(other).__name__} {other!r}: expected a cell value or a "
                "number"
            )
        return number * OneMatrix(*self.expr.shape)

    def _combine(self, other: object, op: str, build: Any) -> Value:
        rhs = self._lift(other, op)
        left, right = self.expr, rhs
        if op != "@" and {left.shape, right.shape} == {(n, d), (n, h)}:
            left, right = _hidden(left, self.cell), _hidden(right, self.cell)  # X used elementwise: d == h
        agree = left.shape[1] == right.shape[0] if op == "@" else left.shape == right.shape
        try:
            if agree:  # SymPy cannot always tell symbolic d from h apart, so check here
                return Value(build(left, right), self.cell)
        except sp.ShapeError:
            pass
        raise self.cell.error(
            f"shapes do not agree in '{_name(left)} {op} {_name(right)}': {_name(left)} is "
            f"{_shape_text(left)}, {_name(right)} is {_shape_text(right)}"
        ) from None

    def __add__(self, other: object) -> Value:
        return self._combine(other, "+", lambda a, b: sp.MatAdd(a, b).doit())

    def __radd__(self, other: object) -> Value:
        return self._combine(other, "+", lambda a, b: sp.MatAdd(b, a).doit())

    def __sub__(self, other: object) -> Value:
        return self._combine(other, "-", lambda a, b: sp.MatAdd(a, -b).doit())

    def __rsub__(self, other: object) -> Value:
        return self._combine(other, "-", lambda a, b: sp.MatAdd(b, -a).doit())

    def __neg__(self) -> Value:
        return Value(-self.expr, self.cell)

    def __mul__(self, other: object) -> Value:
        if not isinstance(other, Value):
            number = _number(other)
            if number is not None:
                return Value(number * self.expr, self.cell)
        return self._combine(other, "*", sp.hadamard_product)

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> Value:
        if isinstance(other, Value):
            return self * _reciprocal(other, f"{_name(self.expr)} / {_name(other.expr)}")
        number = _number(other)
        if number is None or number == 0:
            raise self.cell.error(
                f"'/' divides a cell value by a cell value or a nonzero number, got {type(other).__name__} "
                f"{other!r}"
            )
        return Value(self.expr / number, self.cell)

    def __rtruediv__(self, other: object) -> Value:
        number = _number(other)
        if number is None:
            raise self.cell.error(
                f"'/' of {type(other).__name__} {other!r} by a cell value: expected a number"
            )
        return _reciprocal(self, f"{other!r} / {_name(self.expr)}") * number

    def __pow__(self, other: object) -> Value:
        k = _number(other)
        if k is None or not k.is_integer or k == 0:
            raise self.cell.error(
                f"'**' raises a cell value to a nonzero integer power only, got {type(other).__name__} "
                f"{other!r}"
            )
        base = self.expr
        if k < 0 and _sign(self) != "positive":
            raise self.cell.error(
                f"'{_name(base)} ** {k}': the base cannot be proved positive (nonzero), so its negative "
                "power may divide by zero (sigmoid, softplus and exp underflow to 0 in floating point); "
                "add a positive number (softplus(v) + 1e-5), or write 1/sigmoid(v) as 1 + exp(-1 * v)"
            )
        return Value(base if k == 1 else sp.HadamardPower(base, k), self.cell)

    def __rpow__(self, other: object) -> Value:
        raise self.cell.error(
            f"'**' with a cell value as the exponent ({type(other).__name__} {other!r} ** value): use exp()"
        )

    def __abs__(self) -> Value:
        return apply("abs", self)

    def _unsupported(self, other: object, op: str) -> Value:
        raise self.cell.error(
            f"'{op}' does not apply to a cell value and {type(other).__name__} {other!r}: the elementwise "
            "operators are +, -, *, / by a number, ** an integer, abs()"
        )

    def __floordiv__(self, other: object) -> Value:
        return self._unsupported(other, "//")

    __rfloordiv__ = __floordiv__

    def __mod__(self, other: object) -> Value:
        return self._unsupported(other, "%")

    __rmod__ = __mod__

    def __matmul__(self, other: object) -> Value:
        raise self.cell.error(
            "'@' between cell values: a matrix product with a learned weight is declared with c.affine(...)"
        )

    def __float__(self) -> float:
        raise self.cell.error(
            "a cell value is a matrix, not a number: math/numpy functions do not apply to it; use the "
            f"primitives of grusym.symbolic.cell ({', '.join(PRIMITIVES)})"
        )

    def _compare(self, other: object) -> bool:
        raise self.cell.error("cell values cannot be compared: use relu/hard_sigmoid instead of max/min/if")

    __lt__ = __le__ = __gt__ = __ge__ = _compare

    def __bool__(self) -> bool:
        raise self.cell.error("a cell value has no truth value: use relu/hard_sigmoid instead of if/max/min")


_UFUNC_OPERATORS = {
    "add": "add",
    "subtract": "sub",
    "multiply": "mul",
    "divide": "truediv",
    "true_divide": "truediv",
    "power": "pow",
    "floor_divide": "floordiv",
    "remainder": "mod",
}


def _number(other: object) -> sp.Expr | None:
    """A number as an exact SymPy rational (floats as the decimal they print as), None for anything else;
    NumPy scalars (np.float32(2), np.int64(3)) are numbers too."""
    if isinstance(other, (bool, np.bool_)):
        return None
    if isinstance(other, (int, np.integer)):
        return sp.Integer(int(other))
    if isinstance(other, np.floating):  # str: np.float32(0.1) prints as 0.1 (its float is 0.100000001...)
        return sp.Rational(str(other)) if np.isfinite(other) else None
    if isinstance(other, float):
        return sp.Rational(repr(other)) if np.isfinite(other) else None
    if isinstance(other, sp.Expr) and other.is_number:
        return sp.nsimplify(other, rational=True)
    if isinstance(other, Fraction):
        return sp.Rational(other.numerator, other.denominator)
    return None


def _hidden(expr: MatrixExpr, cell: Cell) -> MatrixExpr:
    """An (n, d) value (the input X, scaled or shifted) read elementwise next to (n, h) values: the same
    expression of width h. The cell notes the step, and its module requires d == h even where the term
    cancels (``X - X``): the declaration as written exists only for d == h."""
    if expr.shape != (n, d):
        return expr
    if len(cell.steps) + 1 not in cell.x_steps:
        cell.x_steps.append(len(cell.steps) + 1)
    return expr.xreplace({d: h})


def reads_input_elementwise(cell: Cell) -> bool:
    """Whether a step of ``cell`` reads the input X elementwise (so d must equal h)."""
    return bool(cell.x_steps)


def _name(expr: MatrixExpr) -> str:
    if isinstance(expr, MatrixSymbol):
        return str(expr.name)
    if isinstance(expr, OneMatrix):
        return "a number"
    from .printing import text  # printing imports this module: import on use

    try:
        return f"({text(scalar_form(expr))})"
    except ValueError:
        return f"({expr})"


def _sign(v: Value) -> str:
    """What the sign lattice (:mod:`.ranges`) proves about ``v``: positive, nonnegative or real."""
    try:
        return sign(scalar_form(v.expr), v.cell.steps)
    except ValueError:  # not elementwise: the caller's shape check names the problem
        return "real"


def _reciprocal(v: Value, what: str) -> Value:
    """1/v elementwise, for ``a / v``: only of a value the sign lattice proves positive (never zero)."""
    v = Value(_hidden(v.expr, v.cell), v.cell)
    if _sign(v) != "positive":
        raise v.cell.error(
            f"'{what}': the divisor cannot be proved positive, so the division may divide by zero (sigmoid, "
            "softplus and exp underflow to 0 in floating point); add an epsilon: v / sqrt(var + 1e-5), "
            "v / (softplus(s) + 1e-5)"
        )
    return Value(sp.HadamardPower(v.expr, -1), v.cell)


def _elementwise(fn: type[_Primitive], v: object) -> Value:
    if not isinstance(v, Value):
        raise CellError(
            f"{fn.label}() takes a cell value (from c.X, c.prev, c.let or c.affine), got "
            f"{type(v).__name__} {v!r}"
        )
    v = Value(_hidden(v.expr, v.cell), v.cell)
    if v.expr.shape != (n, h):
        raise v.cell.error(
            f"{fn.label}() of {_name(v.expr)} of shape {_shape_text(v.expr)}: primitives apply to (n, h) "
            "values"
        )
    if fn.domain == "positive" and _sign(v) != "positive":
        raise v.cell.error(
            f"{fn.label}({_name(v.expr)}): the argument cannot be proved positive, and {fn.label} is defined "
            "(with a finite derivative) for positive arguments only, and sigmoid, softplus and exp "
            f"underflow to 0 in floating point; add a positive number ({fn.label}(softplus(v) + 1e-5)), or "
            "write log(sigmoid(v)) as -1 * softplus(-1 * v) and log(exp(v)) as v"
        )
    x = sp.Symbol("x", real=True)  # a named bound variable keeps printing deterministic
    return Value(v.expr.applyfunc(sp.Lambda(x, fn(x))), v.cell)


def apply(primitive: str, v: Value) -> Value:
    """The primitive named ``primitive`` (one of ``PRIMITIVES``) applied elementwise to ``v``."""
    fn = PRIMITIVES.get(primitive)
    if fn is None:
        message = f"unknown primitive {primitive!r}; known: {', '.join(PRIMITIVES)}"
        raise v.cell.error(message) if isinstance(v, Value) else CellError(message)
    return _elementwise(fn, v)


def sigmoid(v: Value) -> Value:
    """Elementwise logistic sigmoid, 1 / (1 + exp(-x))."""
    return apply("sigmoid", v)


def tanh(v: Value) -> Value:
    """Elementwise hyperbolic tangent."""
    return apply("tanh", v)


def relu(v: Value) -> Value:
    """Elementwise max(x, 0); its derivative at 0 is taken as 0 (torch's convention)."""
    return apply("relu", v)


def softplus(v: Value) -> Value:
    """Elementwise log(1 + exp(x)), evaluated stably."""
    return apply("softplus", v)


def exp(v: Value) -> Value:
    """Elementwise exp(x)."""
    return apply("exp", v)


def identity(v: Value) -> Value:
    """The identity, a named linear activation (e.g. to keep a linear step's value as its own step)."""
    return apply("identity", v)


def hard_sigmoid(v: Value) -> Value:
    """Keras' older default hard sigmoid, clip(0.2*x + 0.5, 0, 1); derivative 0 at x = +-2.5."""
    return apply("hard_sigmoid", v)


def softsign(v: Value) -> Value:
    """Elementwise x / (1 + |x|)."""
    return apply("softsign", v)


def sqrt(v: Value) -> Value:
    """Elementwise square root, of a value the builder proves positive."""
    return apply("sqrt", v)


def log(v: Value) -> Value:
    """Elementwise natural logarithm, of a value the builder proves positive."""
    return apply("log", v)


def leaky_relu(v: Value) -> Value:
    """Elementwise x for x > 0, x/100 otherwise (torch's default slope 0.01, also at 0)."""
    return apply("leaky_relu", v)


def elu(v: Value) -> Value:
    """Elementwise x for x > 0, exp(x) - 1 otherwise (alpha 1, torch's default)."""
    return apply("elu", v)


def gelu(v: Value) -> Value:
    """Elementwise gelu in its tanh form (torch's approximate="tanh")."""
    return apply("gelu", v)


def silu(v: Value) -> Value:
    """Elementwise x*sigmoid(x) (swish)."""
    return apply("silu", v)


@dataclass
class Cell:
    """A recurrent cell under construction: parameters, states and steps in declaration order.

    ``title`` and ``doc`` describe it in the generated module's docstring.
    """

    name: str
    params: dict[str, Param] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    title: str = ""
    doc: str = ""
    builtin: bool = False  # one of grusym's own (symbolic/variants.py), not a user's
    x_steps: list[int] = field(default_factory=list)  # the numbers of the steps that read X elementwise
    inputs: list[str] = field(default_factory=list)  # per-step inputs without gradient (c.input), in order

    # ---- values
    def error(self, message: str) -> CellError:
        """A CellError naming this cell and the step being declared."""
        where = f"step {len(self.steps) + 1}" + (f" (after {self.steps[-1].name!r})" if self.steps else "")
        return CellError(f"cell {self.name!r}, {where}: {message}")

    @property
    def X(self) -> Value:
        """The input of the step, (n, d)."""
        return Value(MatrixSymbol(INPUT, n, d), self)

    def prev(self, state: str) -> Value:
        """The previous value of recurrent state ``state`` (declared on first use); the step named
        ``state`` is its new value."""
        self._check_name(state, "state")
        if state not in self.states:
            if state in self.params:
                raise self.error(f"state {state!r} has the name of a parameter")
            if state in self.inputs:
                raise self.error(f"state {state!r} has the name of a per-step input (c.input)")
            self.states.append(state)
        return Value(MatrixSymbol(prev_name(state), n, h), self)

    @property
    def h_prev(self) -> Value:
        """The previous hidden (output) state, ``c.prev("h")``."""
        return self.prev(OUTPUT)

    def value(self, name: str) -> Value:
        """The value of a step declared earlier."""
        if name not in {s.name for s in self.steps}:
            raise self.error(
                f"{name!r} is used before it is defined (declare it with c.let or c.affine first)"
            )
        return Value(MatrixSymbol(name, n, h), self)

    def input(self, name: str) -> Value:
        """A per-step (n, h) input without gradient, read elementwise (a dropout or zoneout mask, a time
        delta): supplied at call time as ``aux={name: (T, n, h) or (T, n, 1) array}`` (see
        :mod:`grusym.symbolic.inputs`)."""
        return Value(declare_input(self, name), self)

    def vector(self, name: str, init: float = 0.0) -> Value:
        """A learned (h,) parameter vector, broadcast over the batch: peephole weights, IndRNN's u, a
        layer norm's gain (``init=1``: every entry starts at 1; ``init_params`` makes vectors 0 else)."""
        value = _number(init)
        if value is None:
            raise self.error(
                f"vector {name!r}: init must be a finite number, got {type(init).__name__} {init!r}"
            )
        param = self._param(name, h, h, "vector")
        if value != 0:
            self.params[name] = replace(param, init=float(value))
        return Value(OneMatrix(n, 1) * self.params[name].symbol, self)

    def mean(self, v: Value, name: str | None = None, *, axis: int = -1) -> Value:
        """Declare the step ``name = mean(v)``: the mean of each row of ``v`` over the hidden units, held in
        every column of that row (a row value, broadcast over h). ``v`` a named value (default name
        ``<v>_mean``) or an expression (then ``name`` is required and the expression becomes the step
        ``<name>_arg``). ``axis`` -1 or 1, the units: the batch is no dimension of a cell."""
        return self._reduce("mean", v, name, axis)

    def sum(self, v: Value, name: str | None = None, *, axis: int = -1) -> Value:
        """Declare the step ``name = sum(v)``: each row's sum over the hidden units (see :meth:`mean`)."""
        return self._reduce("sum", v, name, axis)

    def _reduce(self, kind: Literal["mean", "sum"], v: Value, name: str | None, axis: object) -> Value:
        if not isinstance(v, Value):
            raise self.error(f"c.{kind}() takes a cell value, got {type(v).__name__} {v!r}")
        if isinstance(axis, bool) or axis not in (-1, 1):
            raise self.error(
                f"c.{kind}(..., axis={axis!r}): a reduction runs over the hidden units of each row (axis -1 "
                "or 1); a cell sees one time step of each sequence, so there is no other axis to reduce"
            )
        expr = _hidden(v.expr, self)
        named = isinstance(expr, MatrixSymbol) and expr.shape == (n, h) and expr.name != INPUT
        if not named:
            if name is None:
                raise self.error(
                    f"c.{kind}({_name(expr)}): the {kind} of an expression needs a name, "
                    f"c.{kind}(v, name='mu') (the expression becomes the step '<name>_arg')"
                )
            self._check_name(name, "step")
            expr = self.let(f"{name}_arg", Value(expr, self)).expr
        from .reduce import reduction  # reduce imports steps only; import on use keeps cell's imports flat

        step_name = name if name is not None else f"{expr.name}_{kind}"
        return self._add(Step(step_name, reduction(kind, expr), kind))

    # ---- steps
    def affine(
        self,
        gate: str,
        *,
        x: bool = True,
        hidden: Value | None = None,
        recurrent: bool = True,
        bias: str | tuple[str, ...] | bool | None = None,
        name: str | None = None,
        weight: str | None = None,
    ) -> Value:
        """Declare ``a_<gate> = X @ W_x<gate> + hidden @ W_h<gate> + b_<gate>``.

        x: include the input term; hidden: the left factor of the recurrent term (default h_prev; any
        declared (n, h) value or another state's prev); recurrent=False: no recurrent term (gates from
        the input only); bias: the bias name, a tuple of names (several rows, e.g. torch's b_ih and
        b_hh), or False for none; name: the step's name (default ``a_<gate>``); weight: the name of the
        input weight (default ``W_x<gate>``; SRU's ``W``, ``W_f``).
        """
        self._check_name(gate, "gate", pattern=re.compile(r"[a-z0-9][a-z0-9_]*\Z"))
        step_name = name or f"a_{gate}"
        terms = []
        if x:
            terms.append(Term(INPUT, self._param(weight or f"W_x{gate}", d, h, "weight").name))
        if recurrent:
            left = hidden.expr if hidden is not None else self.h_prev.expr
            if hidden is not None and not isinstance(hidden, Value):
                raise self.error(f"affine(hidden=...) takes a cell value, got {type(hidden).__name__}")
            linear = {s.name for s in self.steps if s.kind == "linear"}
            if isinstance(left, MatrixSymbol) and left.name in self.inputs:
                raise self.error(
                    f"the recurrent term of {step_name!r} reads the per-step input {left.name!r}: inputs are "
                    "read elementwise only (a learned product of one: append it to X)"
                )
            if isinstance(left, MatrixSymbol) and left.name in linear:
                raise self.error(
                    f"the recurrent term of {step_name!r} reads the linear step {left.name!r}; wrap it in an "
                    f"elementwise step first: c.let(name, identity(...))"
                )
            if not isinstance(left, MatrixSymbol) or left.shape != (n, h):
                raise self.error(
                    f"the left factor of the matmul in {step_name!r} must be a named (n, h) value (a step or "
                    f"a state's prev), got {_name(left)} of shape {_shape_text(left)}"
                )
            terms.append(Term(left.name, self._param(f"W_h{gate}", h, h, "weight").name))
        if not terms:
            raise self.error(f"{step_name!r} has neither an input nor a recurrent term")
        if bias is False:
            names: tuple[str, ...] = ()
        elif bias is None or bias is True:
            names = (f"b_{gate}",)
        else:
            names = (bias,) if isinstance(bias, str) else tuple(bias)
        biases = [self._param(b, h, h, "bias") for b in names]
        expr = sp.MatAdd(
            *(
                MatrixSymbol(t.left, n, d if t.left == INPUT else h) * self.params[t.weight].symbol
                for t in terms
            ),
            *(OneMatrix(n, 1) * b.symbol for b in biases),
        )
        return self._add(Step(step_name, expr, "linear", tuple(terms), tuple(b.name for b in biases)))

    def let(self, name: str, value: Value) -> Value:
        """Declare the elementwise step ``name = value`` (``value`` of shape (n, h), no matmuls)."""
        if not isinstance(value, Value):
            raise self.error(f"let({name!r}, ...) takes a cell value, got {type(value).__name__} {value!r}")
        value = Value(_hidden(value.expr, self), self)
        if value.expr.shape != (n, h):
            raise self.error(f"{name!r} has shape {_shape_text(value.expr)}, expected (n, h)")
        try:
            scalar_form(value.expr)
        except ValueError as exc:
            raise self.error(f"{name!r}: {exc}") from None
        vectors = tuple(
            sorted(s.name for s in value.expr.atoms(MatrixSymbol) if self._kind(s.name) == "vector")
        )
        return self._add(Step(name, value.expr, "elementwise", vectors=vectors))

    def check(self) -> Cell:
        """Check the whole declaration (every state updated, the output a state); return the cell."""
        names = [s.name for s in self.steps]
        if not self.steps:
            raise CellError(f"cell {self.name!r} declares no steps")
        if OUTPUT not in names:
            raise CellError(
                f"cell {self.name!r}: no step assigns the output state {OUTPUT!r} (c.let({OUTPUT!r}, ...))"
            )
        if OUTPUT not in self.states:
            self.states.append(OUTPUT)  # an output that no step reads back: its h0 is accepted, unused
        steps = {s.name: s for s in self.steps}
        if not any(t.left == INPUT for s in self.steps for t in s.terms):
            raise CellError(f"cell {self.name!r} never reads its input X (declare a gate with c.affine(...))")
        dead = set(unread(self.steps, self.states))
        readers = [s.name for s in self.steps if any(t.left == INPUT for t in s.terms)]
        if all(r in dead for r in readers):
            raise CellError(
                f"cell {self.name!r} never reads its input X: no state depends on the steps that read it "
                f"({', '.join(readers)})"
            )
        for s in self.states:
            if s in steps and steps[s].kind != "elementwise":
                linear = steps[s].kind == "linear"
                what = "a linear step" if linear else f"a row's {steps[s].kind}"
                raise CellError(
                    f"cell {self.name!r}: state {s!r} is {what}; make it elementwise, e.g. "
                    f"c.let({s!r}, identity({'c.affine' if linear else 'c.' + steps[s].kind}(...)))"
                )
            if s not in names:
                raise CellError(
                    f"cell {self.name!r}: state {s!r} is read as {prev_name(s)} but never updated "
                    f"(declare its new value with c.let({s!r}, ...))"
                )
        problem = clash(self)
        if problem:
            raise CellError(f"cell {self.name!r}: {problem}")
        return self

    # ---- helpers
    def _kind(self, name: str) -> str | None:
        p = self.params.get(name)
        return p.kind if p else None

    def _check_name(self, name: object, what: str, pattern: re.Pattern[str] = _NAME) -> None:
        if not isinstance(name, str) or not pattern.match(name) or keyword.iskeyword(name):
            raise self.error(f"{what} name {name!r} must be a lowercase identifier (letters, digits, _)")
        if reserved(name) or keyword.iskeyword(f"d{name}") or re.fullmatch(r".*_(all|x|rows)", name):
            raise self.error(f"{what} name {name!r} is reserved for the generated code; choose another")

    def _param(
        self, name: str, rows: sp.Symbol, cols: sp.Symbol, kind: Literal["weight", "bias", "vector"]
    ) -> Param:
        if (
            not isinstance(name, str)
            or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name)
            or keyword.iskeyword(name)
        ):
            raise self.error(f"parameter name {name!r} must be an identifier")
        if name in self.params:
            raise self.error(f"parameter {name!r} declared twice")
        if reserved(name):
            raise self.error(f"parameter name {name!r} is reserved for the generated code; choose another")
        if name in {s.name for s in self.steps} or name in self.states:
            raise self.error(f"parameter {name!r} clashes with a value of the same name")
        if name in self.inputs:
            raise self.error(
                f"parameter {name!r} has the name of a per-step input (c.input): an input has no gradient "
                "and cannot stand where a learned parameter is needed"
            )
        if name in ("W_hq", "b_q"):
            raise self.error(f"parameter {name!r} belongs to the output head")
        self.params[name] = Param(name, rows, cols, kind)
        return self.params[name]

    def _add(self, step: Step) -> Value:
        self._check_name(step.name, "step")
        known = {INPUT, *map(prev_name, self.states), *(s.name for s in self.steps), *self.inputs}
        if step.name in known:
            raise self.error(f"value {step.name!r} assigned twice")
        if step.name in self.params:
            raise self.error(f"step {step.name!r} has the name of a parameter")
        if step.expr.shape != (n, h):
            raise self.error(f"{step.name} has shape {_shape_text(step.expr)}, expected (n, h)")
        unknown = set(step.inputs) - known
        if unknown:
            raise self.error(
                f"{step.name!r} reads {sorted(unknown)} before it is defined (values come from c.X, c.prev, "
                "c.let and c.affine of this cell)"
            )
        self.steps.append(step)
        return Value(step.symbol, self)
