"""Section 3 of a report: the adjoint of one step, every line with the shapes of its factors.

Contract: the lines are the derivation's own contributions (``Derivation.out_of``), in reverse step order,
numbered (N.k) after forward equation (N). Left-hand sides follow the notation: a contribution to a
previous state is the message ``\\delta^{next} h_{t-1}`` the step sends back; the first contribution to a
state the step computes and also reads (the LSTM's c) adds to what reached it from outside the step, so
that line shows the total; parameters accumulate over t (``+=``).
"""

from __future__ import annotations

import sympy as sp

from ...symbolic.cell import OUTPUT, h, n, prev_name
from ...symbolic.derive import Contribution
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Code, Equation, Heading, Lines, Math, Para
from ..render.width import LABEL_EX, MAX_EX, width

__all__ = ["adjoint_section", "displays", "lhs_name", "outside", "rhs", "shaped_rhs", "under"]

_m = Math


def under(tex: str, dims: tuple[sp.Basic, ...]) -> str:
    return rf"\underset{{{latex.shape(dims)}}}{{{tex}}}"


def outside(c: Context, state: str) -> str:
    """What reaches the state's new value from outside its step: ``\\delta^{out} h_t + \\delta^{next} h_t``
    for the output state, the message ``\\delta^{next} c_t`` for any other."""
    nxt = latex.message(state)
    return rf"\delta^{{\mathrm{{out}}}} h_{{t}} + {nxt}" if state == OUTPUT else nxt


def lhs_name(c: Context, target: str) -> str:
    """The left-hand side's symbol: a message for a previous state, else the adjoint."""
    prevs = {prev_name(k): k for k in c.cell.states}
    if target in prevs:
        return latex.message(target)
    return latex.adjoint(target, params=c.params)


def _lhs(contrib: Contribution, c: Context, assigned: set[str]) -> str:
    """``name =`` for a first contribution within the step, ``+=`` otherwise and for parameters; the first
    contribution to a state the step computes starts from what reached it from outside the step."""
    target = under(lhs_name(c, contrib.target), c.shape(contrib.target))
    first = contrib.target not in assigned
    assigned.add(contrib.target)
    if contrib.target in c.params or not first:
        return rf"{target} \mathrel{{+}}="
    if contrib.target in c.cell.states:
        return f"{target} = {outside(c, contrib.target)} +"
    return f"{target} ="


def rhs(contrib: Contribution, c: Context) -> str:
    if contrib.kind == "elementwise":
        return latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
    if contrib.kind == "vector":  # an (h,) parameter vector: the elementwise product summed over the rows
        inner = latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
        return rf"\mathbf{{1}}^{{\top}} \left({inner}\right)"
    if contrib.kind in ("mean", "sum"):  # reduce.RULES: the adjoint times M^T = M
        return f"{latex.adjoint(contrib.source, params=c.params)} {latex.name(f'<{contrib.kind}>')}"
    return latex.matrix(contrib.expr, params=c.params, adjoints=c.adjoints)


def shaped_rhs(contrib: Contribution, c: Context) -> str:
    """The right-hand side with the shape of every matrix factor under it (elementwise: all (n, d_h))."""
    if contrib.kind == "elementwise":
        return rhs(contrib, c)
    if contrib.kind == "vector":
        inner = latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
        return under(r"\mathbf{1}^{\top}", (1, n)) + r" \; " + under(rf"\left({inner}\right)", (n, h))
    source = under(latex.adjoint(contrib.source, params=c.params), c.shape(contrib.source))
    if contrib.kind in ("mean", "sum"):
        return source + r" \; " + under(latex.name(f"<{contrib.kind}>"), (h, h))
    if contrib.kind == "bias":
        rows = c.shape(contrib.source)[0]
        return under(r"\mathbf{1}^{\top}", (1, rows)) + r" \; " + source
    weight = str(contrib.weight)
    if contrib.kind == "matmul_left":
        r, k = c.shape(weight)
        return source + r" \; " + under(latex.name(weight, params=c.params) + r"^{\top}", (k, r))
    left = str(contrib.left)
    r, k = c.shape(left)
    return under(latex.name(left, params=c.params) + r"^{\top}", (k, r)) + r" \; " + source


def adjoint_section(c: Context) -> list[Block]:
    states = c.cell.states
    given = ", ".join([r"\delta h_{t}", *(latex.message(k) for k in states if k != OUTPUT)])
    blocks: list[Block] = [
        Heading(2, "3. The adjoint of one step", "adjoint"),
        Para(
            (
                "Given what reaches step t's state from outside the step, ",
                _m(given),
                " (section 4), the adjoint of step t visits the forward equations in reverse and applies "
                "(R.1)-(R.4) to each. Equation (N.k) is the k-th line produced by the adjoint of (N), and "
                "the generated code's comment ",
                Code("# (N) grad of: ..."),
                " marks the block that computes it. Under each factor: its shape (an elementwise line is n "
                "by d_h throughout). What a line sends to the previous state is the message ",
                _m(latex.message("h_prev")),
                *((", ", _m(latex.message(prev_name(states[1])))) if len(states) > 1 else ()),
                "; section 4 adds it up.",
            )
        ),
        Para(
            (
                "The head comes first: with ",
                _m(r"\delta \mathrm{logits}_{t}"),
                f" from ({c.num['loss']}.1), it gives ",
                _m(r"h_{t}"),
                " the part ",
                _m(r"\delta^{\mathrm{out}} h_{t}"),
                " of its adjoint (the code's ",
                Code("dH[t]"),
                "):",
            )
        ),
    ]
    assigned: set[str] = set()
    head = [
        (f"{_lhs(x, c, assigned)} {shaped_rhs(x, c)}", f"{c.num['logits']}.{k}")
        for k, x in enumerate(c.head_der.contributions, start=1)
    ]
    blocks += displays(head)
    assigned = set()
    explained = False
    for s in reversed(c.cell.steps):
        contribs = c.der.out_of(s.name)
        if not contribs:
            continue
        blocks.append(Para((f"Adjoint of ({c.num[s.name]}) ", _m(c.eq(s)), ":")))
        lines = [
            (f"{_lhs(x, c, assigned)} {shaped_rhs(x, c)}", f"{c.num[s.name]}.{k}")
            for k, x in enumerate(contribs, start=1)
        ]
        blocks += displays(lines)
        if s.kind in ("mean", "sum") and not explained:
            blocks.append(_reduction_words(c, s.kind, s.name, s.inputs[0]))
            explained = True
    return blocks


def _reduction_words(c: Context, kind: str, m: str, v: str) -> Para:
    """Why a reduction's adjoint is the reduction again, in words, at its first line."""
    M = latex.name(f"<{kind}>")
    dm, dv = latex.adjoint(m, params=c.params), latex.adjoint(v, params=c.params)
    share = "the same share, 1/d_h of it" if kind == "mean" else "all of it"
    return Para(
        (
            f"A row's {kind}: every entry of ",
            _m(latex.name(m)),
            f" in a row is the {kind} of that row's d_h entries of ",
            _m(latex.name(v)),
            ", so each entry of the row moves every entry of the row's result by ",
            "1/d_h" if kind == "mean" else "1",
            ". Its adjoint collects, from every column, ",
            share,
            ": ",
            _m(rf"{dv} \mathrel{{+}}= {dm} {M}"),
            ", the row sums of ",
            _m(dm),
            " spread back evenly over the units (the matrix is symmetric, so multiplying by its transpose "
            "is the same reduction: the rule of grusym.symbolic.reduce.RULES, the code's ",
            Code(f"rt.row_{kind}"),
            ").",
            *(
                " A centring step x - mean(x) therefore sends back its adjoint with that adjoint's own row "
                "mean taken off, which is why a layer norm's gradient has zero mean over the units of each "
                "row."
                for _ in range(kind == "mean")
            ),
        )
    )


def displays(lines: list[tuple[str, str]]) -> list[Block]:
    """Numbered lines in one display when every line fits the column with its label, else one each."""
    if all(width(tex) + LABEL_EX <= MAX_EX for tex, _ in lines):
        return [Lines(tuple(lines))]
    return [Equation((tex,), label) for tex, label in lines]
