"""The one-step Jacobian where a gate or a tanh output sits at the end of its range, judged over the full J.

Contract: :func:`limits` substitutes each sigmoid output at 0 and at 1 and each tanh output at +-1 into
every block of the closed-form J (``Jacobian.at``) and classifies the whole matrix, never one block alone:
``cut`` (every block is 0: nothing reaches the previous state), ``copy`` (J is the identity),
``weights only`` (every remaining path passes a weight matrix, as in a plain RNN) or ``weight-free`` (a
path without a weight remains, such as the LSTM's dc_t/dc_{t-1} = diag(f_t)). It also names the blocks
that vanish there. The tests pin the gate in the generated module and compare with finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sympy as sp

from ...symbolic.cell import Cell
from ...symbolic.primitives import PRIMITIVES
from .jacobian import SIGN, Jacobian, StateJacobian, primitive_outputs

__all__ = ["Limit", "limits"]

Kind = Literal["cut", "copy", "weights only", "weight-free"]


@dataclass(frozen=True)
class Limit:
    value: str  # the gate or tanh output
    at: Any  # 0, 1, or SIGN (a tanh output at +-1)
    blocks: dict[tuple[str, str], Jacobian]  # every block of J there
    changed: tuple[tuple[str, str], ...]  # the blocks the value enters
    kind: Kind

    @property
    def zero(self) -> tuple[tuple[str, str], ...]:
        """The blocks that vanish at this limit (and did not before)."""
        return tuple(k for k in self.changed if not self.blocks[k].terms)


def _kind(blocks: dict[tuple[str, str], Jacobian]) -> Kind:
    if all(not J.terms for J in blocks.values()):
        return "cut"
    if all((J.is_identity() if a == b else not J.terms) for (a, b), J in blocks.items()):
        return "copy"
    if all(any(f.weight for f in t) for J in blocks.values() for t in J.terms):
        return "weights only"
    return "weight-free"


def limits(cell: Cell, J: StateJacobian) -> list[Limit]:
    """Every limit of every gate and tanh output of ``cell`` (see the module docstring)."""
    out = []
    for g, kind in primitive_outputs(cell).items():
        sym = sp.Symbol(g, real=True)
        values: tuple[Any, ...] = (1, 0) if kind is PRIMITIVES["sigmoid"] else (SIGN,)
        for value in values:
            there = {key: B.at({sym: value}) for key, B in J.blocks.items()}
            changed = tuple(key for key, B in J.blocks.items() if there[key] != B)
            if changed:
                out.append(Limit(g, value, there, changed, _kind(there)))
    return out
