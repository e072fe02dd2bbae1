"""Section 2 of a report: the rules of reverse mode and the local derivatives of the cell.

Contract: the rules are derived by index, once: a matrix product and a bias (their results are printed from
``LINEAR_RULES``, the objects the generator applies), an elementwise step, the sum over paths that makes
the adjoint of a value read twice a sum (``+=``), and the gradient of the softmax cross-entropy. Then the
primitive rules SymPy proves from their closed forms, and each elementwise step's partial derivatives as
SymPy derives them and as the code uses them.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
from sympy import MatrixSymbol

from ...symbolic.cell import d, h, n, scalar_form
from ...symbolic.derive import LINEAR_RULES
from ...symbolic.primitives import PRIMITIVES, verify_rules
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Code, Equation, Heading, Math, Para, Table

__all__ = ["LOSS_RULE_TEX", "local_section", "readers"]

LOSS_RULE_TEX = (
    r"\underset{n \times q}{\delta \mathrm{logits}_{t}} = \frac{1}{T n} \left( "
    r"\operatorname{softmax}\left(\mathrm{logits}_{t}\right) - "
    r"\operatorname{onehot}\left(Y_{t}\right) \right)"
)
_m = Math


def _rule(name: str) -> str:
    """The adjoint ``LINEAR_RULES[name]`` gives for Y = A B (or Y = 1 b), printed from the rule itself."""
    A, B, dY = MatrixSymbol("A", n, d), MatrixSymbol("B", d, h), MatrixSymbol("dY", n, h)
    expr = LINEAR_RULES[name](dY) if name == "bias" else LINEAR_RULES[name](dY, A, B)
    return latex.matrix(expr, adjoints={"dY"}, plain=True)


def readers(c: Context, value: str) -> list[int]:
    """The equation numbers of the steps that read ``value``."""
    return [c.num[s.name] for s in c.cell.steps if value in s.inputs]


def local_section(c: Context) -> list[Block]:
    many = readers(c, "h_prev")
    blocks: list[Block] = [
        Heading(2, "2. The rules of reverse mode, and the local derivatives", "local"),
        Heading(3, "A matrix product and an elementwise step, by index"),
        Para(
            (
                "For ",
                _m("Y = A B"),
                ", ",
                _m(r"Y_{ik} = \sum_{j} A_{ij} B_{jk}"),
                ": the entry ",
                _m("A_{ij}"),
                " enters every ",
                _m("Y_{ik}"),
                " of row i, with ",
                _m(r"\partial Y_{ik} / \partial A_{ij} = B_{jk}"),
                ", and ",
                _m("B_{jk}"),
                " enters every ",
                _m("Y_{ik}"),
                " of column k. Summing over what each one enters,",
            )
        ),
        Equation(
            (r"\delta A_{ij} = \sum_{k} \delta Y_{ik} B_{jk}, \quad \delta A = " + _rule("matmul_left"),),
            "R.1",
        ),
        Equation(
            (r"\delta B_{jk} = \sum_{i} A_{ij} \delta Y_{ik}, \quad \delta B = " + _rule("matmul_right"),),
            "R.2",
        ),
        Para(
            (
                "A bias row b added to every row, ",
                _m(r"Y = \mathbf{1} b"),
                " (",
                _m(r"Y_{ik} = b_{k}"),
                " for every i), collects the adjoints of all rows:",
            )
        ),
        Equation((r"\delta b_{k} = \sum_{i} \delta Y_{ik}, \quad \delta b = " + _rule("bias"),), "R.3"),
        Para(
            (
                "An elementwise step ",
                _m("y = f(u)"),
                " computes each ",
                _m("y_{ij} = f(u_{ij})"),
                " from its own ",
                _m("u_{ij}"),
                " alone, so its Jacobian is diagonal and the adjoint is a product of arrays of one shape "
                "(with several arguments, f's partial derivative in each):",
            )
        ),
        Equation(
            (r"\delta u_{ij} = \delta y_{ij} f'\left(u_{ij}\right), \quad \delta u = \delta y \odot f'(u)",),
            "R.4",
        ),
        Heading(3, "The sum over paths"),
        Para(
            (
                "A value read by several steps reaches L along each of them, and the chain rule of several "
                "variables adds the paths: ",
                _m(r"\delta v = \sum_{w \text{ reads } v} \delta w \frac{\partial w}{\partial v}"),
                ". So every adjoint starts at zero and each step that reads the value adds its part: in "
                "section 3 the first part is written with = and the others with ",
                _m(r"\mathrel{+}="),
                (
                    f", as for the state, which steps {', '.join(f'({k})' for k in many)} read. "
                    if len(many) > 1
                    else ". "
                ),
                "A parameter is read at every step, so its gradient is a sum over t (section 4).",
            )
        ),
        Heading(3, "The loss"),
        Para(
            (
                "For one position, with ",
                _m(r"z = \mathrm{logits}_{t,i}"),
                " and target ",
                _m("y = Y_{t,i}"),
                ", the loss is ",
                _m(r"\ell = \log \sum_{k} e^{z_{k}} - z_{y}"),
                "; its derivative in ",
                _m("z_{k}"),
                " is ",
                _m(
                    r"e^{z_{k}} / \sum_{j} e^{z_{j}} - [k = y] = \operatorname{softmax}(z)_{k} - "
                    r"\operatorname{onehot}(y)_{k}"
                ),
                " (the bracket is 1 when k = y, else 0). L is the mean of T n such terms, so",
            )
        ),
        Equation((LOSS_RULE_TEX,), f"{c.num['loss']}.1"),
        Heading(3, "The primitive rules"),
        Para(
            (
                "Each primitive is defined once by its closed form; SymPy differentiates the closed form, "
                "and the generated code uses the rule in terms of the primitive's output ",
                _m("y"),
                ", so the backward pass reuses forward values. SymPy checks that the two agree:",
            )
        ),
        _primitive_table(c),
    ]
    notes = [(Code(p.name), f" at its kinks: {p.convention}.") for p in _proofs(c) if p.convention]
    blocks += [Para(note) for note in notes]
    blocks += [
        Heading(3, "The elementwise steps"),
        Para(
            (
                "The partial derivatives of each elementwise step (R.4), as (n, d_h) arrays (products "
                "elementwise): SymPy differentiates the declared step; the code uses the same expression "
                "with the primitive's output substituted by its name.",
            )
        ),
        _elementwise_table(c),
    ]
    return blocks


def _proofs(c: Context) -> list[Any]:
    kinds = {
        type(f)
        for st in c.cell.steps
        if st.kind == "elementwise"
        for f in scalar_form(st.expr).atoms(sp.Function)
    }
    used = {k.label for k in kinds if k in PRIMITIVES.values()}
    return [p for p in verify_rules() if p.name in used]


def _primitive_table(c: Context) -> Block:
    x = sp.Symbol("x", real=True)
    rows = []
    for proof in _proofs(c):
        fn = PRIMITIVES[proof.name](x)
        closed = fn.rewrite(sp.exp)
        rows.append(
            (
                (_m(f"y = {latex.scalar(fn, plain=True)}"),),
                (_m(latex.scalar(closed, plain=True)),),
                (_m(latex.scalar(proof.derived, plain=True)),),
                (_m(latex.scalar(proof.rule, plain=True)),),
                ("agree" if proof.holds else "DO NOT agree",),
            )
        )
    if not rows:
        return Para(("This cell applies no primitive (its elementwise steps are sums and products).",))
    return Table(
        (
            "primitive",
            "closed form",
            ("derived by SymPy, ", _m(r"\mathrm{d} y / \mathrm{d} x")),
            "rule in y",
            "SymPy",
        ),
        tuple(rows),
    )


def _elementwise_table(c: Context) -> Block:
    rows: list[tuple[tuple[Any, ...], ...]] = []
    by_step: dict[str, list[Any]] = {}
    for ld in c.der.local:
        by_step.setdefault(ld.step, []).append(ld)
    for s in c.cell.steps:
        for ld in sorted(by_step.get(s.name, []), key=lambda ld: (*s.inputs, *s.vectors).index(ld.wrt)):
            partial = (
                rf"\frac{{\partial {latex.name(s.name)}}}{{\partial {latex.name(ld.wrt, params=c.params)}}}"
            )
            rows.append(
                (
                    (f"({c.num[s.name]})",),
                    (_m(partial),),
                    (_m(latex.elementwise(ld.derived, params=c.params)),),
                    (_m(latex.elementwise(ld.used, params=c.params)),),
                )
            )
    if not rows:
        return Para(("This cell has no elementwise step.",))
    return Table(("step", "derivative", "derived by SymPy", "used by the code"), tuple(rows))
