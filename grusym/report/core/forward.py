"""The opening of a report: the notation, and section 1, the forward equations with shapes, parameters and the
computational graph of one step.

Contract: every equation is read off the :class:`~grusym.report.context.Context` (the cell declaration and
the equation numbers the generated code cites); nothing is typed here but the loss, a runtime primitive
whose rule section 2 derives. The notation is stated once, before any index or symbol is used: time steps
count from 1 (step t = 1 reads ``X[0]``; ``h_0`` is the initial state), and so do rows, columns and elements.
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp

from ...symbolic.cell import OUTPUT, Cell, Step, d, h, n, prev_name, q
from ..context import SIZES, Context
from ..render import latex
from ..render.blocks import Block, Bullets, Code, Equation, Heading, Math, Para, Table
from ..sources import TUTORIALS
from .adjoint import displays
from .graph import one_step

__all__ = ["LOSS_TEX", "forward_section", "notation_section", "parameter_count", "parameter_table"]

LOSS_TEX = (
    r"L = \frac{1}{T n} \sum_{t=1}^{T} \sum_{i=1}^{n} \left( \log \sum_{k=1}^{q} "
    r"\exp\left(\mathrm{logits}_{t,ik}\right) - \mathrm{logits}_{t,i Y_{t,i}} \right)"
)
_m = Math


def _initial(c: Context) -> str:
    """``h_{0}`` or ``h_{0}, c_{0}``: the initial states, in state order."""
    return ", ".join(f"{k}_{{0}}" for k in c.cell.states)


def notation_section(c: Context) -> list[Block]:
    """What every index and symbol means, said once before section 1 uses them."""
    states = c.cell.states
    several = len(states) > 1
    return [
        Heading(2, "Notation", "notation"),
        Bullets(
            (
                (
                    "Time steps are counted from 1: step ",
                    _m("t = 1, \\dots, T"),
                    " reads the input ",
                    _m("X_{t}"),
                    " (the code's ",
                    Code("X[t-1]"),
                    ": step 1 is computed from ",
                    Code("X[0]"),
                    ") and the state ",
                    _m(", ".join(latex.name(prev_name(k)) for k in states)),
                    "; ",
                    _m(_initial(c)),
                    (
                        " are the initial states (the code's "
                        if several
                        else " is the initial state (the code's "
                    ),
                    Code(", ".join(f"{k}0" for k in states)),
                    "). Rows, columns and elements are counted from 1 too; the examples of a batch are the "
                    "rows i = 1, ..., n of every array.",
                ),
                (
                    _m(r"\odot"),
                    " is the elementwise product, ",
                    _m(r"v^{\odot 2} = v \odot v"),
                    "; ",
                    _m(r"\sigma(x) = 1 / (1 + e^{-x})"),
                    ", tanh and the other primitives act elementwise; ",
                    _m(r"\operatorname{diag}(v)"),
                    " is the diagonal matrix with v on its diagonal; ",
                    _m(r"\mathbf{1}"),
                    " is a column of n ones, so ",
                    _m(r"\mathbf{1} b"),
                    " repeats the row b on every row and ",
                    _m(r"\mathbf{1}^{\top} Y"),
                    " sums the rows of Y.",
                ),
                (
                    "softmax and onehot act on each row: ",
                    _m(r"\operatorname{softmax}(z)_{k} = e^{z_{k}} / \sum_{j} e^{z_{j}}"),
                    ", and ",
                    _m(r"\operatorname{onehot}(Y_{t})"),
                    " is the n by q matrix with a 1 in column ",
                    _m("Y_{t,i}"),
                    " of row i and zeros elsewhere.",
                ),
                (
                    _m(r"\delta v = \partial L / \partial v"),
                    " is the total adjoint of a value v, over every path from v to L (the code's ",
                    Code("dv"),
                    "). Its parts are named apart: ",
                    _m(r"\delta^{\mathrm{out}} h_{t}"),
                    " comes from step t's own output (the code's ",
                    Code("dH[t]"),
                    "), and ",
                    _m(latex.message(states[0])),
                    " is the message step t+1 sends back to the state it reads.",
                ),
                (
                    _m(r"\partial v / \partial u"),
                    " is the partial derivative of one forward equation, its other arguments held fixed; ",
                    _m(r"\mathrm{d} v_{t} / \mathrm{d} u_{t-1}"),
                    " is the total derivative through a whole step (a block of the one-step Jacobian, "
                    "Appendix A).",
                ),
            )
        ),
    ]


def forward_section(c: Context) -> list[Block]:
    v = c.subject
    blocks: list[Block] = [
        Heading(2, "1. Forward equations", "forward"),
        Para(
            (
                "One step of the cell, applied for ",
                _m("t = 1, \\dots, T"),
                " from the given initial state" + ("s " if len(c.cell.states) > 1 else " "),
                _m(_initial(c)),
                ". Each row of an array is one example of the batch, and a bias row is added to every row. ",
                *(("Reset gate: ", v.reset, ". ") if v.reset else ()),
                *(("Update: ", Code(v.update), ". ") if v.update else ()),
                "The numbers are the ones the generated code cites in its comments.",
            )
        ),
    ]
    lines = [(c.eq(s), str(c.num[s.name])) for s in c.cell.steps]
    lines.append((latex.step_equation(c.head_step, c.params), str(c.num["logits"])))
    blocks += displays(lines)
    blocks.append(Equation((LOSS_TEX,), str(c.num["loss"])))
    blocks.append(
        Para(
            (
                f"The head ({c.num['logits']}) and the loss ({c.num['loss']}) are shared by every cell: the "
                "mean softmax cross-entropy over all T n positions, ",
                _m("Y_{t,i}"),
                " being the target id of example i at step t.",
            )
        )
    )
    recurrent = next(
        (
            t.weight
            for s in c.cell.steps
            if s.kind == "linear"
            for t in s.terms
            if t.left == prev_name(OUTPUT)
        ),
        None,
    )
    groups: dict[tuple[Any, ...], list[str]] = {}
    for p, shape in _shapes(c.cell).items():
        groups.setdefault(shape, []).append(p)
    listing: list[Any] = []
    for i, (shape, names) in enumerate(groups.items()):
        dims = ", ".join(latex.dim(x) for x in shape) + ("," if len(shape) == 1 else "")
        listing += [
            "; " if i else "",
            _m(f"({dims})"),
            ": ",
            _m(", ".join(latex.name(p, params=c.params) for p in names)),
        ]
    total = parameter_count(c.cell)
    sizes = _sizes(c.cell)
    toy, d2l = (
        {k: sizes[size][sym] for k, sym in (("n", n), ("d", d), ("h", h), ("q", q))} for size in SIZES
    )
    inputs = "d = d_h = {h}, q = {q}" if c.cell.x_steps else "d = q = {d}, d_h = {h}"
    blocks.append(
        Para(
            (
                "Every value of the step is an n by ",
                _m("d_{h}"),
                " array, one row per example, with the hidden size ",
                _m("d_{h}"),
                " (the letter h names the state, and as a subscript what belongs to it",
                *(
                    (": ", _m(latex.name(recurrent, params=c.params)), " multiplies the state")
                    if recurrent
                    else ()
                ),
                "); ",
                _m("X_{t}"),
                " is n by d (token ids stand for one-hot rows of width d), ",
                _m(r"\mathrm{logits}_{t}"),
                " is n by q, and ",
                _m("Y_{t}"),
                " holds the n target ids. ",
                *_held_fixed(c.cell),
                "The parameters, by shape: ",
                *listing,
                "; ",
                _m(sp.latex(total).replace("h", "d_{h}")),
                f" numbers in all: {total.subs(sizes['toy'])} for the toy of ",
                TUTORIALS["000"],
                f" (n = {toy['n']}, {inputs.format(**toy)}) and {total.subs(sizes['d2l'])} for the "
                "character language model of ",
                TUTORIALS["003"],
                f" (n = {d2l['n']}, {inputs.format(**d2l)}). Appendix C lists them one by one.",
            )
        )
    )
    blocks += [
        Heading(3, "The computational graph of one step"),
        Para(
            (
                "Generated from the declaration: every value is a node (its equation number in brackets), "
                "every edge carries the local derivative of its target with respect to its source "
                "(section 2; ",
                _m(r"W^{\top}"),
                " for a product with W). Reverse mode multiplies these along every path from L back to a "
                "value and adds the paths up.",
            )
        ),
        one_step(c.cell, c.der, c.num),
    ]
    return blocks


def _held_fixed(cell: Cell) -> tuple[Any, ...]:
    """The sentence on the per-step inputs (c.input) of a cell that has them: given, held fixed."""
    if not cell.inputs:
        return ()
    names = _m(", ".join(latex.name(k) for k in cell.inputs))
    return (
        names,
        " (n by ",
        _m("d_{h}"),
        ") is given for every step (the argument aux of the generated functions): a constant of the "
        "derivation, with no adjoint and no gradient. ",
    )


def _param_uses(cell: Cell, head_step: Step, num: dict[str, int]) -> dict[str, list[int]]:
    uses: dict[str, list[int]] = {}
    for s in [*cell.steps, head_step]:
        for p in [t.weight for t in s.terms] + list(s.biases) + list(s.vectors):
            uses.setdefault(p, []).append(num[s.name])
    return uses


def _count(shape: tuple[sp.Symbol, ...], size: dict[sp.Symbol, int]) -> int:
    return math.prod(size[s] for s in shape)


def _shapes(cell: Cell) -> dict[str, tuple[sp.Symbol, ...]]:
    out = {p.name: ((p.rows, p.cols) if p.kind == "weight" else (p.cols,)) for p in cell.params.values()}
    return out | {"W_hq": (h, q), "b_q": (q,)}


def _sizes(cell: Cell) -> dict[str, dict[Any, int]]:
    """The two examples' sizes; a cell that reads X elementwise runs only at d == d_h, so there d is d_h."""
    return {k: {**v, d: v[h]} if cell.x_steps else v for k, v in SIZES.items()}


def parameter_table(c: Context) -> Table:
    uses = _param_uses(c.cell, c.head_step, c.num)
    sizes = _sizes(c.cell)
    rows: list[tuple[tuple[Any, ...], ...]] = []
    for p, shape in _shapes(c.cell).items():
        rows.append(
            (
                (_m(latex.name(p, params=c.params)),),
                (latex.shape_text(shape),),
                (", ".join(f"({k})" for k in uses[p]),),
                (str(_count(shape, sizes["toy"])),),
                (str(_count(shape, sizes["d2l"])),),
            )
        )
    total = parameter_count(c.cell)
    rows.append(
        (
            ("total",),
            (_m(sp.latex(total).replace("h", "d_{h}")),),
            ("",),
            (str(total.subs(sizes["toy"])),),
            (str(total.subs(sizes["d2l"])),),
        )
    )
    return Table(("parameter", "shape", "used in", "toy", "d2l"), tuple(rows))


def parameter_count(cell: Cell) -> sp.Expr:
    """Number of scalars in the cell's and the head's parameters, in d, h, q."""
    return sp.expand(sum((sp.Mul(*s) for s in _shapes(cell).values()), sp.Integer(0)))
