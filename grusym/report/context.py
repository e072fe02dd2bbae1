"""What a report is about (a :class:`Subject`: a cell, its generated module and its description) and the
derived objects every section reads (:class:`Context`), computed once.

Contract: a report is built from a :class:`~grusym.symbolic.cell.Cell` and the generated module that runs
it (``init_params``, ``forward``, ``backward``, ``loss``, ``loss_and_grads``), never from a variant name
alone: :func:`subject` makes the Subject of a built-in variant, :func:`cell_subject` the Subject of any
declared cell (a user's), so every section works for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import sympy as sp

from ..errors import InputError
from ..stepinputs import HeldFixed, inputs_of
from ..symbolic.cell import INPUT, STATE, Cell, Step, d, h, n, q
from ..symbolic.codegen import numbered
from ..symbolic.derive import Derivation, adjoint_name, derive, derive_head
from ..symbolic.variants import CELLS, HEAD_PARAMS, VARIANTS
from .analysis.jacobian import Jacobian, jacobian, primitive_outputs, state_jacobian
from .render import latex
from .sources import cite

__all__ = ["REGENERATE", "SIZES", "Context", "Subject", "cell_subject", "report_module", "subject"]

REGENERATE = "grusym report --all"
# example sizes: the toy of tutorials 000/001 and the d2l char LM of tutorial 003
SIZES = {"toy": {n: 2, d: 4, h: 2, q: 4}, "d2l": {n: 32, d: 28, h: 256, q: 28}}


@dataclass(frozen=True)
class Subject:
    """A cell to report on, the generated module that runs it, and what to say about it."""

    cell: Cell
    module: ModuleType
    title: str
    source: str | None = None  # the generated module's text (section "generated code"); None: not shown
    reset: str = ""
    update: str = ""
    sources: str = ""
    used_by: str = ""
    builtin: bool = False  # a built-in variant: measured by grusym.gradcheck.check_variant
    regenerate: str = ""  # the command that rewrites the report ("" : REGENERATE, every built-in cell)
    module_file: str = ""  # where the generated module lives, for the reader (grusym/generated/gru.py)
    derive_command: str = "grusym derive"  # the command that writes the module

    @property
    def name(self) -> str:
        return self.cell.name


def subject(name: str) -> Subject:
    """The Subject of built-in variant ``name``."""
    import grusym

    from ..symbolic.codegen import module_source

    if name not in CELLS:
        raise InputError(f"unknown variant(s) {name}; known variants: {', '.join(CELLS)}")
    v = CELLS[name]
    return Subject(
        v.cell(),
        grusym.load(name),
        v.title,
        module_source(name),
        v.reset if name in VARIANTS else "",  # a reset gate is a GRU's: other families have none to name
        v.update,
        cite(v.sources),
        cite(v.used_by),
        True,
        module_file=f"grusym/generated/{name}.py",
    )


def report_module(module: ModuleType) -> ModuleType:
    """The module a report runs: a cell with per-step inputs (c.input) gets them held fixed, drawn once
    and the same at every step (grusym.stepinputs.HeldFixed), so every section reads the same values."""
    if not inputs_of(module):
        return module
    return HeldFixed(module, constant=True)  # type: ignore[return-value]


def cell_subject(
    cell: Cell,
    module: ModuleType,
    *,
    title: str | None = None,
    source: str | None = None,
    reset: str = "",
    update: str = "",
    sources: str = "",
    used_by: str = "",
    regenerate: str = "",
    module_file: str = "",
    derive_command: str = "grusym derive --cell FILE.py:NAME --out DIR",
) -> Subject:
    """The Subject of a declared cell (e.g. a user's) run by its generated ``module``.

    source: the module's text (shown in Appendix D); regenerate: the command that rewrites the report (its
    header says it); module_file, derive_command: where the module is and what writes it, in words. The
    other fields describe the cell in words.
    """
    return Subject(
        cell,
        report_module(module),
        title or f"Cell {cell.name}",
        source,
        reset,
        update,
        sources,
        used_by,
        False,
        regenerate,
        module_file,
        derive_command,
    )


@dataclass
class Context:
    """Everything one report reads, computed once."""

    subject: Subject
    data: dict[str, Any] = field(default_factory=dict)  # the build's numbers (figures.json)

    def __post_init__(self) -> None:
        self.name = self.subject.name
        self.cell: Cell = self.subject.cell
        self.der: Derivation = derive(self.cell)
        self.head_step, self.head_der = derive_head()
        self.num = numbered(self.cell)
        self.params = frozenset(self.cell.params) | frozenset(HEAD_PARAMS)
        values = [s.name for s in self.cell.steps] + [INPUT, STATE, "H", "logits"]
        self.adjoints = frozenset(adjoint_name(v) for v in values)
        self.jac: Jacobian = jacobian(self.cell, self.der)
        # J of the full state by blocks (a, b) = da_t/db_{t-1}; one block, ("h", "h"): jac, for one state
        self.jac_full = state_jacobian(self.cell, self.der)
        self.blocks: dict[tuple[str, str], Jacobian] = self.jac_full.blocks
        self.primitives = primitive_outputs(self.cell)

    def eq(self, step: Step) -> str:
        return latex.step_equation(step, self.params)

    def shape(self, value: str) -> tuple[sp.Basic, ...]:
        """The shape of a value or parameter (biases as rows (1, .))."""
        if value == INPUT:
            return (n, d)
        if value in ("logits", "dlogits"):
            return (n, q)
        if value in self.cell.params:
            p = self.cell.params[value]
            return (p.rows, p.cols) if p.kind == "weight" else (1, p.cols)
        if value == "W_hq":
            return (h, q)
        if value == "b_q":
            return (1, q)
        return (n, h)
