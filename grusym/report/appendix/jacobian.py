"""Section 4's second half: the one-step Jacobian in closed form and what it says about vanishing gradients.

Contract: the closed form is ``jacobian.jacobian`` of the cell; the uniform bound (J.1) is
``Jacobian.uniform_bound``; the sufficient condition for vanishing (J.2) is that bound below 1 (Pascanu,
Mikolov and Bengio 2013 state it for the plain RNN as ``||W_hh||_2 < 1 / gamma``); the expansion at
initialisation (J.3) is ``expansion.expand``. Every claim is printed next to the number the build measured
(``figures.json``: ``expansion``, ``gradient_norms`` and ``escape``).
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from ...symbolic.cell import STATE
from ...symbolic.primitives import PRIMITIVES
from ..analysis.derived import bound_timeout, expansion, keep_gate, uniform_terms
from ..analysis.expansion import NotExpandableError
from ..analysis.jacobian import SIGN, BoundTerm, Jacobian, value_ranges
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Bullets, Code, Equation, Heading, Math, Para, Table, Text
from ..render.width import MAX_EX, width
from ..sources import TUTORIALS
from .jtex import block_lhs, display, label_suffix, parts, term_tex
from .sections import figure

__all__ = ["jacobian_section"]

_NORM = {"2": "2", "1": "1", "inf": r"\infty"}


def _sig(x: float) -> str:
    return f"{x:.3g}"


def _e(x: float) -> str:
    return f"{x:.2e}"


def _bound_tex(terms: list[BoundTerm], c: Context) -> tuple[str, ...]:
    parts = []
    for bt in terms:
        factors = [] if bt.coef == 1 and (bt.norms or bt.unbounded) else [latex.scalar(bt.coef, plain=True)]
        for norms in bt.norms:
            text = " + ".join(
                rf"\lVert {latex.name(p, params=c.params)} \rVert_{{{_NORM[k]}}}" for p, k in norms
            )
            factors.append(rf"\left({text}\right)" if len(norms) > 1 else text)
        factors += [
            rf"\lVert {latex.name(v, params=c.params)} \rVert_{{\infty}}" if v.isidentifier() else v
            for v in bt.unbounded
        ]
        parts.append(" ".join(factors))
    return tuple(("+ " if i else "") + p for i, p in enumerate(parts))


def _limit_note(J: Jacobian) -> str:
    if J.is_identity():
        return "the state is copied: the gradient passes unchanged, whatever the weights"
    if not J.terms:
        return "the gradient to the previous state is cut"
    if all(any(f.weight for f in t) for t in J.terms):
        return "only paths through weight matrices remain, as in a plain RNN"
    return "a weight-free path remains next to the weight paths"


def _limits(c: Context, names: list[Equation]) -> list[Block]:
    limits: list[tuple[str, str, tuple[str, str], Jacobian]] = []  # (where, note, block, J there)
    for g, kind in c.primitives.items():
        sym = sp.Symbol(g, real=True)
        values: tuple[Any, ...] = (1, 0) if kind is PRIMITIVES["sigmoid"] else (SIGN,)
        for value in values:
            at = f"{latex.name(g)} = " + (str(value) if value is not SIGN else r"\epsilon = \pm 1")
            for key, J in c.blocks.items():
                if key[0] != key[1]:
                    continue  # several states: each state's own block
                Jg = J.at({sym: value})
                if len(c.blocks) > 1 and Jg == J:
                    continue  # a block the value does not enter
                note = _limit_note(Jg) if value is not SIGN else f"saturated {g}: {_limit_note(Jg)}"
                limits.append((at, note, key, Jg))
    if not limits:
        return [
            Para(("This cell has no gate or tanh step that could saturate, so there are no limits to take.",))
        ]
    intro = "Limits, elementwise (each substituted into the closed form"
    intro += (
        "; with several states, of each state's own block, those a value does not enter left out):"
        if len(c.blocks) > 1
        else "):"
    )
    inline = [rf"{at}: \quad {block_lhs(c, key)} = {Jg.tex()}" for at, _, key, Jg in limits]
    # inline math breaks between terms only: every term must fit a line of text
    pieces = [
        (rf"{at}: \quad {block_lhs(c, key)} = " if i == 0 else "") + term_tex(Jg, t)
        for at, _, key, Jg in limits
        for i, t in enumerate(Jg.terms)
    ]
    # several states: each limit names its block by a fraction, too tall and wide for a line of text
    if len(c.blocks) == 1 and all(width(p) <= 0.75 * MAX_EX for p in pieces):
        return [
            Para((intro,)),
            Bullets(tuple((Math(m), f" ({lim[1]})") for m, lim in zip(inline, limits, strict=True))),
        ]
    blocks: list[Block] = [Para((intro,))]  # too wide for a line of text: one display each
    for at, note, key, Jg in limits:
        blocks += [Para((Math(at), f" ({note}):")), *display(Jg, f"{block_lhs(c, key)} =", "", names)]
    return blocks


def recurrent_label(c: Context, data: dict[str, Any], cell: str | None = None) -> str:
    """The name of the spectral norm column: ||W_hh||_2, or the weights on J's paths side by side."""
    names = data["gradient_norms"].get("recurrent_weights", {}).get(cell or c.name, ["W_hh"])
    if len(names) == 1:
        return f"||{names[0]}||_2"
    return "||[" + " ".join(names) + "]||_2" if names else "||W_hh||_2 (none)"


def norm_text(x: float | None) -> str:
    """A measured norm, or '-' where the cell has no such matrix (or the bound is data dependent: nan)."""
    return "-" if x is None or x != x else _sig(x)


def _condition(c: Context, data: dict[str, Any]) -> list[Block]:
    """(J.2): the bound below 1 forces vanishing; what it says at the measured scales."""
    gn = data["gradient_norms"]
    rows = []
    for scale, b in gn["bounds"][c.name].items():
        u, m = b["uniform_bound"], b["measured_range_bound"]
        says = (
            "vanishing certified"
            if u is not None and u < 1
            else ("certified on this run" if m < 1 else "says nothing")
        )
        rows.append(
            (
                (scale,),
                (norm_text(gn["W_hh_spectral_norm"][c.name][scale]),),
                (norm_text(u),),
                (norm_text(m),),
                (_sig(gn["per_step"][c.name][scale]),),
                (says,),
            )
        )
    # a weight-free path that the bound cannot push below 1 (a gate's diagonal, sup 1)
    uniform = uniform_terms(c.cell) or []
    direct = any(bt.coef >= 1 and not bt.norms and not bt.unbounded for bt in uniform)
    notes: list[Any] = []
    if not data["gradient_norms"].get("recurrent_weights", {}).get(c.name, ["W_hh"]):
        notes.append(
            "This cell has no recurrent weight matrix (its recurrence is elementwise), so the norm column "
            "is empty. "
        )
    if bound_timeout(c.cell):
        notes.append("There is no uniform bound (J.1) to evaluate (shown as -). ")
    elif any(bt.unbounded for bt in uniform):
        notes.append(
            "A factor of (J.1) is a value without a proved range, so the uniform bound is data dependent "
            "(shown as -); the bound along the trajectory uses its measured values. "
        )
    return [
        Para(
            (
                "A sufficient condition for vanishing (the form Pascanu, Mikolov and Bengio "
                "2013 give for the "
                "plain RNN, ",
                Math(r"\lVert W_{hh} \rVert_{2} \gamma"),
                " below 1 with ",
                Math(r"\gamma"),
                " bounding the activation's derivative): if ",
                Math(r"\lVert J_{t} \rVert_{2} \le \eta"),
                " for every t with some ",
                Math(r"\eta"),
                " below 1, then",
            )
        ),
        Equation((r"\lVert \delta h_{t-k} \rVert_{2} \le \eta^{k} \lVert \delta h_{t} \rVert_{2}",), "J.2"),
        Para(
            (
                "so with ",
                Math(r"\eta"),
                " the bound (J.1) the gradient vanishes at least geometrically. ",
                (
                    "Because of the weight-free path the bound over the full ranges is at least 1, so for "
                    "this cell it never certifies vanishing; with each diagonal's supremum replaced by its "
                    "largest value along the measured trajectory (a bound for those states only) it can. "
                    if direct
                    else ""
                ),
                *notes,
                "At the measured scales (d_h = 16, the toy text, ",
                Code("init_params"),
                " seed 0; the per-step factor is ",
                Math(r"(\lVert \delta h_{0} \rVert / \lVert \delta h_{T} \rVert)^{1/T}"),
                ", T = 40):",
            )
        ),
        Table(
            (
                "scale s",
                recurrent_label(c, data),
                "bound (J.1)",
                "bound along the trajectory",
                "measured factor",
                "what (J.2) says",
            ),
            tuple(rows),
        ),
    ]


def _expansion(c: Context, data: dict[str, Any]) -> list[Block]:
    try:
        blocks = expansion(c.cell)
    except NotExpandableError as err:
        return [
            Para(
                (
                    "At initialisation. With weights drawn from ",
                    Math(r"N(0, s^{2})"),
                    " and zero biases every pre-activation is O(s), but no expansion of (J) is printed or "
                    f"measured for this cell: {err}.",
                )
            )
        ]
    measured = data["expansion"]
    order = f"O(s^{{{measured['order']}}})"
    rows = []
    for r in measured["rows"]:
        rows.append(
            (
                (f"{r['scale']:g}",),
                (_e(r["first_order_terms"]),),
                (_e(r["error_zeroth"]),),
                (_e(r["error_without_diagonal"]),),
                (_e(r["error_first"]),),
                (f"{r['observed_order']:.2f}" if "observed_order" in r else "-",),
            )
        )
    return [
        Para(
            (
                "At initialisation. With weights drawn from ",
                Math(r"N(0, s^{2})"),
                ", zero biases and ",
                Math("h_{0} = 0"),
                " (",
                Code("init_params"),
                "), every pre-activation and the state are O(s). Expanding every diagonal factor of (J) in "
                "them (SymPy, from the declaration; a weight matrix counts one power of s) and keeping the "
                f"terms of order 0 and 1, the first dropped term is of order {measured['order']}:",
            )
        ),
        *(
            Equation(parts(e.kept, f"{block_lhs(c, key)} =", rf" + {order}"), "J.3" + label_suffix(c, key))
            for key, e in blocks.items()
        ),
        Para(
            (
                "Measured along the trajectory (the largest spectral norm over all T n rows; J the closed "
                "form, checked against finite differences in section 7): the size of the first-order terms, "
                "the error of the zeroth-order part alone, of the expansion without its diagonal first-order "
                "terms, and of (J.3); the last column is the slope of log error against log s:",
            )
        ),
        Table(
            (
                "s",
                "||first-order terms||",
                "||J - order 0||",
                "||J - (J.3) without diagonals||",
                "||J - (J.3)||",
                "order",
            ),
            tuple(rows),
        ),
    ]


def _escape(c: Context, data: dict[str, Any], missing: frozenset[str]) -> list[Block]:
    curves = data["escape"]["curves"]
    cfg = data["escape"]["config"]
    rows = []
    for v, entries in curves.items():
        for e in entries:
            rows.append(
                (
                    (Code(v),),
                    (e["label"],),
                    (_sig(e["sigmoid_b"]) if "sigmoid_b" in e else "-",),
                    (_sig(e["per_step"]),),
                    (_sig(e["mean_J_radius"]),),
                    (_sig(e["mean_J_norm"]),),
                    (_sig(e["measured_range_bound"]),),
                )
            )
    keep = keep_gate(c.cell)
    what: Text
    direct = [t for (a, b), J in c.blocks.items() if a == b for t in J.terms if not any(f.weight for f in t)]
    if keep is None and direct:
        what = (
            "The weight-free path of this cell is not a single gate with a bias of its own, so there is no "
            "bias to set and the figure shows the initial and the trained run only.",
        )
    elif keep is None:
        what = (
            "This cell has no weight-free path, so no gate can hold the gradient: its per-step factor is set "
            "by the weights, as for the plain RNN.",
        )
    else:
        gate, bias, sign = keep
        what = (
            "The weight-free path carries ",
            Math(latex.name(gate) if sign > 0 else f"1 - {latex.name(gate)}"),
            f"; setting {bias} = {'' if sign > 0 else '-'}b makes it carry about sigma(b) at initialisation, "
            "and the measured per-step factor follows: it approaches sigma(b) as b grows, and the gradient "
            "no longer decays like 0.5^k. This is the escape from vanishing that the "
            "weight-free path allows.",
        )
        mine = curves[c.name]
        trained = next(e for e in mine if e["bias"] is None)
        zero = next(e for e in mine if e["bias"] == 0)
        opened = trained["per_step"] > zero["per_step"]
        what += (
            (" After training" if opened else " Training on the toy did not open it:")
            + f" the factor is {_sig(trained['per_step'])} against {_sig(zero['per_step'])} at b = 0.",
        )
    return [
        Heading(3, "The escape from vanishing, measured"),
        Para(
            (
                *what,
                f" Gradient norms at weight scale s = {cfg['scale']} (d_h = 16, T = 40) and after "
                f"{cfg['train_steps']} full-batch SGD steps (learning rate {cfg['lr']}) on the toy text from "
                "scale 0.01; dotted lines: the spectral radius of the mean J_t along each run, "
                "to the power k:",
            )
        ),
        figure("escape.png", "The escape from vanishing: gradient norm against distance.", missing),
        Table(
            (
                "cell",
                "run",
                "sigma(b)",
                "measured factor",
                "rho(mean J)",
                "||mean J||_2",
                "bound along the trajectory",
            ),
            tuple(rows),
        ),
    ]


def jacobian_section(c: Context, missing: frozenset[str] = frozenset()) -> list[Block]:
    ranges = value_ranges(c.cell)
    names: list[Equation] = []  # diagonals too wide to print in place, defined by name
    v = "h" if len(c.blocks) == 1 else "s"  # the full state s (the blocks below) for several states
    block_intro: list[Block] = []
    if len(c.blocks) > 1:
        state_names = ", ".join(latex.name(k) for k in c.cell.states)
        block_intro.append(
            Para(
                (
                    "With several states the state is ",
                    Math(rf"s_{{t}} = ({state_names})"),
                    ", the states side by side, and ",
                    Math(r"J_{t} = \partial s_{t} / \partial s_{t-1}"),
                    " is the block matrix of the blocks below (row block a, column block b: ",
                    Math(r"\partial a_{t} / \partial b_{t-1}"),
                    "), each chained the same way; the bound (J.1) adds up the bounds of the blocks, since "
                    "the spectral norm of a block matrix is at most the sum of its blocks' norms.",
                )
            )
        )
    data = c.data
    bounded = ", ".join(
        f"{latex.name(v)} \\in [{lo}, {hi}]" for v, (lo, hi) in sorted(ranges.items(), key=lambda kv: kv[0])
    )
    state_note: Text = ()
    if STATE in ranges and c.cell.steps[-1].name not in c.primitives:
        state_note = (
            "; the state's range follows from (",
            str(c.num["h"]),
            ") by induction when ",
            Math(r"\lVert h_{0} \rVert_{\infty} \le 1"),
            " (SymPy finds the supremum of its right-hand side to be at most 1)",
        )
    uniform = uniform_terms(c.cell)
    readable = uniform is not None and all(v.isidentifier() for bt in uniform for v in bt.unbounded)
    bound = _bound_tex(uniform, c) if uniform and readable else ()
    linear_note: Text = ()
    if any(len(parts) > 1 for bt in uniform or [] for parts in bt.norms):
        linear_note = (
            " A factor in a pre-activation v = u W + b whose input u lies in [-1, 1] is bounded "
            "uniformly by ",
            Math(r"\lVert v \rVert_{\infty} \le \lVert W \rVert_{1} + \lVert b \rVert_{\infty}"),
            " (the induced 1-norm, the largest column sum of |W|), so the bound holds for every t.",
        )
    blocks: list[Block] = [
        Heading(3, "The one-step Jacobian"),
        Para(
            (
                "Chaining the local derivatives of section 2 forward through the steps (a matrix product ",
                Math("a = u W"),
                " contributes ",
                Math(r"W^{\top}"),
                ", an elementwise step a diagonal) gives, for one row of the batch and ",
                Math(rf"J_{{t}}[i, j] = \partial {v}_{{t}}[i] / \partial {v}_{{t-1}}[j]"),
                ":",
            )
        ),
        *block_intro,
        *(
            b
            for key, B in c.blocks.items()
            for b in display(B, f"{block_lhs(c, key)} =", "J" + label_suffix(c, key), names)
        ),
        Para(
            (
                "so a loss at step t reaches the state k steps back through a product of k Jacobians, ",
                Math(rf"\delta {v}_{{t-k}} = \delta {v}_{{t}} J_{{t}} J_{{t-1}} \cdots J_{{t-k+1}}"),
                f". {TUTORIALS['004'][0].upper()}{TUTORIALS['004'][1:]} argues that for a plain "
                "RNN this product "
                "behaves like a power of one matrix and vanishes or explodes; here is what the "
                "closed form says "
                "exactly for ",
                Code(c.name),
                ".",
            )
        ),
        Heading(3, "When the gradient vanishes or explodes"),
        Para(
            (
                *(
                    ("Bound. Gates lie in [0, 1] and tanh outputs in [-1, 1]: ", Math(bounded), *state_note)
                    if bounded
                    else ("Bound. This cell has no gate or tanh output, so no value has a proved range",)
                ),
                ". Each diagonal factor is bounded by its supremum over these ranges (computed exactly by "
                "SymPy).",
                *linear_note,
                " For every t,",
            )
        ),
    ]
    if bound:
        blocks.append(Equation((r"\lVert J_{t} \rVert_{2} \le " + bound[0], *bound[1:]), "J.1"))
    elif bound_timeout(c.cell):
        blocks.append(
            Para(
                (
                    f"(J.1) is not printed for this cell: {bound_timeout(c.cell)} (the report's time "
                    "limit for one piece of symbolic work); the table below gives the bound along the "
                    "measured trajectory instead.",
                )
            )
        )
    else:
        blocks.append(
            Para(
                (
                    "(J.1) For this cell some diagonal factors mix values without a proved range (a state "
                    "other than h, or a parameter vector), so SymPy finds no uniform bound worth printing; "
                    "the table below gives the same bound along the measured trajectory instead.",
                )
            )
        )
    blocks += _condition(c, data)
    blocks += _limits(c, names)
    blocks += _expansion(c, data)
    blocks += _escape(c, data, missing)
    return blocks
