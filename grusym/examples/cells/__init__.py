"""Example cells declared the way a user declares one: each file holds one cell function of the builder.

Copy one next to your code and run ``grusym derive --cell mingru.py:mingru --out .``, or from Python
``derive_module(load_cell(path("mingru")))``. ``EXAMPLES`` lists them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXAMPLES", "path"]

EXAMPLES = ("peephole_lstm", "mingru", "indrnn", "sru", "zoneout_gru", "layernorm_lstm", "layernorm_gru")


def path(name: str) -> str:
    """``FILE.py:NAME`` of example ``name``, for ``grusym derive --cell`` and ``load_cell``."""
    return f"{Path(__file__).resolve().parent / name}.py:{name}"
