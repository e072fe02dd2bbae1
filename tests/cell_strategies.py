"""Hypothesis strategies over the cell language: drawn *declarations*, as source a user could have written.

A :class:`Declaration` is a small program in the language of ``grusym.symbolic.cell``: ``c.affine`` steps
(with or without the input term, the recurrent term, a bias, two bias rows, a custom name, a left factor that
is another state's prev, an elementwise step or a state's *new* value), ``c.let`` steps over every primitive,
the input ``c.X`` read elementwise (then d == h), sums, differences, Hadamard products, numbers (terms that
cancel: ``0*a``, ``a - a``, ``a + (-1)*a``), (h,) parameter vectors, per-step inputs without gradient
(``c.input``), several states, steps nothing reads and steps read only through another state, rows' means
and sums over the units (``c.mean``, ``c.sum``) and divisions by a value guarded positive (now and then
not: refused). :meth:`Declaration.source` renders it as the text of a cell function (a shrunk failure is
pasted into a regression test as it prints), :meth:`Declaration.function` compiles that text.

The drawn programs are not all valid: now and then a draw breaks a rule of the language (a matmul of a
linear step, a state assigned by a linear step, a state read but never updated, a left factor that is not a
named value, an affine step without any term, X read only by unread steps) so that the refusals are
exercised too. Nothing here knows how grusym derives a cell; the test interprets the same programs in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from grusym.symbolic import cell as language

PRIMITIVES = ("tanh", "sigmoid", "relu", "softplus", "exp", "identity", "hard_sigmoid")
PRIMITIVES += ("softsign", "leaky_relu", "elu", "gelu", "silu")
POSITIVE_ONLY = ("sqrt", "log")  # of an argument the builder proves positive; else refused
NUMPY_SCALARS = ("float32", "float64", "int64")  # numbers written as NumPy scalars (np.float32(0.5))
NUMBERS = (0, 1, 2, -1, 0.5, -0.5, 0.25, 1.5, 3)  # dyadic: the same numbers in every interpreter
EXTRA_STATES = ("s", "m")
# names the generated code uses for itself, which a user might pick too
GENERATED = ("tmp0", "one", "zip", "t", "k0", "g1", "dA", "T", "H")

# an expression: ("step", name) | ("prev", state) | ("vec", name) | ("x",) (the input read elementwise,
# d == h) | ("num", k) | ("prim", name, e) | ("add" | "sub" | "mul", e, e) | ("neg", e) | ("div", e, k) |
# ("abs", e) | ("pow", e, k) | ("npnum", k, "float32" | "float64" | "int64") | ("in", name) (a per-step
# input, c.input) | ("vdiv", e, e) (a value divided by a value, or a number by a value: ("vdiv", ("num",
# k), e)); numbers appear only beside a value
Expr = tuple[Any, ...]


@dataclass(frozen=True)
class Affine:
    """``c.affine(gate, x=, hidden=, recurrent=, bias=, name=)``; hidden None is the default h_prev."""

    gate: str
    x: bool = True
    hidden: Expr | None = None
    recurrent: bool = True
    bias: bool | tuple[str, ...] = True  # True: the default b_<gate>
    name: str | None = None

    @property
    def step(self) -> str:
        return self.name or f"a_{self.gate}"

    @property
    def biases(self) -> tuple[str, ...]:
        if self.bias is True:
            return (f"b_{self.gate}",)
        return () if self.bias is False else tuple(self.bias)


@dataclass(frozen=True)
class Let:
    """``c.let(name, value)``."""

    name: str
    value: Expr

    @property
    def step(self) -> str:
        return self.name


@dataclass(frozen=True)
class Reduce:
    """``name = c.mean(value, name="name")`` (or ``c.sum``): each row's mean (sum) over the units."""

    name: str
    kind: str
    value: Expr
    axis: int = -1  # anything else is refused

    @property
    def step(self) -> str:
        return self.name


Op = Affine | Let | Reduce


def read_expr(op: Op) -> Expr | None:
    """The expression an operation reads: a let's or a reduction's value, an affine step's left factor."""
    return op.hidden if isinstance(op, Affine) else op.value


def _number(k: float) -> str:
    return repr(k)


def render(e: Expr) -> str:
    """The Python text of an expression (fully parenthesised: it reads as the tree it is)."""
    kind = e[0]
    if kind == "step":
        return str(e[1])
    if kind == "prev":
        return f'c.prev("{e[1]}")'
    if kind in ("vec", "in"):
        return str(e[1])
    if kind == "x":
        return "c.X"
    if kind == "num":
        return _number(e[1])
    if kind == "prim":
        return f"{e[1]}({render(e[2])})"
    if kind == "neg":
        return f"(-{render(e[1])})"
    if kind == "div":
        return f"({render(e[1])} / {_number(e[2])})"
    if kind == "abs":
        return f"abs({render(e[1])})"
    if kind == "pow":
        return f"({render(e[1])} ** {e[2]})"
    if kind == "npnum":
        return f"np.{e[2]}({_number(e[1])})"
    if kind == "vdiv":
        return f"({render(e[1])} / {render(e[2])})"
    op = {"add": "+", "sub": "-", "mul": "*"}[kind]
    return f"({render(e[1])} {op} {render(e[2])})"


def vectors_of(e: Expr | None, out: list[str]) -> list[str]:
    if e is None:
        return out
    if e[0] == "vec" and e[1] not in out:
        out.append(e[1])
    for a in e[1:]:
        if isinstance(a, tuple):
            vectors_of(a, out)
    return out


def inputs_of(e: Expr | None, out: list[str]) -> list[str]:
    if e is None:
        return out
    if e[0] == "in" and e[1] not in out:
        out.append(e[1])
    for a in e[1:]:
        if isinstance(a, tuple):
            inputs_of(a, out)
    return out


def prevs_of(e: Expr | None, out: list[str]) -> list[str]:
    if e is None:
        return out
    if e[0] == "prev" and e[1] not in out:
        out.append(e[1])
    for a in e[1:]:
        if isinstance(a, tuple):
            prevs_of(a, out)
    return out


@dataclass(frozen=True)
class Declaration:
    """A drawn cell: its operations in declaration order."""

    ops: tuple[Op, ...]

    def vectors(self) -> list[str]:
        out: list[str] = []
        for op in self.ops:
            vectors_of(read_expr(op), out)
        return out

    def inputs(self) -> list[str]:
        out: list[str] = []
        for op in self.ops:
            inputs_of(read_expr(op), out)
        return out

    def states(self) -> list[str]:
        """The states in the order the builder declares them (first read), the output h last if unread."""
        out: list[str] = []
        for op in self.ops:
            if isinstance(op, Affine):
                if op.recurrent and op.hidden is None and "h" not in out:
                    out.append("h")
                prevs_of(op.hidden if op.recurrent else None, out)
            else:
                prevs_of(op.value, out)  # a let's or a reduction's
        return out if "h" in out else [*out, "h"]

    def source(self, name: str = "drawn") -> str:
        lines = [f"def {name}(c):"]
        lines += [f'    {v} = c.vector("{v}")' for v in self.vectors()]
        lines += [f'    {u} = c.input("{u}")' for u in self.inputs()]
        for op in self.ops:
            if isinstance(op, Let):
                lines.append(f'    {op.name} = c.let("{op.name}", {render(op.value)})')
                continue
            if isinstance(op, Reduce):
                axis = "" if op.axis == -1 else f", axis={op.axis}"
                lines.append(f'    {op.name} = c.{op.kind}({render(op.value)}, name="{op.name}"{axis})')
                continue
            args = [f'"{op.gate}"']
            if not op.x:
                args.append("x=False")
            if not op.recurrent:
                args.append("recurrent=False")
            elif op.hidden is not None:
                args.append(f"hidden={render(op.hidden)}")
            if op.bias is False:
                args.append("bias=False")
            elif op.bias is not True:
                args.append(f"bias={op.bias!r}")
            if op.name is not None:
                args.append(f'name="{op.name}"')
            lines.append(f"    {op.step} = c.affine({', '.join(args)})")
        return "\n".join(lines) + "\n"

    def function(self, name: str = "drawn") -> Any:
        """The cell function the source defines."""
        namespace: dict[str, Any] = {p: getattr(language, p) for p in PRIMITIVES + POSITIVE_ONLY}
        namespace["np"] = np
        exec(compile(self.source(name), f"<{name}>", "exec"), namespace)
        return namespace[name]


def _chance(draw: Any, percent: int) -> bool:
    """True with about ``percent`` % probability; shrinks to True."""
    return draw(st.integers(0, 99)) < percent


def _rarely(draw: Any, percent: int) -> bool:
    """True with about ``percent`` % probability; shrinks to False (a rare choice is not the simple one)."""
    return draw(st.integers(0, 99)) >= 100 - percent


def tricky_names(ops: list[Op] | tuple[Op, ...], states: list[str]) -> list[str]:
    """Names that meet names of the module generated for ``ops``: adjoints, prevs, initial states, a
    step's products and cached sequences, a parameter's transpose and gradient, the generator's own."""
    names = [f"d{op.step}" for op in ops] + [f"{s}_prev" for s in states] + [f"{s}0" for s in states]
    for op in ops:
        if isinstance(op, Affine):
            names += [f"{op.step}_{render(op.hidden)}" if op.hidden and op.hidden[0] == "step" else
                      f"{op.step}_h_prev", f"W_x{op.gate}_T", f"dW_h{op.gate}", f"R_{op.step}"]  # fmt: skip
        else:
            names += [f"{op.step}_all", f"S_{op.step}"]
    return names + list(GENERATED)


def _rename(e: Expr, old: str, new: str) -> Expr:
    if e[0] == "vec" and e[1] == old:
        return ("vec", new)
    return tuple(_rename(a, old, new) if isinstance(a, tuple) else a for a in e)


def _leaf(draw: Any, fresh: list[Expr], values: list[Expr]) -> Expr:
    """A value in scope, half the time one nothing has read yet (so fewer steps end up unread)."""
    if fresh and _chance(draw, 50):
        return draw(st.sampled_from(fresh))
    return draw(st.sampled_from(values))


@st.composite
def expressions(draw: Any, fresh: list[Expr], values: list[Expr], depth: int) -> Expr:
    """A value expression over ``values`` (the leaves in scope), at most ``depth`` operators deep."""
    if depth == 0 or _chance(draw, 30):
        return _leaf(draw, fresh, values)
    kinds = ["prim", "add", "mul", "prim", "sub", "number", "prim", "neg", "div", "cancel"]  # 3 in 10: prim
    kinds += ["prim", "positive", "abs", "pow", "vdiv"]
    kind = draw(st.sampled_from(kinds))
    sub = expressions(fresh, values, depth - 1)
    if kind == "prim":
        return ("prim", draw(st.sampled_from(PRIMITIVES)), draw(sub))
    if kind == "abs":
        return ("abs", draw(sub))
    if kind == "positive":  # sqrt or log of an argument the builder proves positive (now and then not)
        fn, e = draw(st.sampled_from(POSITIVE_ONLY)), draw(sub)
        if _rarely(draw, 5):
            return ("prim", fn, e)  # refused
        guard = draw(st.sampled_from(["softplus", "sigmoid", "exp"]))
        return (
            "prim",
            fn,
            ("add", ("prim", guard, e), ("num", 0.25)),  # they underflow to 0: a number keeps it positive
        )
    if kind == "pow":  # integer powers; negative ones of a positive base (now and then not: refused)
        k = draw(st.sampled_from([2, 3, -1, -2]))
        e = draw(sub)
        if k < 0 and not _rarely(draw, 10):
            e = ("add", ("prim", "sigmoid", e), ("num", 0.5))
        return ("pow", e, k)
    if kind == "vdiv":  # by a value guarded positive (now and then not: refused); now and then k / value
        top: Expr = ("num", draw(st.sampled_from([1, 0.5, -2]))) if _rarely(draw, 20) else draw(sub)
        den = draw(sub)
        if not _rarely(draw, 8):
            guard = draw(st.sampled_from(["softplus", "sigmoid", "exp", "square", "sqrt of a square"]))
            if guard in ("square", "sqrt of a square"):
                den = ("add", ("pow", den, 2), ("num", 0.25))
                den = ("prim", "sqrt", den) if guard == "sqrt of a square" else den
            else:
                den = ("add", ("prim", guard, den), ("num", 0.25))  # they underflow to 0: + a number
        return ("vdiv", top, den)
    if kind in ("add", "mul", "sub"):
        return (kind, draw(sub), draw(sub))
    if kind == "number":  # a number beside a value, on either side of +, -, *
        op = draw(st.sampled_from(["mul", "add", "sub"]))
        k: Expr = ("num", draw(st.sampled_from(NUMBERS)))
        if _rarely(draw, 25):  # as a NumPy scalar (np.int64 of whole numbers only)
            scalar = draw(st.sampled_from(NUMPY_SCALARS if float(k[1]).is_integer() else NUMPY_SCALARS[:2]))
            k = ("npnum", k[1], scalar)
        e = draw(sub)
        return (op, k, e) if _chance(draw, 50) else (op, e, k)
    if kind == "neg":
        return ("neg", draw(sub))
    if kind == "div":
        return ("div", draw(sub), draw(st.sampled_from([k for k in NUMBERS if k != 0])))
    e = draw(sub)  # terms that cancel
    form = draw(st.sampled_from(["a - a", "0*a", "a + (-1)*a"]))
    if form == "a - a":
        return ("sub", e, e)
    if form == "0*a":
        return ("mul", ("num", 0), e)
    return ("add", e, ("mul", ("num", -1), e))


def _reads(e: Expr | None) -> set[str]:
    if e is None:
        return set()
    found = {e[1]} if e[0] == "step" else set()
    for a in e[1:]:
        if isinstance(a, tuple):
            found |= _reads(a)
    return found


@st.composite
def _affine(
    draw: Any, gate: str, name: str | None, x: bool, prevs: list[Expr], ops: list[Op], states: list[str]
) -> Affine:
    recurrent = _chance(draw, 75) or not x  # an affine step without any term: rarely (below)
    if not x and _rarely(draw, 20):
        recurrent = False  # refused
    hidden = None
    if recurrent and _rarely(draw, 60):
        elementwise = [("step", op.step) for op in ops if not isinstance(op, Affine)]  # reductions too
        linear = [("step", op.step) for op in ops if isinstance(op, Affine)]
        new_states = [e for e in elementwise if e[1] in states]
        pick = draw(st.integers(0, 99))
        if new_states and pick < 50:  # a state's new value: two layers inside one step
            hidden = draw(st.sampled_from(new_states))
        elif pick >= 95 and linear:  # a linear step as the left factor: refused
            hidden = draw(st.sampled_from(linear))
        elif pick >= 90:  # not a named value: refused
            hidden = ("mul", ("num", 2), draw(st.sampled_from(prevs)))
        elif pick >= 89:  # a per-step input: refused (inputs are read elementwise only)
            hidden = ("in", "u0")
        else:  # another state's prev or an elementwise step
            hidden = draw(st.sampled_from(prevs + elementwise))
    bias_pick = draw(st.integers(0, 9))
    bias: bool | tuple[str, ...] = True
    if bias_pick >= 8:
        bias = False
    elif bias_pick >= 6:
        tricky = _rarely(draw, 10)
        bias = (f"b{gate}_ih", draw(st.sampled_from(tricky_names(ops, []))) if tricky else f"b{gate}_hh")
    return Affine(gate, x, hidden, recurrent, bias, name)


@st.composite
def declarations(draw: Any, max_body: int = 4, depth: int = 3) -> Declaration:
    """A cell of 1 to ``max_body`` steps besides its states' updates (h and up to two more states)."""
    extra = list(EXTRA_STATES[: draw(st.sampled_from([0, 1, 2, 2]))])
    states = ["h", *extra]
    body = draw(st.integers(1, max_body))
    kinds = ["body"] * body
    for s in reversed(states):  # mostly after the body (so they read it); now and then amid it
        kinds.insert(draw(st.integers(0, len(kinds))) if _rarely(draw, 40) else len(kinds), s)
    last_body = max(i for i, k in enumerate(kinds) if k == "body")
    need_x = not _rarely(draw, 5)  # else the cell may never read X: refused
    ops: list[Op] = []
    vectors = [("vec", f"w{i}") for i in range(2)]
    x_leaf = [("x",)] if _rarely(draw, 25) else []  # X read elementwise (SRU's highway, a residual)
    # per-step inputs without gradient (c.input: a zoneout mask, a time delta), one or two
    in_leaves = [("in", f"u{i}") for i in range(1 + _rarely(draw, 30))] if _rarely(draw, 35) else []
    fresh: list[str] = []  # steps nothing has read yet
    for i, kind in enumerate(kinds):
        has_x = any(isinstance(op, Affine) and op.x for op in ops)
        prevs = [("prev", s) for s in states]
        leaves = [("step", op.step) for op in ops] + prevs + vectors[: 1 + _rarely(draw, 30)] + x_leaf
        leaves += in_leaves * 2  # read often enough to matter when declared
        if kind == "body":
            affine = _chance(draw, 55) or (need_x and not has_x and i == last_body)
        else:
            affine = _rarely(draw, 4)  # a state assigned by a linear step: refused
        if kind == "body" and not affine and _rarely(draw, 15):  # a row's mean or sum over the units
            steps = [e for e in leaves if e[0] == "step"]
            if steps and _chance(draw, 60):  # a named value, then (mostly) centred below: x - mean(x)
                value = draw(st.sampled_from(steps))
            else:
                value = draw(expressions([("step", f) for f in fresh], leaves, depth - 1))
                if _chance(draw, 30):  # a variance-like mean of squares
                    value = ("pow", value, 2)
            axis = 0 if _rarely(draw, 3) else -1  # the batch axis: refused
            op: Op = Reduce(f"r{len(ops)}", draw(st.sampled_from(["mean", "sum"])), value, axis)
        elif affine:
            gate = f"f{sum(isinstance(op, Affine) for op in ops)}"
            name = kind if kind != "body" else (f"p{gate[1:]}" if _rarely(draw, 15) else None)
            x = _chance(draw, 75) or (need_x and not has_x)
            op = draw(_affine(gate, name, x, prevs, ops, states))
        else:
            name = kind if kind != "body" else f"v{len(ops)}"
            if kind == "body" and _rarely(draw, 3):
                tricky = [t for t in tricky_names(ops, states) if t.islower() and t not in states]
                name = draw(st.sampled_from(tricky))
            value = draw(expressions([("step", f) for f in fresh], leaves, depth))
            if _rarely(draw, 2):  # a state read but never updated: refused
                value = ("add", value, ("prev", "u"))
            op = Let(name, value)
        read = _reads(read_expr(op))
        fresh = [f for f in fresh if f not in read] + [op.step]
        ops.append(op)
        if isinstance(op, Reduce) and op.value[0] == "step" and _chance(draw, 80):  # centred: x - mean(x)
            centred = Let(f"v{len(ops)}", ("sub", op.value, ("step", op.step)))
            ops.append(centred)
            fresh = [f for f in fresh if f != op.step] + [centred.step]
    _read_centred(ops)
    if need_x:
        _read_x(ops)
    if _rarely(draw, 4):  # a vector named like something of the generated module
        new = draw(st.sampled_from(tricky_names(ops, states)))
        ops = [Let(op.name, _rename(op.value, "w1", new)) if isinstance(op, Let) else op for op in ops]
    return Declaration(tuple(ops))


def _read_centred(ops: list[Op]) -> None:
    """A centred value x - mean(x) nothing reads is read by the next state update after it (a layer norm's
    shape: else it is pruned, and the adjoint a reduction adds to x's would rarely meet another one)."""
    states = Declaration(tuple(ops)).states()
    for i, op in enumerate(ops):
        centred = isinstance(op, Let) and i > 0 and isinstance(ops[i - 1], Reduce)
        if not centred or any(op.step in _reads(read_expr(o)) for o in ops[i + 1 :]):
            continue
        j = next(
            (j for j in range(i + 1, len(ops)) if isinstance(ops[j], Let) and ops[j].step in states), None
        )
        if j is not None:
            update = ops[j]
            assert isinstance(update, Let)
            ops[j] = Let(update.name, ("add", update.value, ("step", op.step)))


def _read_x(ops: list[Op]) -> None:
    """Make a state read an input projection if none does yet (else the cell is refused): the last state
    update adds the last input projection before it, or a new one declared just before it."""
    states = Declaration(tuple(ops)).states()
    live = set(states)
    for op in reversed(ops):
        if op.step in live:
            live |= _reads(read_expr(op))
    if any(isinstance(op, Affine) and op.x and op.step in live for op in ops):
        return
    last = max((i for i, op in enumerate(ops) if isinstance(op, Let) and op.name in states), default=None)
    if last is None:
        return
    before = [o.step for o in ops[:last] if isinstance(o, Affine) and o.x]
    if not before:
        gate = f"f{sum(isinstance(op, Affine) for op in ops)}"
        ops.insert(last, Affine(gate))
        before, last = [f"a_{gate}"], last + 1
    update = ops[last]
    assert isinstance(update, Let)
    ops[last] = Let(update.name, ("add", update.value, ("step", before[-1])))


def features(decl: Declaration) -> set[str]:
    """The constructs of the language a declaration uses (the fuzzer checks it reaches every one)."""
    found: set[str] = set()

    def walk(e: Expr) -> None:
        kind = e[0]
        if kind == "prim":
            found.add(f"primitive {e[1]}")
        elif kind == "vec":
            found.add("vector")
        elif kind == "x":
            found.add("X read elementwise")
        elif kind == "in":
            found.add("per-step input")
        elif kind == "num":
            found.add("number")
        elif kind in ("neg", "div"):
            found.add({"neg": "negation", "div": "division by a number"}[kind])
        elif kind == "abs":
            found.add("abs()")
        elif kind == "pow":
            found.add("negative power" if e[2] < 0 else "integer power")
        elif kind == "npnum":
            found.add("numpy scalar")
        elif kind == "vdiv":
            found.add("number over a value" if e[1][0] == "num" else "division by a value")
        if kind == "sub" and e[1] == e[2]:
            found.add("cancels: a - a")
        if kind == "mul" and e[1] == ("num", 0):
            found.add("cancels: 0*a")
        if kind == "add" and e[2] == ("mul", ("num", -1), e[1]):
            found.add("cancels: a + (-1)*a")
        if kind in ("add", "sub", "mul"):
            found.add({"add": "sum", "sub": "difference", "mul": "product"}[kind])
        for a in e[1:]:
            if isinstance(a, tuple):
                walk(a)

    lets = {op.name for op in decl.ops if isinstance(op, Let)}
    for op in decl.ops:
        if isinstance(op, Let):
            walk(op.value)
            continue
        if isinstance(op, Reduce):
            walk(op.value)
            found.add(f"row {op.kind}")
            continue
        flags = {
            "affine": True,
            "x=False": not op.x,
            "recurrent=False": not op.recurrent,
            "bias=False": op.bias is False,
            "two bias rows": isinstance(op.bias, tuple),
            "affine name=": op.name is not None,
        }
        found |= {k for k, v in flags.items() if v}
        if op.recurrent and op.hidden is not None and op.hidden[0] == "prev" and op.hidden[1] != "h":
            found.add("matmul of another state's prev")
        if op.recurrent and op.hidden is not None and op.hidden[0] == "step" and op.hidden[1] in lets:
            states = decl.states()
            found.add("matmul of a state's new value" if op.hidden[1] in states else "matmul of a step")
    found |= {f"{len(decl.states())} states"}
    return found
