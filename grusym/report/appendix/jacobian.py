"""Appendix A of a report: the one-step Jacobian in closed form, what it says about BPTT, its bounds and
expansions.

Contract: the closed form is ``analysis.jacobian`` of the cell (every block of the full state); (J.1) says
what the message of section 4 is linear in, (J.2) how the loss of one step reaches back through a product
of Jacobians; the uniform bound (J.3) is ``Jacobian.uniform_bound`` with like terms added; the sufficient
condition for vanishing (J.4) is that bound below 1 (Pascanu, Mikolov and Bengio 2013 state it for the
plain RNN as ``||W_hh||_2 < 1 / gamma``), stated for the loss of one step, which is what it bounds; the
limits are ``analysis.limits``, judged over the full J; the expansion at initialisation (J.5) is
``analysis.expansion``. Every claim is printed next to the number the build measured (``figures.json``).
"""

from __future__ import annotations

from typing import Any

from ...symbolic.cell import OUTPUT, STATE, prev_name
from ..analysis.derived import bound_timeout, expansion, uniform_terms
from ..analysis.expansion import NotExpandableError
from ..analysis.jacobian import SIGN, BoundTerm, collect_bound, factor_vectors, value_ranges
from ..analysis.limits import Limit, limits
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Code, Equation, Heading, Math, Para, Table, Text
from ..sources import TUTORIALS
from .experiment import norm_text, weights_tex
from .jtex import LABELS, block_lhs, display, label_suffix, parts

__all__ = ["LABELS", "jacobian_appendix"]

_NORM = {"2": "2", "1": "1", "inf": r"\infty"}
_m = Math


def _sig(x: float) -> str:
    return f"{x:.3g}"


def _e(x: float) -> str:
    return f"{x:.2e}"


def _bound_tex(terms: list[BoundTerm], c: Context) -> tuple[str, ...]:
    out = []
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
        out.append(" ".join(factors))
    return tuple(("+ " if i else "") + p for i, p in enumerate(out))


def _state(c: Context) -> str:
    """``h`` for one state, ``s`` (the states side by side) for several."""
    return "h" if len(c.cell.states) == 1 else "s"


def _closed_form(c: Context, names: list[Equation]) -> list[Block]:
    s = _state(c)
    blocks: list[Block] = [
        Heading(2, "Appendix A. The one-step Jacobian: bounds and expansions", "jacobian"),
        Para(
            (
                "Chaining the local derivatives of section 2 forward through the steps (a matrix product ",
                _m("a = u W"),
                " contributes ",
                _m(r"W^{\top}"),
                ", an elementwise step a diagonal) gives the total derivative of a step's state in the "
                "previous one, for one row of the batch, ",
                _m(rf"J_{{t}}[i, j] = \mathrm{{d}} {s}_{{t}}[i] / \mathrm{{d}} {s}_{{t-1}}[j]"),
                " (a row of J for each element of the new state):",
            )
        ),
    ]
    if len(c.blocks) > 1:
        names_tex = ", ".join(latex.name(k) for k in c.cell.states)
        blocks.append(
            Para(
                (
                    "With several states the state is ",
                    _m(rf"s_{{t}} = ({names_tex})"),
                    ", the states side by side, and ",
                    _m("J_{t}"),
                    " is the block matrix of the blocks below (row block a, column block b: ",
                    _m(r"\mathrm{d} a_{t} / \mathrm{d} b_{t-1}"),
                    "), each chained the same way.",
                )
            )
        )
    for key, B in c.blocks.items():
        blocks += display(B, f"{block_lhs(c, key)} =", "J" + label_suffix(c, key), names)
    return blocks


def _what_j_says(c: Context) -> list[Block]:
    s = _state(c)
    several = len(c.cell.states) > 1
    if several:
        outside = ", ".join(r"\delta h_{t}" if k == OUTPUT else latex.message(k) for k in c.cell.states)
        messages = ", ".join(latex.message(prev_name(k)) for k in c.cell.states)
        linear: list[Any] = [
            "What step t sends back, (B.2) one step earlier, is linear in what reaches its state from "
            "outside the step; with several states that is not the vector of totals: ",
            _m(r"\delta c_{t}" if "c" in c.cell.states else r"\delta " + latex.name(c.cell.states[1])),
            " also counts the paths inside step t through the states computed after it, which ",
            _m("J_{t}"),
            " contains already:",
        ]
        message_eq = Equation(
            (rf"\left({messages}\right) = \left({outside}\right) J_{{t}}",), LABELS["message"]
        )
    else:
        linear = [
            "What step t sends back, (B.2) one step earlier, is linear in the total adjoint of its state, "
            "so the code never forms J:"
        ]
        message_eq = Equation((rf"{latex.message('h_prev')} = \delta h_{{t}} J_{{t}}",), LABELS["message"])
    return [
        Para(tuple(linear)),
        message_eq,
        Para(
            (
                "The loss of one step t, ",
                _m(r"\ell_{t}"),
                " (the head's term of step t in L), reaches the state k steps back only through the steps "
                "between, a product of k Jacobians:",
            )
        ),
        Equation(
            (
                rf"\frac{{\partial \ell_{{t}}}}{{\partial {s}_{{t-k}}}} = \frac{{\partial \ell_{{t}}}}"
                rf"{{\partial {s}_{{t}}}} J_{{t}} J_{{t-1}} \cdots J_{{t-k+1}}",
            ),
            LABELS["product"],
        ),
        Para(
            (
                "The total adjoint ",
                _m(rf"\delta {s}_{{t-k}}"),
                " is the sum of such products over every loss from step t - k on (B.1 adds a term at each "
                "step), so bounds on one product bound each term, not the total. ",
                TUTORIALS["004"][0].upper() + TUTORIALS["004"][1:],
                " argues that for a plain RNN this product behaves like a power of one "
                "matrix and vanishes or explodes; here is what the closed form says exactly for ",
                Code(c.name),
                ".",
            )
        ),
    ]


def _bound(c: Context) -> list[Block]:
    ranges = value_ranges(c.cell)
    gates = [v for v, (lo, _) in sorted(ranges.items()) if lo == 0]
    tanhs = [v for v, (lo, _) in sorted(ranges.items()) if lo != 0 and v != STATE]
    said: list[Any] = ["Bound. "]
    if gates:
        said += ["Gates lie in [0, 1]: ", _m(", ".join(latex.name(v) for v in gates) + r" \in [0, 1]"), ". "]
    if tanhs:
        said += [
            "Tanh outputs lie in [-1, 1]: ",
            _m(", ".join(latex.name(v) for v in tanhs) + r" \in [-1, 1]"),
            ". ",
        ]
    if STATE in ranges:
        said += [
            "The state stays in [-1, 1], ",
            _m(r"h_{t-1} \in [-1, 1]"),
            ", when ",
            _m(r"\lVert h_{0} \rVert_{\infty} \le 1"),
            *(
                (
                    f": by induction from ({c.num[OUTPUT]}), whose right-hand side SymPy finds to be at most "
                    "1. ",
                )
                if c.cell.steps[-1].name not in c.primitives
                else (f": ({c.num[OUTPUT]}) is a tanh. ",)
            ),
        ]
    if not ranges:
        said += ["This cell has no gate or tanh output, so no value has a proved range. "]
    uniform = uniform_terms(c.cell)
    collected = collect_bound(uniform) if uniform else None
    readable = collected is not None and all(v.isidentifier() for bt in collected for v in bt.unbounded)
    bound = _bound_tex(collected, c) if collected and readable else ()
    if any(len(p) > 1 for bt in collected or [] for p in bt.norms):
        said += [
            "A factor in a pre-activation v = u W + b whose input u lies in [-1, 1] is bounded uniformly by ",
            _m(r"\lVert v \rVert_{\infty} \le \lVert W \rVert_{1} + \lVert b \rVert_{\infty}"),
            " (the induced 1-norm, the largest column sum of the absolute values of W). ",
        ]
    said += ["Each diagonal factor is bounded by its supremum over these ranges (computed exactly by SymPy)"]
    if len(c.blocks) > 1:
        said += [", and the norm of a block matrix by the sum of its blocks' norms"]
    said += [". For every t,"]
    blocks: list[Block] = [Para(tuple(said))]
    label = LABELS["bound"]
    if bound:
        blocks.append(Equation((r"\lVert J_{t} \rVert_{2} \le " + bound[0], *bound[1:]), label))
    elif bound_timeout(c.cell):
        blocks.append(
            Para(
                (
                    f"({label}) is not printed for this cell: {bound_timeout(c.cell)} (the report's time "
                    "limit for one piece of symbolic work); the table below gives the bound along the "
                    "measured trajectory instead.",
                )
            )
        )
    else:
        blocks.append(
            Para(
                (
                    f"({label}) For this cell some diagonal factors mix values without a proved range (a "
                    "state other than h, or a parameter vector), so SymPy finds no uniform bound worth "
                    "printing; the table below gives the same bound along the measured trajectory instead.",
                )
            )
        )
    return blocks


def _condition(c: Context, data: dict[str, Any]) -> list[Block]:
    """(J.4): the bound below 1 forces vanishing of each term (J.2); what it says at the measured scales."""
    gn = data["gradient_norms"]
    s = _state(c)
    bound, condition = LABELS["bound"], LABELS["condition"]
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
    uniform = uniform_terms(c.cell) or []
    direct = any(bt.coef >= 1 and not bt.norms and not bt.unbounded for bt in collect_bound(uniform))
    notes: list[Any] = []
    weights = gn.get("recurrent_weights", {}).get(c.name, ["W_hh"])
    if not weights:
        notes.append(
            "This cell has no recurrent weight matrix (its recurrence is elementwise), so the norm column "
            "is empty. "
        )
    if bound_timeout(c.cell):
        notes.append(f"There is no uniform bound ({bound}) to evaluate (shown as -). ")
    elif any(bt.unbounded for bt in uniform):
        notes.append(
            f"A factor of ({bound}) is a value without a proved range, so the uniform bound is data "
            "dependent (shown as -); the bound along the trajectory uses its measured values. "
        )
    cfg = gn["config"]
    return [
        Para(
            (
                "A sufficient condition for vanishing (the form Pascanu, Mikolov and Bengio 2013 give for "
                "the plain RNN, ",
                _m(r"\lVert W_{hh} \rVert_{2} \gamma"),
                " below 1 with ",
                _m(r"\gamma"),
                " bounding the activation's derivative): if ",
                _m(r"\lVert J_{t} \rVert_{2} \le \eta"),
                " for every t with some ",
                _m(r"\eta"),
                f" below 1, then by ({LABELS['product']}), for the loss of any one step t,",
            )
        ),
        Equation(
            (
                rf"\left\lVert \frac{{\partial \ell_{{t}}}}{{\partial {s}_{{t-k}}}} \right\rVert_{{2}} \le "
                rf"\eta^{{k}} \left\lVert \frac{{\partial \ell_{{t}}}}{{\partial {s}_{{t}}}} "
                r"\right\rVert_{2}",
            ),
            condition,
        ),
        Para(
            (
                "so with ",
                _m(r"\eta"),
                f" the bound ({bound}) every term of the total adjoint vanishes at least geometrically with "
                "its distance. ",
                (
                    "Because of the weight-free path the bound over the full ranges is at least 1, so for "
                    "this cell it never certifies vanishing; with each diagonal's supremum replaced by its "
                    "largest value along the measured trajectory (a bound for those states only) it can. "
                    if direct
                    else ""
                ),
                *notes,
                "Measured with the weights of Appendix B (weights drawn from N(0, s^2) at the scale s; "
                f"d_h = {cfg['hidden']}, T = {cfg['T']}, the toy text; the per-step factor of Appendix B):",
            )
        ),
        Table(
            (
                ("scale ", _m("s")),
                (_m(weights_tex(weights)),),
                (f"bound ({bound})",),
                "bound along the trajectory",
                "measured factor",
                f"what ({condition}) says",
            ),
            tuple(rows),
        ),
    ]


def _note(lim: Limit, c: Context) -> Text:
    """What the limit does to the whole of J, in words (blocks that vanish named)."""
    several = len(c.blocks) > 1
    where: Text = (f"saturated {lim.value}: ",) if lim.at is SIGN else ()
    if lim.kind == "cut":
        return (*where, "J is 0: no gradient reaches the previous state through this step")
    if lim.kind == "copy":
        return (*where, "J is the identity: the state is copied, and the gradient passes unchanged")
    gone: Text = ()
    if several and lim.zero:
        gone = (*_blocks(lim.zero), " vanishes, but " if len(lim.zero) == 1 else " vanish, but ")
    if lim.kind == "weights only":
        return (*where, *gone, "every path left passes a weight matrix, as in a plain RNN")
    free = [k for k, B in lim.blocks.items() if any(not any(f.weight for f in t) for t in B.terms)]
    named: Text = (" (", *_blocks(free), ")") if several else ()
    return (*where, *gone, "a weight-free path remains", *named)


def _blocks(keys: Any) -> Text:
    """Blocks of J named by their total derivatives, ``d h_t / d c_{t-1}``, joined by commas and 'and'."""
    spans: list[Any] = []
    keys = list(keys)
    for i, (a, b) in enumerate(keys):
        spans += ([" and " if i == len(keys) - 1 else ", "] if i else []) + [
            Math(rf"\mathrm{{d}} {latex.name(a)} / \mathrm{{d}} {latex.name(prev_name(b))}")
        ]
    return tuple(spans)


def _limits(c: Context, names: list[Equation]) -> list[Block]:
    found = limits(c.cell, c.jac_full)
    if not found:
        return [
            Para(("This cell has no gate or tanh step that could saturate, so there are no limits to take.",))
        ]
    intro = "Limits, elementwise: each value substituted into the closed form; the note judges the whole of J"
    intro += ", and the displays show the blocks the value enters:" if len(c.blocks) > 1 else ":"
    blocks: list[Block] = [Para((intro,))]
    for lim in found:
        at = f"{latex.name(lim.value)} = " + (str(lim.at) if lim.at is not SIGN else r"\epsilon = \pm 1")
        blocks.append(Para((_m(at), " (", *_note(lim, c), "):")))
        for key in lim.changed:
            blocks += display(lim.blocks[key], f"{block_lhs(c, key)} =", "", names)
    return blocks


def _expansion(c: Context, data: dict[str, Any]) -> list[Block]:
    label = LABELS["expansion"]
    scaled = list(factor_vectors(c.cell))
    try:
        blocks = expansion(c.cell)
    except NotExpandableError as err:
        return [
            Para(
                (
                    "With weights drawn from ",
                    _m(r"N(0, s^{2})"),
                    " and zero biases every pre-activation is O(s), but no expansion of J is printed or "
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
    exact = all(r["error_first"] == 0 for r in measured["rows"])
    return [
        Para(
            (
                Code("init_params"),
                " draws every weight from ",
                _m(r"N(0, s^{2})"),
                " with the weight scale s (0.01 by default) and sets the biases to 0",
                *((" (the report sets the vectors that scale a value to 1)",) if scaled else ()),
                "; with ",
                _m(" = ".join(f"{k}_{{0}}" for k in c.cell.states) + " = 0"),
                " every pre-activation and the state are O(s). Expanding every diagonal factor of J in "
                "them (SymPy, from the declaration; a weight matrix counts one power of s) and keeping the "
                f"terms of order 0 and 1, the first dropped term is of order {measured['order']}:",
            )
        ),
        *(
            Equation(parts(e.kept, f"{block_lhs(c, key)} =", rf" + {order}"), label + label_suffix(c, key))
            for key, e in blocks.items()
        ),
        Para(
            (
                "Measured along the trajectory of Appendix B (each number the largest spectral norm over all "
                "T n rows, J the closed form, checked against finite differences in Appendix E): the size "
                "of the first-order terms, the error of the zeroth-order part alone, of the expansion "
                f"without its diagonal first-order terms, and of ({label}); the last column is the slope of "
                "log error against log s"
                + (" (the expansion is exact here: its error is 0 at every scale)" if exact else "")
                + ":",
            )
        ),
        Table(
            (
                "s",
                "first-order terms",
                "error of order 0",
                "error without diagonals",
                f"error of ({label})",
                "order",
            ),
            tuple(rows),
        ),
    ]


def jacobian_appendix(c: Context) -> list[Block]:
    names: list[Equation] = []  # diagonals too wide to print in place, defined by name
    blocks = _closed_form(c, names)
    blocks += _what_j_says(c)
    blocks.append(Heading(3, "When the gradient vanishes or explodes"))
    blocks += _bound(c)
    blocks += _condition(c, c.data)
    blocks.append(Heading(3, "Limits"))
    blocks += _limits(c, names)
    blocks.append(Heading(3, "At initialisation"))
    blocks += _expansion(c, c.data)
    return blocks
