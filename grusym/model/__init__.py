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

import numpy as np

from ..errors import InputError
from .stack import Model
from .structure import Structure

__all__ = ["Model", "Structure", "build"]


def build(
    cell: ModuleType,
    num_layers: int = 1,
    bidirectional: bool | tuple[str, ...] = False,
    batch_first: bool = False,
    *,
    merge: str = "concat",
    flip_output: bool = False,
    pad_outputs: str = "zeros",
    mask_value: float | None = None,
) -> Model:
    """The model of ``cell`` (a generated cell module: a built-in's, or your own from
    ``grusym.symbolic.usercell.derive_module`` / ``grusym derive --cell``), laid out like
    ``torch.nn.GRU(d, h, num_layers, bidirectional=..., batch_first=...)``.

    bidirectional: True or False (a tuple of directions, ("forward",), ("reverse",) or ("forward",
    "reverse"), is read as the directions). merge, flip_output, pad_outputs: see :class:`Structure`;
    mask_value: see
    :class:`Model`. ``grusym.load(name_or_module, num_layers, bidirectional, batch_first)`` calls this.
    """
    for name in (
        "VARIANT",
        "STATES",
        "OUTPUT",
        "PARAMS",
        "CELL_PARAMS",
        "forward",
        "backward",
        "final_states",
    ):
        if not hasattr(cell, name):
            raise InputError(
                f"{getattr(cell, '__name__', type(cell).__name__)} is not a grusym cell module (it has no "
                f"{name}); derive one with grusym derive --cell FILE.py:NAME, or load a built-in by name"
            )
    if isinstance(bidirectional, tuple):
        directions = bidirectional
    elif isinstance(bidirectional, (bool, np.bool_)):
        directions = ("forward", "reverse") if bidirectional else ("forward",)
    else:
        raise InputError(f"bidirectional must be True or False, got {bidirectional!r}")
    structure = Structure(num_layers, directions, batch_first, merge, flip_output, pad_outputs)
    return Model(cell, structure, mask_value)
