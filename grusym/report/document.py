"""The report on one cell, assembled from its sections; the index page lives in :mod:`grusym.report.index`.

Contract: :func:`variant_document` turns a built-in variant name or a
:class:`~grusym.report.context.Subject` (any declared cell with its generated module) into a
:class:`~grusym.report.blocks.Document` with fixed sections: (1) forward equations, shapes, parameters and
the computational graph, (2) local derivatives, (3) the adjoint of one step, (4) BPTT and the Jacobian,
(5) the worked example, (6) the generated code, (7) the measured verification, (8) figures. Everything but
the :class:`~grusym.report.blocks.Measured` block is a pure function of the code and the seeded numbers.
"""

from __future__ import annotations

from typing import Any

from .appendix.jacobian import jacobian_section
from .appendix.sections import code_section, figures_section, frameworks_box, verification_section
from .context import REGENERATE, SIZES, Context, Subject, subject
from .core.forward import adjoint_section, bptt_section, forward_section, local_section, parameter_count
from .core.worked import worked_section
from .index import index_document
from .numbers.verify import Measurement
from .render.blocks import Block, Code, Document, Heading, Link, Para

__all__ = ["REGENERATE", "SIZES", "index_document", "parameter_count", "variant_document"]


def variant_document(
    which: str | Subject,
    data: dict[str, Any],
    measured: Measurement | None,
    missing: frozenset[str] = frozenset(),
) -> Document:
    """The full report; ``data`` from ``figures.figure_data``; ``missing``: figures not drawn (say so)."""
    sub = subject(which) if isinstance(which, str) else which
    c = Context(sub, data)
    name = sub.name
    about: list[Any] = [
        "The backpropagation-through-time derivation of ",
        Code(name),
        ", written from the objects that generate its code.",
    ]
    if sub.sources:
        about += [" Sources: ", sub.sources, "."]
    if sub.used_by:
        about += [" Used by: ", sub.used_by, "."]
    about += [
        " ",
        Link("All variants", "../README.md"),
        "; this report as ",
        Link("LaTeX", f"{name}.tex"),
        ".",
    ]
    blocks: list[Block] = [Heading(1, f"{sub.title} ({name})"), Para(tuple(about))]
    blocks += (
        forward_section(c)
        + local_section(c)
        + adjoint_section(c)
        + bptt_section(c)
        + jacobian_section(c, missing)
    )
    blocks += worked_section(c, data["worked"])
    blocks += code_section(c) + frameworks_box(c)
    blocks += verification_section(c, measured) + figures_section(c, data, missing)
    return Document(f"{sub.title} ({name})", tuple(blocks), REGENERATE)
