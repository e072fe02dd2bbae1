"""Whole models: a cell module stacked in layers and directions, time- or batch-major, on padded batches.

>>> import grusym
>>> m = grusym.load("gru_reset_after", num_layers=2, bidirectional=True, batch_first=True)
>>> params = m.init_params(input_size=4, hidden_size=3, output_size=4)
>>> sorted(params)[:3]
['W_hh_l0', 'W_hh_l0_reverse', 'W_hh_l1']

:mod:`.structure` says which cells a model holds and how states, lengths and time reversal are laid out;
:mod:`.stack` composes a cell module's functions along that structure (the only place that does).
"""

from __future__ import annotations

from types import ModuleType

from .stack import Model
from .structure import Structure

__all__ = ["Model", "Structure", "build"]


def build(
    cell: ModuleType,
    num_layers: int = 1,
    directions: tuple[str, ...] = ("forward",),
    batch_first: bool = False,
) -> Model:
    """The model of ``cell`` (a generated cell module) with the given layers, directions and layout."""
    return Model(cell, Structure(num_layers, tuple(directions), batch_first))
