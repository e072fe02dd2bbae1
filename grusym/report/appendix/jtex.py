"""How Appendix A writes a Jacobian: its terms, and its blocks for several states.

Contract: :func:`display` writes ``lhs J`` as an equation whose parts break between terms; a diagonal
too wide for one line (a sum) is printed by name, ``diag(D_{k,t})``, and defined right after, split at
its sums, so no term overfills a line (in Markdown or LaTeX). :func:`block_lhs` names a block of the
full-state J by its total derivative (``dc_t/dh_{t-1}``), or ``J_t`` for a one-state cell.
"""

from __future__ import annotations

import sympy as sp

from ...symbolic.cell import prev_name
from ..analysis.jacobian import Factor, Jacobian, Term
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Equation, Para
from ..render.width import MAX_EX, width

__all__ = ["LABELS", "block_lhs", "display", "label_suffix", "parts", "term_tex"]

# the equations of Appendix A, by what they say
LABELS = {"message": "J.1", "product": "J.2", "bound": "J.3", "condition": "J.4", "expansion": "J.5"}


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


def parts(J: Jacobian, lhs: str, tail: str = "") -> tuple[str, ...]:
    """``lhs J tail`` as equation parts, one per term (lines break between them)."""
    if not J.terms:
        return (f"{lhs} 0{tail}",)
    texts = [term_tex(J, t) for t in J.terms]
    out = [f"{lhs} {texts[0]}"] + ["+ " + t for t in texts[1:]]
    out[-1] += tail
    return tuple(p.replace("+ -", "- ") for p in out)


def _named(J: Jacobian, names: list[Equation]) -> Jacobian:
    """J with every diagonal too wide for one line (a sum) printed by name, ``diag(D_{k,t})``; the
    definitions ``D_k = ...``, split at their sums, are appended to ``names`` (numbered on from there)."""
    terms = []
    for term in J.terms:
        factors = []
        for f in term:
            inner = latex.elementwise(f.expr, params=J.params) if f.weight is None else ""
            if f.weight is None and isinstance(f.expr, sp.Add) and width(inner) > MAX_EX / 2:
                k = len(names) + 1
                summands = [latex.elementwise(a, params=J.params) for a in sp.Add.make_args(f.expr)]
                first = f"D_{{{k},t}} = {summands[0]}"
                names.append(Equation((first, *("+ " + p for p in summands[1:])), f"D.{k}"))
                factors.append(Factor(sp.Symbol(f"D_{k}", real=True)))
            else:
                factors.append(f)
        terms.append(tuple(factors))
    return Jacobian(J.cell, tuple(terms), J.target, J.source)


def display(J: Jacobian, lhs: str, label: str, names: list[Equation], tail: str = "") -> list[Block]:
    """The equation ``lhs J tail``; too-wide diagonals are named, and defined right after it (``names``:
    the definitions so far in this section, so the numbers run on)."""
    before = len(names)
    shown = _named(J, names)
    if len(names) == before:
        return [Equation(parts(J, lhs, tail), label)]
    return [Equation(parts(shown, lhs, tail), label), Para(("where",)), *names[before:]]


def label_suffix(c: Context, key: tuple[str, str]) -> str:
    """The label suffix of a block: '' for one state, ``.hc`` style for several."""
    return "" if len(c.blocks) == 1 else f".{key[0]}{key[1]}"


def block_lhs(c: Context, key: tuple[str, str]) -> str:
    """``J_{t}`` for one state; the block's total derivative ``dc_t/dh_{t-1}`` for several."""
    if len(c.blocks) == 1:
        return "J_{t}"
    a, b = key
    return latex.total(a, prev_name(b))
