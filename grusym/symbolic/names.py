"""The identifiers of a generated module, and the check that a declaration's names cannot collide in it.

Contract: generated code names its values after the declaration (step ``z`` is the local ``z``, its adjoint
``dz``, its cached sequence ``z_all``, its row in a fused kernel ``R_z``; parameter ``W_xz`` is the local
``W_xz``, its gradient ``dW_xz``, its contiguous transpose ``W_xz_T``), beside names of its own (``A``,
``tmp0``, ``zip`` ...): ``RESERVED`` and ``RESERVED_PATTERN``. These locals live in ``_forward``,
``_backward`` and the fused kernels (``GENERATED_IN``); elsewhere a declaration's names appear only as the
initial states' ``<state>0``. :func:`identifiers` lists every identifier a cell's names give rise to, with
what it stands for; :func:`clash` returns the first identifier that would stand for two things (or for one
of the generator's own names), in words, or None. A clash is a silent wrong gradient or a crash inside
generated code, so the builder refuses it (``Cell.check``). tests/test_cell_names.py harvests every
identifier of generated modules and checks that this module accounts for each one, so a new naming scheme
in the generator cannot slip past it.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator
from typing import Protocol

from .steps import INPUT, OUTPUT, Param, Step, prev_name

__all__ = [
    "GENERATED_IN",
    "RESERVED",
    "RESERVED_PATTERN",
    "SEQUENTIAL",
    "Declared",
    "clash",
    "identifiers",
    "reserved",
]


class Declared(Protocol):
    """What the names of a cell come from (a :class:`~grusym.symbolic.cell.Cell`; named structurally so
    that this module, which the builder imports, does not import the builder)."""

    @property
    def states(self) -> list[str]: ...
    @property
    def steps(self) -> list[Step]: ...
    @property
    def params(self) -> dict[str, Param]: ...


# the names the generator gives its own values in ``_forward``, ``_backward`` and the fused kernels (the only
# functions where a declaration's names become locals), the builtins they call, and a few more the language
# has always kept for itself
RESERVED = frozenset(
    {
        "A", "H", "T", "X", "buf", "cache", "dA", "dA_rows", "dA_t", "dH", "dH_t", "dW", "dims", "dlogits",
        "dtype", "grads", "half", "input_grad", "isinstance", "lengths", "logits", "n", "nh", "np", "numba",
        "one", "params", "range", "rt", "state", "t", "table", "tokens", "two", "upstream", "valid",
        "validate", "value", "x_t", "dx_t", "X_e", "dX_e", "X_ids", "zip",
    }
)  # fmt: skip
# bound only after the backward loop, when no value of a step is live: a step's adjoint may share it (db)
SEQUENTIAL = frozenset({"db"})
# names the generator makes for itself: numbered scratch, CSE terms and constants, kernel names and
# arguments, fused products and weights
RESERVED_PATTERN = re.compile(r"(tmp|g|k)\d+|_.*|[KP]_.*|W_\w+_all\d*(_T)?")
# the generated functions in which a declaration's names become local names (the fused modules' kernels
# and whole-loop functions too)
GENERATED_IN = re.compile(r"_(forward|backward|predict)(_k\d+|_seq)?")
# a name of the user's may not take the shape of a derived one (``R_z``, ``S_c``, ``z_all``, ``W_hz_T``):
# it could meet the derived name of another step in a module the checks never see
_DERIVED_SHAPE = re.compile(r"[A-VX-Z]_.*|.*_(all|rows)\d*|.*_T")


def reserved(name: str) -> bool:
    """Whether the generated code uses ``name`` for itself (or Python does: a keyword)."""
    return name in RESERVED or RESERVED_PATTERN.fullmatch(name) is not None or keyword.iskeyword(name)


def _forms(cell: Declared) -> Iterator[tuple[str, str]]:
    """(identifier, what it stands for) for every identifier the cell's names give rise to."""

    def value(name: str, what: str) -> Iterator[tuple[str, str]]:
        yield name, what
        yield f"d{name}", f"the adjoint of {what}"

    for state in cell.states:
        yield from value(prev_name(state), f"the previous value of state {state!r}")
        yield f"{state}0", f"the initial value of state {state!r}"
        if state != OUTPUT:
            yield f"S_{state}", f"the sequence of state {state!r}"
            # backward's upstream gradient of the state at every step (dstates enters there)
            yield f"dS_{state}", f"the upstream gradient of state {state!r}"
            yield f"dS_{state}_t", f"the upstream gradient of state {state!r} at step t"
    for s in cell.steps:
        yield from value(s.name, f"step {s.name!r}")
        yield f"{s.name}_all", f"the cached sequence of step {s.name!r}"
        yield f"{s.name}_x", f"the input part of step {s.name!r}"
        for term in s.terms:
            if term.left != INPUT:
                yield f"{s.name}_{term.left}", f"the {term.left} term of step {s.name!r}"
    for p in [*cell.params.values()]:
        yield from value(p.name, f"parameter {p.name!r}")
        yield f"{p.name}_T", f"the transpose of parameter {p.name!r}"
        if p.kind == "vector":
            yield from value(f"d{p.name}_rows", f"the per-row gradient of vector {p.name!r}")
    for name in getattr(cell, "inputs", ()):  # per-step inputs (c.input): a row, no adjoint
        yield name, f"the per-step input {name!r}"
        yield f"U_{name}", f"the sequence of the per-step input {name!r}"
    for head in ("W_hq", "b_q"):
        yield from value(head, f"the output head's parameter {head!r}")


def identifiers(cell: Declared) -> dict[str, list[str]]:
    """Every identifier the cell's names give rise to -> what it stands for (more than one: a clash)."""
    found: dict[str, list[str]] = {}
    for ident, what in _forms(cell):
        # in a fused kernel each array also has a row (R_) and may be passed as a buffer argument (B_)
        forms = (
            (ident, what),
            (f"R_{ident}", f"a row of {what}"),
            (f"B_{ident}", f"{what} (kernel argument)"),
        )
        for form, meaning in forms:
            if meaning not in found.setdefault(form, []):
                found[form].append(meaning)
    return found


def clash(cell: Declared) -> str | None:
    """The first name collision in the module the cell would generate, in words; None if there is none."""
    names = [*(s.name for s in cell.steps), *cell.states, *cell.params, *getattr(cell, "inputs", ())]
    for name in names:
        if reserved(name) or _DERIVED_SHAPE.fullmatch(name):
            return f"the name {name!r} is reserved for the generated code; choose another"
    for ident, meanings in identifiers(cell).items():
        if len(meanings) > 1:
            return f"{meanings[1]} and {meanings[0]} would share the name {ident!r} in the generated code"
        if reserved(ident) and not (ident == "dW" and "W" in cell.params):  # then the generator's is _dW
            return f"the generated code would name {meanings[0]} {ident!r}, a name it uses for itself"
    return None
