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

from ..symbolic.cell import STATE
from ..symbolic.primitives import PRIMITIVES
from . import latex
from .blocks import Block, Bullets, Code, Equation, Heading, Math, Para, Table, Text
from .context import Context
from .escape import expansion, keep_gate, uniform_bound
from .jacobian import SIGN, BoundTerm, Jacobian, Term, value_ranges
from .sections import figure
from .sources import TUTORIALS

__all__ = ["jacobian_section", "term_tex"]

_NORM = {"2": "2", "1": "1", "inf": r"\infty"}


def _sig(x: float) -> str:
    return f"{x:.3g}"


def _e(x: float) -> str:
    return f"{x:.2e}"


def term_tex(J: Jacobian, term: Term) -> str:
    """One term, with a diagonal's constant part pulled out: ``\\frac{1}{2} I + \\frac{1}{4} diag(a_z)``."""
    if len(term) == 1 and term[0].weight is None and not term[0].expr.is_Number:
        const, rest = sp.Add(*term[0].expr.as_ordered_terms()).as_coeff_Add()
        coef, core = rest.as_coeff_Mul()
        inner = latex.elementwise(core, params=J.params)
        diag = rf"\operatorname{{diag}}\left({inner}\right)"
        out = ("" if coef == 1 else ("-" if coef == -1 else latex.scalar(coef) + " ")) + diag
        if const != 0:
            sign = "-" if out.startswith("-") else "+"
            return f"{latex.scalar(const)} I {sign} {out.lstrip('-')}"
        return out
    return J._term_tex(term)


def _parts(J: Jacobian, lhs: str, tail: str = "") -> tuple[str, ...]:
    if not J.terms:
        return (f"{lhs} 0{tail}",)
    texts = [term_tex(J, t) for t in J.terms]
    parts = [f"{lhs} {texts[0]}"] + ["+ " + t for t in texts[1:]]
    parts[-1] += tail
    return tuple(p.replace("+ -", "- ") for p in parts)


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
            rf"\lVert {latex.name(v)} \rVert_{{\infty}}" if v.isidentifier() else v for v in bt.unbounded
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


def _limits(c: Context) -> list[Block]:
    limits: list[Text] = []
    for g, kind in c.primitives.items():
        sym = sp.Symbol(g, real=True)
        if kind is PRIMITIVES["sigmoid"]:
            for value in (1, 0):
                Jg = c.jac.at({sym: value})
                limits.append(
                    (Math(rf"{latex.name(g)} = {value}: \quad J_{{t}} = {Jg.tex()}"), f" ({_limit_note(Jg)})")
                )
        else:
            Jg = c.jac.at({sym: SIGN})
            limits.append(
                (
                    Math(rf"{latex.name(g)} = \epsilon = \pm 1: \quad J_{{t}} = {Jg.tex()}"),
                    f" (saturated {g}: {_limit_note(Jg)})",
                )
            )
    return [Para(("Limits, elementwise (each substituted into the closed form):",)), Bullets(tuple(limits))]


def _condition(c: Context, data: dict[str, Any]) -> list[Block]:
    """(J.2): the bound below 1 forces vanishing; what it says at the measured scales."""
    gn = data["gradient_norms"]
    rows = []
    for scale, b in gn["bounds"][c.name].items():
        u, m = b["uniform_bound"], b["measured_range_bound"]
        says = "vanishing certified" if u < 1 else ("certified on this run" if m < 1 else "says nothing")
        rows.append(
            (
                (scale,),
                (_sig(gn["W_hh_spectral_norm"][c.name][scale]),),
                (_sig(u),),
                (_sig(m),),
                (_sig(gn["per_step"][c.name][scale]),),
                (says,),
            )
        )
    direct = any(not any(f.weight for f in t) for t in c.jac.terms)
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
                "||W_hh||_2",
                "bound (J.1)",
                "bound along the trajectory",
                "measured factor",
                "what (J.2) says",
            ),
            tuple(rows),
        ),
    ]


def _expansion(c: Context, data: dict[str, Any]) -> list[Block]:
    ex = expansion(c.subject)
    measured = data["expansion"]
    order = f"O(s^{{{ex.order}}})"
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
                f"terms of order 0 and 1, the first dropped term is of order {ex.order}:",
            )
        ),
        Equation(_parts(ex.kept, "J_{t} =", rf" + {order}"), "J.3"),
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
    keep = keep_gate(c.subject, c.jac)
    what: Text
    if keep is None:
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
    J = c.jac
    ranges = value_ranges(c.cell)
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
    uniform = uniform_bound(c.subject)
    bound = _bound_tex(uniform, c)
    linear_note: Text = ()
    if any(len(parts) > 1 for bt in uniform for parts in bt.norms):
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
                Math(r"J_{t}[i, j] = \partial h_{t}[i] / \partial h_{t-1}[j]"),
                ":",
            )
        ),
        Equation(_parts(J, "J_{t} ="), "J"),
        Para(
            (
                "so a loss at step t reaches the state k steps back through a product of k Jacobians, ",
                Math(r"\delta h_{t-k} = \delta h_{t} J_{t} J_{t-1} \cdots J_{t-k+1}"),
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
                "Bound. Gates lie in [0, 1] and tanh outputs in [-1, 1]: ",
                Math(bounded),
                *state_note,
                ". Each diagonal factor is bounded by its supremum over these ranges (computed exactly by "
                "SymPy).",
                *linear_note,
                " For every t,",
            )
        ),
        Equation((r"\lVert J_{t} \rVert_{2} \le " + bound[0], *bound[1:]), "J.1"),
    ]
    blocks += _condition(c, data)
    blocks += _limits(c)
    blocks += _expansion(c, data)
    blocks += _escape(c, data, missing)
    return blocks
