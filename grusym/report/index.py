"""The index page: conventions, equations side by side, sizes, users and the relations of all variants.

Contract: :func:`index_document` reads the variant declarations and the relation checks of
:mod:`grusym.report.relations`; like the per-variant reports it types no equation.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from ..symbolic.cell import Cell
from ..symbolic.variants import CELLS
from .context import REGENERATE, SIZES
from .core.forward import parameter_count
from .render import latex
from .render.blocks import Block, Break, Bullets, Code, Document, Heading, Link, Math, Para, Table, Text
from .sources import TUTORIALS, cite

__all__ = ["RELATION_ATOL", "index_document"]

RELATION_ATOL = 1e-12
_m = Math


def _compact(cell: Cell) -> Text:
    """A variant's forward equations for a table cell, one per line."""
    params = frozenset(cell.params)
    out: list[Any] = []
    for i, s in enumerate(cell.steps):
        out += ([Break()] if i else []) + [_m(latex.step_equation(s, params))]
    return tuple(out)


def index_document(names: list[str], relation_errors: dict[int, float]) -> Document:
    """The comparison page: conventions, equations, sizes, users and the checked relations of the variants."""
    from .numbers.relations import RELATIONS

    cells = {name: CELLS[name].cell() for name in names}
    rows, eqs, users = [], [], []
    for name in names:
        v, cell = CELLS[name], cells[name]
        total = parameter_count(cell)
        link = (Link(name, f"{name}/README.md"),)
        rows.append(
            (
                link,
                (v.title,),
                (v.reset,),
                (Code(v.update),),
                (_m(sp.latex(total).replace("h", "d_{h}")),),
                (str(total.subs(SIZES["toy"])),),
                (str(total.subs(SIZES["d2l"])),),
            )
        )
        eqs.append((link, _compact(cell)))
        users.append((link, (cite(v.used_by),), (cite(v.sources),)))
    rel_rows = []
    for i, rel in enumerate(RELATIONS):
        if rel.a not in names or rel.b not in names:
            continue
        err = relation_errors[i]
        verdict = "holds" if err <= RELATION_ATOL else f"FAILS (max difference {err:.1e})"
        claim: list[Any] = []
        for j, piece in enumerate(rel.claim.split("`")):
            if piece:
                claim.append(Code(piece) if j % 2 else piece)
        rel_rows.append((tuple(cite(x) if isinstance(x, str) else x for x in claim), (rel.why,), (verdict,)))
    blocks: list[Block] = [
        Heading(1, "grusym derivations: every built-in cell, derived"),
        Para(
            (
                "One report per built-in cell (the seven GRU variants and the LSTM): the forward "
                "equations, the local derivatives SymPy derives, the adjoint of one step, BPTT with the "
                "one-step Jacobian in closed form and when the gradient vanishes or explodes, the "
                "generated code labelled with the equation numbers, the gradient checks measured when "
                "the report was built, and figures. All of it is rendered from the objects that generate "
                "the code (",
                Code("grusym.symbolic"),
                "); regenerate with ",
                Code(REGENERATE),
                ". LaTeX: one standalone file per cell and ",
                Link("derivations.tex", "derivations.tex"),
                " with everything (",
                Code("grusym report --format pdf"),
                " compiles them when pdflatex or tectonic is installed).",
            )
        ),
        Heading(2, "Conventions and sizes"),
        Para(
            (
                "Parameter counts include the head ",
                Code("W_hq"),
                ", ",
                Code("b_q"),
                f"; toy: d = q = 4, d_h = 2 ({TUTORIALS['000']}); d2l: d = q = 28, d_h = 256 "
                f"({TUTORIALS['003']}).",
            )
        ),
        Table(("variant", "title", "reset gate", "update", "parameters", "toy", "d2l"), tuple(rows)),
        Heading(2, "Equations side by side"),
        Table(("variant", "one step"), tuple(eqs)),
        Heading(2, "Who uses which"),
        Table(("variant", "used by", "sources"), tuple(users)),
        Heading(2, "Relations between the variants"),
        Para(
            (
                "Each relation is checked when this page is built: both generated forward passes on one "
                "random float64 problem, with the parameters mapped as stated (a gate is pinned by zero "
                "weights and a bias of +-50, where float64 sigmoid is exactly 0 or 1); it holds when the "
                f"hidden states agree to {RELATION_ATOL:.0e}.",
            )
        ),
        Table(("relation", "why", "check"), tuple(rel_rows)),
        Heading(2, "What each report contains"),
        Para(
            (
                "The core, from the forward equations to the code: the notation (time steps counted from 1, ",
                _m("h_{0}"),
                " the initial state), then",
            )
        ),
        Bullets(
            (
                (
                    "1. Forward equations, numbered as in the code's comments; shapes; parameters, "
                    "counted; the computational graph of one step.",
                ),
                (
                    "2. The rules of reverse mode derived by index (a matrix product, a bias, an "
                    "elementwise step), the sum over paths, the gradient of the softmax cross-entropy, "
                    "the primitive rules proved by SymPy and each elementwise step's derivatives.",
                ),
                (
                    "3. The adjoint of one step with the shape of every factor, numbered (N.k) after "
                    "forward equation (N).",
                ),
                (
                    "4. BPTT: the total adjoint of each state and the message the next step sends back, "
                    "named apart; one pattern for every parameter's sum over t; truncated BPTT and "
                    "clipping as grusym train does them.",
                ),
                ("5. The backward pass as a plain loop, one line per equation, which the tests run.",),
                (
                    "6. A worked example on the toy: every forward value, the loss, every adjoint, the "
                    "Jacobians, one gradient entry against a finite difference.",
                ),
            )
        ),
        Para(("Then the appendices:",)),
        Bullets(
            (
                (
                    "A. The one-step Jacobian in closed form, what it says about BPTT, a uniform bound, a "
                    "sufficient condition for vanishing with what it says at measured scales, its limits, "
                    "and its expansion at initialisation with the measured error.",
                ),
                (
                    "B. The vanishing gradient measured next to rnn_tanh at several weight scales, the "
                    "escape from vanishing, and the activations of a training run.",
                ),
                ("C. Where each parameter sits in PyTorch's and Keras' weights.",),
                ("D. The optimised generated functions, with a table from equation numbers to code lines.",),
                ("E. Gradient checks measured at build time (every method available), versions and date.",),
            )
        ),
    ]
    return Document("grusym derivations", tuple(blocks), REGENERATE)
