"""Sections 1-4 of a report: the forward equations, the local derivatives, the adjoint of one step, BPTT.

Contract: every equation is read off the :class:`~grusym.report.context.Context` (the cell declaration, its
:class:`~grusym.symbolic.derive.Derivation`, the rule proofs, ``LINEAR_RULES`` and the equation numbers);
nothing is typed here but the loss, a runtime primitive whose rule the tests prove. Every adjoint line
carries the shapes of its factors (``\\underset``).
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp
from sympy import MatrixSymbol

from ...symbolic.cell import INPUT, OUTPUT, STATE, Cell, Step, d, h, n, prev_name, q, scalar_form
from ...symbolic.derive import LINEAR_RULES, Contribution
from ...symbolic.primitives import PRIMITIVES, verify_rules
from ...symbolic.variants import HEAD_PARAMS
from ..context import SIZES, Context
from ..render import latex
from ..render.blocks import Block, Code, Equation, Heading, Math, Para, Table, Text
from ..sources import TUTORIALS
from .graph import one_step, unrolled

__all__ = ["adjoint_section", "bptt_section", "forward_section", "local_section", "parameter_count", "rhs"]

LOSS_TEX = (
    r"L = \frac{1}{T n} \sum_{t=1}^{T} \sum_{i=1}^{n} \left( \log \sum_{k=1}^{q} "
    r"\exp\left(\mathrm{logits}_{t,ik}\right) - \mathrm{logits}_{t,i Y_{t,i}} \right)"
)
LOSS_RULE_TEX = (
    r"\underset{n \times q}{\delta \mathrm{logits}_{t}} = \frac{1}{T n} \left( "
    r"\operatorname{softmax}\left(\mathrm{logits}_{t}\right) - "
    r"\operatorname{onehot}\left(Y_{t}\right) \right)"
)


def _m(tex: str) -> Math:
    return Math(tex)


def forward_section(c: Context) -> list[Block]:
    v = c.subject
    blocks: list[Block] = [
        Heading(2, "1. Forward equations", "forward"),
        Para(
            (
                "One step of the cell, applied for ",
                _m("t = 1, \\dots, T"),
                " from the given ",
                _m("h_{0}"),
                ". Rows are the n examples of the batch; ",
                _m(r"\odot"),
                " is the elementwise product and ",
                _m(r"\sigma"),
                " the logistic sigmoid, both applied elementwise; a bias row is added to every row. ",
                *(("Reset gate: ", v.reset, ". ") if v.reset else ()),
                *(("Update: ", Code(v.update), ". ") if v.update else ()),
                "The numbers are the ones the generated code cites in its comments.",
            )
        ),
    ]
    for s in c.cell.steps:
        blocks.append(Equation((c.eq(s),), str(c.num[s.name])))
    blocks.append(Equation((latex.step_equation(c.head_step, c.params),), str(c.num["logits"])))
    blocks.append(Equation((LOSS_TEX,), str(c.num["loss"])))
    blocks.append(
        Para(
            (
                "The head ",
                f"({c.num['logits']})",
                " and the loss ",
                f"({c.num['loss']})",
                " are shared by every variant: the mean softmax cross-entropy over all T n positions, ",
                _m("Y_{t,i}"),
                " being the target id of example i at step t.",
            )
        )
    )
    rows: list[tuple[Text, ...]] = [
        ((_m("X_{t}"),), ("(n, d)",), ("input of step t; token ids (n,) stand for one-hot rows of width d",)),
        *(
            (
                (_m(latex.name(prev_name(k))),),
                ("(n, d_h)",),
                ("state entering step t" + (f" ({k})" if k != OUTPUT else ""),),
            )
            for k in c.cell.states
        ),
    ]
    for s in c.cell.steps:
        what = (
            "new state"
            if s.name in c.cell.states
            else ("pre-activation" if s.kind == "linear" else "intermediate")
        )
        if s.name in c.primitives:
            what = "gate" if c.primitives[s.name].__name__ == "Sigmoid" else f"{what} (tanh output)"
        rows.append(
            ((_m(latex.name(s.name)),), ("(n, d_h)",), (f"({c.num[s.name]}) ", what, " ", Code(s.name)))
        )
    rows.append(
        ((_m(latex.name("logits")),), ("(n, q)",), (f"({c.num['logits']}) scores of the next token",))
    )
    rows.append(((_m("Y_{t}"),), ("(n,)",), ("target ids",)))
    blocks += [Table(("value", "shape", "what"), tuple(rows))]
    dims = ((n, "batch size"), (d, "input width (vocabulary size)"), (h, "hidden size"), (q, "output width"))
    blocks.append(
        Para(
            (
                "The letter h names the state (and, as a subscript, what belongs to it: ",
                _m("W_{hz}"),
                " multiplies the state); the hidden size is ",
                _m("d_{h}"),
                ". Sizes of the two running examples: the toy of ",
                TUTORIALS["000"],
                ", and the character language model of ",
                TUTORIALS["003"],
                ":",
            )
        )
    )
    blocks.append(
        Table(
            ("dimension", "meaning", "toy", "d2l char LM"),
            tuple(
                ((_m(latex.dim(sym)),), (meaning,), (str(SIZES["toy"][sym]),), (str(SIZES["d2l"][sym]),))
                for sym, meaning in dims
            ),
        )
    )
    blocks.append(_parameter_table(c))
    blocks += [
        Heading(3, "The computational graph"),
        Para(
            (
                "Generated from the declaration: every value is a node (its equation number in brackets), "
                "every edge carries the local derivative of its target with respect to its "
                "source (section 2; ",
                _m("W^{\\top}"),
                " for a product with W). Reverse mode multiplies these along every path from L "
                "back to a value.",
            )
        ),
        one_step(c.cell, c.der, c.num),
        unrolled(c.cell, c.der, c.num, 3),
    ]
    return blocks


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


def _parameter_table(c: Context) -> Table:
    uses = _param_uses(c.cell, c.head_step, c.num)
    rows: list[tuple[tuple[Any, ...], ...]] = []
    shapes = _shapes(c.cell)
    for p, shape in shapes.items():
        rows.append(
            (
                (Code(p),),
                (_m(latex.name(p, params=c.params)),),
                (latex.shape_text(shape),),
                (", ".join(f"({k})" for k in uses[p]),),
                (str(_count(shape, SIZES["toy"])),),
                (str(_count(shape, SIZES["d2l"])),),
            )
        )
    total = parameter_count(c.cell)
    rows.append(
        (
            ("total",),
            (_m(sp.latex(total).replace("h", "d_{h}")),),
            ("",),
            ("",),
            (str(total.subs(SIZES["toy"])),),
            (str(total.subs(SIZES["d2l"])),),
        )
    )
    return Table(("parameter", "symbol", "shape", "used in", "toy", "d2l"), tuple(rows))


def parameter_count(cell: Cell) -> sp.Expr:
    """Number of scalars in the cell's and the head's parameters, in d, h, q."""
    return sp.expand(sum((sp.Mul(*s) for s in _shapes(cell).values()), sp.Integer(0)))


# ---- (2) local derivatives


def local_section(c: Context) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "2. Local derivatives", "local"),
        Heading(3, "The primitive rules"),
        Para(
            (
                "Each primitive is defined once by its closed form; SymPy differentiates the closed form and "
                "the generated code uses the rule in terms of the primitive's output ",
                _m("y"),
                ", so the backward pass reuses forward values. SymPy checks that the two agree:",
            )
        ),
    ]
    x = sp.Symbol("x", real=True)
    kinds = {
        type(f)
        for st in c.cell.steps
        if st.kind == "elementwise"
        for f in scalar_form(st.expr).atoms(sp.Function)
    }
    used = {k.label for k in kinds if k in PRIMITIVES.values()} | {"sigmoid", "tanh"}  # always those
    for proof in (p for p in verify_rules() if p.name in used):
        closed = PRIMITIVES[proof.name](x).rewrite(sp.exp)
        fn = latex.scalar(PRIMITIVES[proof.name](x), plain=True)
        blocks.append(
            Equation(
                (
                    f"y = {fn} = {latex.scalar(closed, plain=True)}, \\qquad \\frac{{dy}}{{dx}} = "
                    f"{latex.scalar(proof.derived, plain=True)} = {latex.scalar(proof.rule, plain=True)}",
                )
            )
        )
        verdict = "the difference simplifies to 0" if proof.holds else "the difference does NOT simplify to 0"
        blocks.append(Para((Code(proof.name), f": {verdict}.")))
        if proof.convention:  # not differentiable everywhere: say what the rule does at the kinks
            blocks.append(Para((Code(proof.name), f" at its kinks: {proof.convention}.")))
    blocks += [
        Heading(3, "Elementwise steps"),
        Para(
            (
                "An elementwise step acts on each element independently, so its Jacobian is diagonal; the "
                "table gives that diagonal as an (n, d_h) array (products elementwise, as in section 3). "
                "SymPy differentiates the declared step; the code uses the same expression with the "
                "primitive's output substituted by its name.",
            )
        ),
    ]
    rows: list[tuple[tuple[Any, ...], ...]] = []
    by_step: dict[str, list[Any]] = {}
    for ld in c.der.local:
        by_step.setdefault(ld.step, []).append(ld)
    for s in c.cell.steps:
        for ld in sorted(by_step.get(s.name, []), key=lambda ld: (*s.inputs, *s.vectors).index(ld.wrt)):
            partial = rf"\frac{{\partial {latex.name(s.name)}}}{{\partial {latex.name(ld.wrt)}}}"
            rows.append(
                (
                    (f"({c.num[s.name]})",),
                    (_m(partial),),
                    (_m(latex.elementwise(ld.derived, params=c.params)),),
                    (_m(latex.elementwise(ld.used, params=c.params)),),
                )
            )
    blocks.append(Table(("step", "derivative", "derived by SymPy", "used by the code"), tuple(rows)))
    blocks += [
        Heading(3, "Matrix products and biases"),
        Para(
            (
                "Linear steps use the rules of ",
                Code("LINEAR_RULES"),
                ", one line each (proved on explicit matrices by the tests):",
            )
        ),
    ]
    A, B = MatrixSymbol("A", n, d), MatrixSymbol("B", d, h)
    dY = MatrixSymbol("dY", n, h)
    forward = {"matmul_left": "Y = A B", "matmul_right": "Y = A B", "bias": r"Y = \mathbf{1} b"}
    target = {"matmul_left": r"\delta A", "matmul_right": r"\delta B", "bias": r"\delta b"}
    rows = []
    for rule, adjoint in LINEAR_RULES.items():
        expr = adjoint(dY) if rule == "bias" else adjoint(dY, A, B)
        rows.append(
            (
                (Code(rule),),
                (_m(forward[rule]),),
                (_m(f"{target[rule]} = {latex.matrix(expr, adjoints={'dY'}, plain=True)}"),),
            )
        )
    blocks.append(Table(("rule", "forward", "adjoint"), tuple(rows)))
    return blocks


# ---- (3) adjoint of one step


def _under(tex: str, dims: tuple[sp.Basic, ...]) -> str:
    return rf"\underset{{{latex.shape(dims)}}}{{{tex}}}"


def _lhs(contrib: Contribution, c: Context, assigned: set[str]) -> str:
    """``\\delta v =`` for a first contribution within the step, ``+=`` otherwise and for parameters."""
    target = _under(latex.adjoint(contrib.target, params=c.params), c.shape(contrib.target))
    op = r"\mathrel{+}=" if contrib.target in assigned or contrib.target in c.params else "="
    assigned.add(contrib.target)
    return f"{target} {op}"


def rhs(contrib: Contribution, c: Context) -> str:
    if contrib.kind == "elementwise":
        return latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
    if contrib.kind == "vector":  # an (h,) parameter vector: the elementwise product summed over the rows
        inner = latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
        return rf"\mathbf{{1}}^{{\top}} \left({inner}\right)"
    return latex.matrix(contrib.expr, params=c.params, adjoints=c.adjoints)


def shaped_rhs(contrib: Contribution, c: Context) -> str:
    """The right-hand side with the shape of every matrix factor under it (elementwise: all (n, d_h))."""
    if contrib.kind == "elementwise":
        return rhs(contrib, c)
    if contrib.kind == "vector":
        inner = latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
        return _under(r"\mathbf{1}^{\top}", (1, n)) + r" \; " + _under(rf"\left({inner}\right)", (n, h))
    source = _under(latex.adjoint(contrib.source, params=c.params), c.shape(contrib.source))
    if contrib.kind == "bias":
        rows = c.shape(contrib.source)[0]
        return _under(r"\mathbf{1}^{\top}", (1, rows)) + r" \; " + source
    weight = str(contrib.weight)
    if contrib.kind == "matmul_left":
        r, k = c.shape(weight)
        return source + r" \; " + _under(latex.name(weight, params=c.params) + r"^{\top}", (k, r))
    left = str(contrib.left)
    r, k = c.shape(left)
    return _under(latex.name(left, params=c.params) + r"^{\top}", (k, r)) + r" \; " + source


def adjoint_section(c: Context) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "3. Adjoint equations of one step", "adjoint"),
        Para(
            (
                "Reverse mode writes ",
                _m(r"\delta v = \partial L / \partial v"),
                " for every value v (the code's ",
                Code("dv"),
                "). Given ",
                _m(r"\delta h_{t}"),
                ", the adjoint of step t visits the forward equations in reverse; equation (N.k) is the k-th "
                "contribution produced by the adjoint of (N), and the code's comment ",
                Code("# (N) grad of: ..."),
                " marks the block that computes it. A value read by several steps sums its contributions (",
                _m(r"\mathrel{+}="),
                "); parameter gradients accumulate over t (section 4). Under each factor: its shape "
                "(every elementwise line is n by d_h throughout).",
            )
        ),
        Para(
            (
                "The head and the loss come first; they give every ",
                _m(r"h_{t}"),
                " its direct part ",
                _m(r"\delta^{\mathrm{out}} h_{t}"),
                " (the code's ",
                Code("dH[t]"),
                "), to which section 4 adds what step t+1 sends back:",
            )
        ),
        Equation((LOSS_RULE_TEX,), f"{c.num['loss']}.1"),
    ]
    assigned: set[str] = set()
    for k, contrib in enumerate(c.head_der.contributions, start=1):
        blocks.append(
            Equation((f"{_lhs(contrib, c, assigned)} {shaped_rhs(contrib, c)}",), f"{c.num['logits']}.{k}")
        )
    assigned = set()
    for s in reversed(c.cell.steps):
        contribs = c.der.out_of(s.name)
        if not contribs:
            continue
        blocks.append(Para((f"Adjoint of ({c.num[s.name]}) ", _m(c.eq(s)), ":")))
        for k, contrib in enumerate(contribs, start=1):
            blocks.append(
                Equation((f"{_lhs(contrib, c, assigned)} {shaped_rhs(contrib, c)}",), f"{c.num[s.name]}.{k}")
            )
    return blocks


# ---- (4) BPTT and the Jacobian


def _sum_over_t(contribs: list[Contribution], c: Context) -> tuple[str, ...]:
    return tuple(
        ("+ " if i else "") + rf"\sum_{{t=1}}^{{T}} {shaped_rhs(k, c)}" for i, k in enumerate(contribs)
    )


def _other_states(c: Context) -> list[Block]:
    """The BPTT recurrence of every state but h (the LSTM's c): no head part, only what step t+1 sends."""
    out: list[Block] = []
    for k in c.cell.states:
        if k == OUTPUT:
            continue
        parts = [latex.shifted(rhs(x, c)) for x in c.der.into(prev_name(k))]
        lhs = rf"\underset{{n \times d_{{h}}}}{{\delta {latex.name(k)}}} ="
        out += [
            Para(
                (
                    f"The state {k} has no head: what reaches ",
                    Math(rf"\delta {latex.name(k)}"),
                    " from later steps is what step t+1 sends back (the adjoint of step t, section 3, then "
                    "adds the contributions of the steps that read it within step t):",
                )
            ),
            Equation((f"{lhs} {parts[0] if parts else '0'}", *("+ " + p for p in parts[1:])), f"B.1.{k}"),
        ]
    return out


def _initial_tex(c: Context) -> str:
    if len(c.cell.states) == 1:
        return r"\delta h_{0} = \delta h_{1} J_{1}"
    names = ", ".join(rf"\delta {k}_{{0}}" for k in c.cell.states)
    return rf"\left({names}\right) = \delta s_{{1}} J_{{1}}"


def bptt_section(c: Context) -> list[Block]:
    into_state = c.der.into(STATE)
    parts = [rhs(k, c) for k in into_state]
    head = next(k for k in c.head_der.contributions if k.target == "H")
    blocks: list[Block] = [
        Heading(2, "4. Backpropagation through time", "bptt"),
        Para(
            (
                "Step t+1 sends ",
                _m(r"\delta h_{t}"),
                " the sum of section 3's contributions to its ",
                _m("h_{t-1}"),
                "; with the head's direct part ",
                _m(r"\delta^{\mathrm{out}} h_{t}"),
                f" ({c.num['logits']}.{c.head_der.contributions.index(head) + 1}) this is the BPTT "
                "recurrence for the total ",
                _m(r"\delta h_{t}"),
                ", run for t = T, ..., 1 with nothing arriving from beyond T (in the code: ",
                Code("dh = dH[t] + dh_prev"),
                "):",
            )
        ),
        Equation(
            (
                r"\underset{n \times d_{h}}{\delta h_{t}} = \delta^{\mathrm{out}} h_{t}",
                *("+ " + latex.shifted(p) for p in parts),
            ),
            "B.1",
        ),
        *_other_states(c),
        Para(
            (
                "The second part is linear in ",
                _m(r"\delta h_{t+1}"),
                ": it equals ",
                _m(r"\delta h_{t+1} J_{t+1}"),
                " with the one-step Jacobian J below, so the code never forms J. After t = 1 the same sum "
                "is the gradient of the initial state, ",
                Code(", ".join(f'grads["{k}0"]' for k in c.cell.states)),
                ":",
            )
        ),
        Equation((_initial_tex(c),), "B.2"),
        Para(
            (
                "Every parameter is shared by all steps, so its gradient is the sum over t of its one-step "
                "contributions (the code computes each sum as one matrix product over all T n rows):",
            )
        ),
    ]
    k = 3
    for p in [*c.cell.params, *HEAD_PARAMS]:
        contribs = c.der.into(p) or [x for x in c.head_der.contributions if x.target == p]
        lhs = _under(latex.adjoint(p, params=c.params), c.shape(p))
        sums = _sum_over_t(contribs, c)
        blocks.append(Equation((f"{lhs} = {sums[0]}", *sums[1:]), f"B.{k}"))
        k += 1
    x_parts = [shaped_rhs(x, c) for x in c.der.into(INPUT)]
    blocks.append(Para(("For float inputs the code also returns ", Code('grads["X"]'), ", one per step:")))
    lhs = _under(r"\delta X_{t}", (n, d))
    blocks.append(Equation((f"{lhs} = {x_parts[0]}", *("+ " + p for p in x_parts[1:])), f"B.{k}"))
    return blocks
