"""grusym: GRU gradients derived symbolically, generated as plain NumPy, and verified.

``import grusym`` never imports SymPy: the generated modules under ``grusym.generated`` need only NumPy.

>>> import grusym
>>> m = grusym.load("gru")
>>> params = m.init_params(input_size=4, hidden_size=2, output_size=4, seed=0)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import (
    DTypeError,
    GradientCheckError,
    GrusymError,
    InputError,
    NonFiniteError,
    ParameterError,
    ShapeError,
    UnknownVariantError,
)
from .gradcheck import GradientReport, check_gradients

__all__ = [
    "DTypeError",
    "GradientCheckError",
    "GradientReport",
    "GrusymError",
    "InputError",
    "NonFiniteError",
    "ParameterError",
    "ShapeError",
    "UnknownVariantError",
    "__version__",
    "check_gradients",
    "load",
    "variants",
]

__version__ = "0.1.0"


def variants() -> list[str]:
    """The names of every GRU variant grusym generates code for."""
    from .generated import VARIANTS  # imported on use, so `grusym derive` can run before it exists

    return list(VARIANTS)


def load(name: str) -> ModuleType:
    """The generated NumPy module of built-in cell ``name`` (a GRU variant of ``variants()``, or ``lstm``).

    It provides ``init_params``, ``forward``, ``backward``, ``head``, ``loss`` and ``loss_and_grads``.
    """
    from .generated import CELLS

    known = list(CELLS)
    if not isinstance(name, str) or name not in known:
        raise UnknownVariantError(f"unknown variant {name!r}; known variants: {', '.join(known)}")
    return importlib.import_module(f"{__name__}.generated.{name}")
