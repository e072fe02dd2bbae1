"""Appendix C of a report: where each parameter sits in the PyTorch and Keras layers that implement the cell.

Contract: the table is read off ``grusym.interop``'s converters by probing them with labelled parameters
(which slice of which framework array each parameter lands in), so it cannot disagree with them; a cell
whose declaration no framework layout holds gets one sentence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..context import Context
from ..core.forward import parameter_table
from ..render import latex
from ..render.blocks import Block, Code, Heading, Math, Para, Table, Text

__all__ = ["frameworks_appendix"]

_GRU_BLOCKS = (
    "the test suite loads the PyTorch column into torch.nn.GRU and checks its output; the Keras layouts are "
    "checked against Keras' cell equations). With h the hidden size, 0:h, h:2h and 2h:3h are the three "
    "blocks of rows (PyTorch: r, z, n) or columns (Keras: z, r, h)"
)
_LSTM_BLOCKS = (
    "the test suite loads the PyTorch column into torch.nn.LSTM and checks its output). With h the hidden "
    "size, 0:h, h:2h, 2h:3h and 3h:4h are the four blocks of rows (PyTorch: i, f, g, o)"
)


def _layouts() -> tuple[tuple[str, str, Any, str], ...]:
    """(framework, the built-in cell its layout holds, params -> framework arrays, what the blocks are)."""
    from ...interop import to_keras_gru, to_torch_gru, to_torch_lstm

    return (
        ("PyTorch nn.GRU", "gru_reset_after", lambda p: to_torch_gru(p)[0], _GRU_BLOCKS),
        (
            "Keras GRU(reset_after=True)",
            "gru_reset_after",
            lambda p: _keras(to_keras_gru(p, reset_after=True)[0]),
            _GRU_BLOCKS,
        ),
        (
            "Keras GRU(reset_after=False)",
            "gru",
            lambda p: _keras(to_keras_gru(p, reset_after=False)[0]),
            _GRU_BLOCKS,
        ),
        ("PyTorch nn.LSTM", "lstm", lambda p: to_torch_lstm(p)[0], _LSTM_BLOCKS),
    )


def _declaration(cell: Any) -> tuple[Any, ...]:
    """What makes two cells the same function with the same parameter names (not their names)."""
    return tuple((s.name, str(s.expr)) for s in cell.steps), tuple(cell.params)


def frameworks_appendix(c: Context) -> list[Block]:
    """Where each parameter of the cell sits in the framework layouts ``grusym.interop`` converts to: those
    whose built-in cell has the same declaration as this one (a user's copy of a built-in included)."""
    from ...symbolic.variants import CELLS

    names = list(c.cell.params)
    mine = _declaration(c.cell)
    targets = [
        (f, convert, text)
        for f, cell, convert, text in _layouts()
        if _declaration(CELLS[cell].cell()) == mine
    ]
    if not targets:
        return [
            *_parameters(c),
            Para(
                (
                    "grusym.interop converts no framework's layout for this cell, so there is no map of its "
                    "parameters to framework weights.",
                )
            ),
        ]
    dh, d = 3, 2
    probe = {}
    for i, k in enumerate(names):
        shape = c.cell.params[k]
        size = (dh,) if shape.kind != "weight" else ((d if latex.dim(shape.rows) == "d" else dh), dh)
        probe[k] = (i + 1) * 1000.0 + np.arange(math.prod(size), dtype=np.float64).reshape(size)
    rows: list[tuple[Text, ...]] = []
    for framework, convert, _ in targets:
        arrays = convert(probe)
        for k in names:
            where = _where(probe[k], arrays, dh)
            # a gate bias the converter puts whole into the input bias: the framework adds the recurrent one
            for single, pair in (("bias_ih_l0[", "bias_hh_l0["), ("bias[0, ", "bias[1, ")):
                if where.startswith(single) and c.cell.params[k].kind == "bias":
                    block = where[len(single) : -1]
                    other = (
                        arrays["bias_hh_l0"] if pair.startswith("bias_hh") else np.asarray(arrays["bias"])[1]
                    )
                    lo = _BLOCKS.index(block) * dh
                    if not np.any(np.asarray(other)[lo : lo + dh]):
                        where += f" + {pair}{block}]"
            rows.append(((framework,), (Math(latex.name(k, params=c.params)),), (Code(where),)))
    return [
        *_parameters(c),
        Para(
            (
                "The same parameters in the frameworks that implement this cell, read off ",
                Code("grusym.interop"),
                f"'s converters ({targets[0][2]}; grusym multiplies from the right (",
                Math("X_{t} W"),
                "), PyTorch from the left, hence the transposes. Where the framework keeps two biases for a "
                "gate, only their sum enters the function.",
            )
        ),
        Table(("framework", "parameter", "where"), tuple(rows)),
    ]


def _parameters(c: Context) -> list[Block]:
    return [
        Heading(2, "Appendix C. The parameters and where frameworks keep them", "parameters"),
        Para(
            ("Every parameter with its shape, the equations that read it and its size in the two examples:",)
        ),
        parameter_table(c),
    ]


def _keras(weights: list[Any]) -> dict[str, Any]:
    return dict(zip(("kernel", "recurrent_kernel", "bias"), weights, strict=True))


_BLOCKS = ("0:h", "h:2h", "2h:3h", "3h:4h")


def _where(value: np.ndarray, arrays: dict[str, Any], dh: int) -> str:
    """Which slice of which framework array holds ``value`` (transposed or not)."""
    for key, a in arrays.items():
        a = np.asarray(a)
        for axis in range(a.ndim):
            gates = a.shape[axis] // dh  # 3 for a GRU's stacked gates, 4 for an LSTM's
            for j, sl in enumerate(_BLOCKS[:gates] if gates in (3, 4) and a.shape[axis] % dh == 0 else ()):
                part = np.take(a, range(j * dh, (j + 1) * dh), axis=axis)
                index = ", ".join(sl if ax == axis else ":" for ax in range(a.ndim))
                if value.ndim == 1 and part.ndim == 2:
                    for r in range(part.shape[0]):
                        if np.array_equal(part[r], value):
                            index = ", ".join([str(r), sl] if axis == 1 else [sl, str(r)])
                            return f"{key}[{index}]"
                    continue
                if part.shape == value.shape and np.array_equal(part, value):
                    return f"{key}[{index}]"
                if part.shape == value.T.shape and np.array_equal(part, value.T):
                    return f"{key}[{index}].T"
    return "(no single slice: see grusym.interop)"
