"""Section 4 of a report: backpropagation through time, from the one-step adjoint of section 3.

Contract: the recurrence is stated with the total adjoint of every state and the message that step t+1
sends back named apart: (B.1) the total, (B.2) the message, for the output state h and (B.1.k), (B.2.k)
for every other state k, whose total adds what reaches k inside its own step through the states computed
after it (:func:`state_totals`, the within-step derivatives of ``analysis.jacobian.within_step``); (B.3)
the gradient of the initial states; (B.4) one pattern for every parameter's sum over t, with a table
read off the derivation and (B.5) the sum written out for the recurrent weight; (B.6) the input gradient;
and what the training demo does: truncated BPTT and clipping, read off ``grusym.train``'s configuration.
"""

from __future__ import annotations

from typing import Any

from ...symbolic.cell import INPUT, OUTPUT, d, n, prev_name
from ..analysis.jacobian import Jacobian, within_step
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Code, Equation, Heading, Math, Para, Table, Text
from .adjoint import rhs, shaped_rhs, under
from .graph import at_step, unrolled

__all__ = ["bptt_section", "recurrent_weight", "state_totals", "vjp_tex"]

_m = Math


def state_totals(c: Context) -> dict[str, list[tuple[str, Jacobian]]]:
    """Per state k: the states j computed after k in one step that depend on it, each with d j_t / d k_t
    (the paths inside the step). The total adjoint of k_t adds, for each, what reached j_t from outside
    the step times that derivative (row vectors: ``u J``)."""
    out: dict[str, list[tuple[str, Jacobian]]] = {}
    for k in c.cell.states:
        parts = []
        for j in c.cell.states:
            if j == k:
                continue
            J = within_step(c.cell, j, k, c.der)
            if J.terms:
                parts.append((j, J))
        out[k] = parts
    return out


def vjp_tex(u: str, J: Jacobian) -> str:
    """The row vector ``u`` times ``J``: each term applied factor by factor (a diagonal is an elementwise
    product, a weight a product with its transpose)."""
    terms = []
    for term in J.terms:
        x, summed = u, "+" in u
        for f in term:
            if f.weight is not None:
                weight = latex.name(f.weight, params=J.params)
                x = (rf"\left({x}\right)" if summed else x) + rf" {weight}^{{\top}}"
                summed = False
            elif f.expr != 1:
                d_tex = latex.elementwise(f.expr, params=J.params)
                d_tex = rf"\left({d_tex}\right)" if f.expr.is_Add else d_tex
                x = (rf"\left({x}\right)" if summed else x) + r" \odot " + d_tex
                summed = False
        terms.append(x)
    return " + ".join(terms)


def recurrent_weight(c: Context) -> Any:
    """The parameter whose sum (B.5) writes out: the recurrent matrix W_hh when the cell has one, else the
    first weight multiplying the previous state, else the first weight (with its contribution)."""
    order = list(c.cell.params)
    weights = sorted(
        (x for x in c.der.contributions if x.kind == "matmul_right"), key=lambda x: order.index(str(x.target))
    )
    own = f"W_h{OUTPUT}"
    for pick in (
        lambda x: x.target == own,
        lambda x: x.left == prev_name(OUTPUT),
        lambda x: True,
    ):
        found = next((x for x in weights if pick(x)), None)
        if found is not None:
            return found
    return None


def _outside(state: str) -> str:
    return r"\delta h_{t}" if state == OUTPUT else latex.message(state)


def bptt_section(c: Context, T: int = 3) -> list[Block]:
    states = c.cell.states
    totals = state_totals(c)
    blocks: list[Block] = [
        Heading(2, "4. Backpropagation through time", "bptt"),
        Para(
            (
                "Unrolled over T steps the cell is one long computation; ",
                _m(r"h_{t}"),
                " is read twice, by the head at step t and by step t+1, so by the sum over paths its total "
                "adjoint has two parts (t = T, ..., 1; nothing arrives from beyond T, ",
                _m(latex.message(OUTPUT).replace("_{t}", "_{T}") + " = 0"),
                "; in the code: ",
                Code("dh = dH[t] + dh_prev"),
                "):",
            )
        ),
        unrolled(c.cell, c.num, T),
    ]
    blocks.append(
        Equation(
            (
                r"\underset{n \times d_{h}}{\delta h_{t}} = \delta^{\mathrm{out}} h_{t} + "
                + latex.message(OUTPUT),
                *("+ " + vjp_tex(_outside(j), J) for j, J in totals[OUTPUT]),
            ),
            "B.1",
        )
    )
    blocks.append(
        Para(
            (
                "The message is what the adjoint of step t+1 sends to its ",
                _m("h_{t}"),
                ": the sum of section 3's lines to ",
                _m(latex.message("h_prev")),
                ", one step later:",
            )
        )
    )
    blocks.append(_message(c, OUTPUT, "B.2"))
    for k in states:
        if k == OUTPUT:
            continue
        name = latex.name(k)
        parts = totals[k]
        blocks.append(
            Para(
                (
                    f"The state {k} has no head. Its total adjoint adds to the message from step t+1 what "
                    "reaches ",
                    _m(name),
                    " inside its own step, through the states computed after it (",
                    _m(", ".join(latex.total(j, k) for j, _ in parts) or "none"),
                    ", chained from section 2; Appendix A prints them); this is the line of section 3 that "
                    "starts from the message:",
                )
            )
        )
        blocks.append(
            Equation(
                (
                    rf"\underset{{n \times d_{{h}}}}{{\delta {name}}} = " + latex.message(k),
                    *("+ " + vjp_tex(_outside(j), J) for j, J in parts),
                ),
                f"B.1.{k}",
            )
        )
        blocks.append(_message(c, k, f"B.2.{k}"))
    blocks += [
        Para(
            (
                "After t = 1 the message is the gradient of the initial state, ",
                Code(", ".join(f'grads["{k}0"]' for k in states)),
                ":",
            )
        ),
        Equation(
            (
                ", \\quad ".join(
                    rf"\delta {k}_{{0}} = " + latex.message(k).replace("_{t}", "_{0}") for k in states
                ),
            ),
            "B.3",
        ),
    ]
    blocks += _parameters(c, T)
    x_parts = [shaped_rhs(x, c) for x in c.der.into(INPUT)]
    if x_parts:
        blocks.append(
            Para(("For float inputs the code also returns ", Code('grads["X"]'), ", one row block per step:"))
        )
        lhs = under(r"\delta X_{t}", (n, d))
        blocks.append(Equation((f"{lhs} = {x_parts[0]}", *("+ " + p for p in x_parts[1:])), "B.6"))
    blocks += _truncation()
    return blocks


def _message(c: Context, state: str, label: str) -> Equation:
    parts = [latex.shifted(rhs(x, c)) for x in c.der.into(prev_name(state))]
    lhs = rf"\underset{{n \times d_{{h}}}}{{{latex.message(state)}}} ="
    return Equation((f"{lhs} {parts[0] if parts else '0'}", *("+ " + p for p in parts[1:])), label)


def _parameters(c: Context, T: int) -> list[Block]:
    rows: list[tuple[Text, ...]] = []
    sources = [*c.der.contributions, *c.head_der.contributions]
    steps = dict.fromkeys(x.source for x in sources if x.target in c.params)
    for step in steps:
        mine = [x for x in sources if x.source == step and x.target in c.params]
        weights: list[Any] = []
        for x in (x for x in mine if x.kind == "matmul_right"):
            left = latex.name(str(x.left), params=c.params)
            weights += [", " if weights else "", _m(f"{latex.name(x.target, params=c.params)} ({left})")]
        biases = [latex.name(x.target, params=c.params) for x in mine if x.kind == "bias"]
        vectors = [x for x in mine if x.kind == "vector"]
        for x in vectors:
            weights += [
                ", " if weights else "",
                _m(latex.name(x.target, params=c.params)),
                " (vector: ",
                _m(rhs(x, c)),
                ")",
            ]
        rows.append(
            (
                (_m(latex.adjoint(step, params=c.params)),),
                tuple(weights) or ("-",),
                (_m(", ".join(biases)),) if biases else ("-",),
            )
        )
    blocks: list[Block] = [
        Heading(3, "Parameter gradients: one pattern"),
        Para(
            (
                "A parameter is read at every step, so its gradient is the sum over t of what section 3 adds "
                "at each step (the code computes each sum as one matrix product over all T n rows). Every "
                "sum has one of two forms: a weight W that multiplies u in a linear step ",
                _m(r"a_{t} = \dots + u_{t} W + \dots"),
                ", and a bias row b of such a step (an elementwise parameter vector is summed over the rows "
                "like a bias, its line of section 3 in place of ",
                _m(r"\delta a_{t}"),
                "):",
            )
        ),
        Equation(
            (
                r"\delta W = \sum_{t=1}^{T} u_{t}^{\top} \delta a_{t}, \qquad "
                r"\delta b = \sum_{t=1}^{T} \mathbf{1}^{\top} \delta a_{t}",
            ),
            "B.4",
        ),
        Table(("the adjoint it collects", "weights W (the u they multiply)", "bias rows b"), tuple(rows)),
    ]
    pick = recurrent_weight(c)
    if pick is not None:
        left = latex.name(str(pick.left), params=c.params)
        step = latex.adjoint(pick.source, params=c.params)
        w = latex.name(pick.target, params=c.params)
        terms = [f"{at_step(t, left)}^{{\\top}} {at_step(t, step)}" for t in range(1, T + 1)]
        blocks += [
            Para(
                (
                    f"Written out for T = {T}, the gradient of ",
                    _m(w),
                    " sums one outer product per step; each ",
                    _m(step),
                    " carries, through ",
                    _m(r"\delta h_{t}"),
                    " and (B.1), the losses of steps t, ..., T, so the sum collects every loss along every "
                    "path back in time:",
                )
            ),
            Equation((rf"\delta {w} = {terms[0]}", *("+ " + x for x in terms[1:])), "B.5"),
        ]
    return blocks


def _truncation() -> list[Block]:
    """What ``grusym train`` does with (B.1)-(B.5), read off its configuration."""
    from ...train.config import make_config

    toy, lm = make_config(), make_config(text="corpus.txt")
    return [
        Heading(3, "Truncated BPTT and clipping, as the training demo does them"),
        Para(
            (
                Code("grusym train"),
                f" runs (B.1)-(B.5) on one batch of T steps at a time (T = {lm.steps} characters and "
                f"n = {lm.batch} rows for a text, T = {toy.steps} and n = {toy.batch} for the toy). With its "
                f"default {lm.sampling} sampling each row of a batch continues where the same row of the "
                "previous batch stopped, and the last states of one batch are the initial states of the "
                "next; but the backward pass of a batch stops at its t = 1: the gradient (B.3) of its "
                "initial states is computed and dropped. This is truncated BPTT: the gradient of the "
                "batch's loss with the state carried in held fixed, so no loss reaches more than T steps "
                "back. Each epoch starts from zero states, at a random offset into the text.",
            )
        ),
        Para(
            (
                "Before each update the gradients of all parameters are clipped together by their global "
                "norm (",
                Code("grusym.train.optim.clip_grads"),
                "), then SGD steps:",
            )
        ),
        Equation(
            (
                r"g \leftarrow g \min\left(1, \frac{\theta}{\lVert g \rVert_{2}}\right), \qquad "
                r"p \leftarrow p - \eta g",
            ),
            "B.7",
        ),
        Para(
            (
                "where g holds the gradients of every parameter p (not of the initial states), ",
                _m(r"\lVert g \rVert_{2}"),
                " is the square root of the sum of the squares of all their elements, ",
                _m(rf"\theta = {lm.clip:g}"),
                " (",
                Code("--clip"),
                ") and ",
                _m(rf"\eta = {lm.lr:g}"),
                " (",
                Code("--lr"),
                "). Clipping changes the length of a step, never its direction: an explosion of the "
                "gradient cannot throw the parameters far in one update.",
            )
        ),
    ]
