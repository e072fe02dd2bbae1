"""The report on one cell, assembled from its sections: the core first, then the appendices.

Contract: :func:`variant_document` turns a built-in variant name or a
:class:`~grusym.report.context.Subject` (any declared cell with its generated module) into a
:class:`~grusym.report.render.blocks.Document`: the notation, then the core, from the forward equations to
the code, (1) forward equations, (2) the rules of reverse mode and the local derivatives, (3) the adjoint
of one step, (4) BPTT, (5) the backward pass as a plain loop, (6) the worked example; then the
appendices, headed as such: (A) the one-step Jacobian, bounds and expansions, (B) the vanishing-gradient
experiment, (C) framework weights, (D) the optimised generated code, (E) verification. Everything but the
:class:`~grusym.report.render.blocks.Measured` block is a pure function of the code and the seeded numbers.
What a report links to is decided by :class:`Links`: a link is written only to a file that is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .appendix.code import code_appendix
from .appendix.experiment import experiment_appendix
from .appendix.frameworks import frameworks_appendix
from .appendix.jacobian import jacobian_appendix
from .appendix.verification import verification_appendix
from .context import REGENERATE, SIZES, Context, Subject, subject
from .core.adjoint import adjoint_section
from .core.bptt import bptt_section
from .core.forward import forward_section, notation_section, parameter_count
from .core.local import local_section
from .core.loop import loop_section
from .core.worked import worked_section
from .index import index_document
from .numbers.verify import Measurement
from .render.blocks import Block, Code, Document, Heading, Link, Para

__all__ = ["REGENERATE", "SIZES", "Links", "index_document", "parameter_count", "variant_document"]


@dataclass(frozen=True)
class Links:
    """What a report may link to, relative to its own folder (None: not there, so named, not linked)."""

    index: str | None = "../README.md"  # the page of all variants
    latex: bool = True  # its own LaTeX file is written next to it
    module: str | None = None  # the generated module the code appendix quotes (line anchors are added)


def variant_document(
    which: str | Subject,
    data: dict[str, Any],
    measured: Measurement | None,
    missing: frozenset[str] = frozenset(),
    links: Links | None = None,
    regenerate: str | None = None,
) -> Document:
    """The full report; ``data`` from ``numbers.figures.figure_data``; ``missing``: figures not drawn."""
    sub = subject(which) if isinstance(which, str) else which
    links = links or Links()
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
        " The core, sections 1-6, goes from the forward equations to the code and a worked example; the "
        "appendices hold the one-step Jacobian with its bounds and expansions, the vanishing-gradient "
        "experiment, the framework weights, the optimised generated code and the verification."
    ]
    if links.index:
        about += [" ", Link("All variants", links.index), "."]
    if links.latex:
        about += [" This report as ", Link("LaTeX", f"{name}.tex"), "."]
    blocks: list[Block] = [Heading(1, f"{sub.title} ({name})"), Para(tuple(about))]
    blocks += notation_section(c)
    blocks += forward_section(c) + local_section(c) + adjoint_section(c) + bptt_section(c)
    blocks += loop_section(c) + worked_section(c, data["worked"])
    blocks += jacobian_appendix(c)
    blocks += experiment_appendix(c, data, missing)
    blocks += frameworks_appendix(c)
    blocks += code_appendix(c, links.module)
    blocks += verification_appendix(c, measured)
    return Document(f"{sub.title} ({name})", tuple(blocks), regenerate or sub.regenerate or REGENERATE)
