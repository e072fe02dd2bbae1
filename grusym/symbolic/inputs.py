"""Per-step inputs without gradient: a dropout or zoneout mask, a time delta, read elementwise by the cell.

Contract: ``c.input("m")`` (:func:`declare_input`) declares an (n, h) value that the caller supplies for
every step, as ``aux={"m": M}`` with M (T, n, h), or (T, n, 1) broadcast over the hidden units, to the
generated ``forward``, ``predict``, ``loss``, ``loss_and_grads`` (and ``aux={"m": m_t}``, (n, h) or (n, 1),
to ``step``). It enters the derivation as a constant: no adjoint is derived for it and no gradient is
returned for it (asking for one is refused by :mod:`grusym.stepinputs`, naming the steps). Inputs are
read elementwise only; a matmul of one, a parameter or a state of the same name is refused when declared.
In the generated module the input ``m`` is the loop's row ``m`` of the sequence ``U_m`` (``U_`` is a
derived-name shape the user cannot declare), and ``INPUTS`` maps each input to the steps that read it
(its error messages name them).
"""

from __future__ import annotations

from typing import Protocol

from sympy import MatrixSymbol

from .steps import Param, Step, h, n, prev_name


class Cell(Protocol):
    """What this module reads of a :class:`~grusym.symbolic.cell.Cell` (named structurally: the builder
    imports this module, so this module does not import the builder)."""

    name: str
    inputs: list[str]
    states: list[str]
    steps: list[Step]
    params: dict[str, Param]

    def error(self, message: str) -> Exception: ...
    def _check_name(self, name: object, what: str) -> None: ...


__all__ = ["declare_input", "readers", "sequence"]


def sequence(name: str) -> str:
    """The generated code's name of input ``name``'s (T, n, h) array: ``m`` -> ``U_m``."""
    return f"U_{name}"


def declare_input(cell: Cell, name: str) -> MatrixSymbol:
    """Declare (or read again) the per-step input ``name`` of ``cell``; its (n, h) symbol."""
    cell._check_name(name, "input")
    if name not in cell.inputs:
        if name in cell.params:
            raise cell.error(f"input {name!r} has the name of a parameter")
        if name in cell.states or name in map(prev_name, cell.states):
            raise cell.error(f"input {name!r} has the name of a state")
        if name in {s.name for s in cell.steps}:
            raise cell.error(f"input {name!r} has the name of a step")
        cell.inputs.append(name)
    return MatrixSymbol(name, n, h)


def readers(cell: Cell, name: str) -> str:
    """The steps of ``cell`` that read input ``name``, as messages name them: ``step (5) h``."""
    found = [f"({k}) {s.name}" for k, s in enumerate(cell.steps, start=1) if name in s.inputs]
    if not found:
        return f"cell {cell.name!r}, no step"
    return f"cell {cell.name!r}, step{'s' * (len(found) > 1)} {', '.join(found)}"


# ---- the text the code generator adds to the module of a cell with inputs (nothing for the others)


def constant(cell: Cell) -> str:
    """The ``INPUTS`` line: each input and the steps that read it (the validation messages name them)."""
    if not cell.inputs:
        return ""
    where = {name: readers(cell, name) for name in cell.inputs}
    return f"INPUTS = {where!r}  # per-step inputs without gradient: aux={{name: (T, n, h)}}\n"


def signature(cell: Cell) -> str:
    """The keyword the public functions of a cell with inputs take last: ``, aux=None``."""
    return ", aux=None" if cell.inputs else ""


def arguments(cell: Cell) -> str:
    """The checked input arrays as ``_forward``'s last arguments: ``, U_m``."""
    return "".join(f", {sequence(name)}" for name in cell.inputs)


def check(cell: Cell, one_step: bool = False) -> str:
    """The line (indented, with its newline) that checks ``aux`` against X's (T, n) and the parameters."""
    if not cell.inputs:
        return ""
    names = ", ".join(sequence(name) for name in cell.inputs)
    left = f"({names},)" if len(cell.inputs) == 1 else names
    fn = "check_step_aux" if one_step else "check_aux"
    return f'    {left} = _inputs.{fn}(aux, INPUTS, X.shape[:2], dims["h"], dtype)\n'


def doc(cell: Cell) -> str:
    """The module docstring's sentence on ``aux``."""
    if not cell.inputs:
        return ""
    names = ", ".join(f'"{name}"' for name in cell.inputs)
    return (
        f"\naux: the per-step inputs {{{names}: ...}}, each (T, n, h) or (T, n, 1) (broadcast over the "
        "units),\nevery function that runs the cell takes them (``step``: (n, h) or (n, 1)); no gradient.\n"
    )
