"""grusym: GRU gradients derived symbolically, generated as plain NumPy, and verified.

``import grusym`` never imports SymPy: the generated modules under ``grusym.generated`` need only NumPy.

>>> import grusym
>>> m = grusym.load("gru")
>>> params = m.init_params(input_size=4, hidden_size=2, output_size=4, seed=0)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Literal, overload

import numpy as np

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

if TYPE_CHECKING:
    from .model import Model

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
    "fused_available",
    "load",
    "variants",
]

__version__ = "0.1.0"


def variants() -> list[str]:
    """The names of every GRU variant grusym generates code for."""
    from .generated import VARIANTS  # imported on use, so `grusym derive` can run before it exists

    return list(VARIANTS)


BACKENDS = ("numpy", "fused")  # the generated modules: plain NumPy, or the same with Numba kernels
FUSED_HINT = 'the fused backend needs numba: pip install "grusym[fused]"'


def fused_available() -> bool:
    """Whether numba imports, so ``load(name, backend="fused")`` can run."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@overload
def load(
    name: str,
    num_layers: Literal[1] = 1,
    bidirectional: Literal[False] = False,
    batch_first: Literal[False] = False,
    backend: str = "numpy",
) -> ModuleType: ...


@overload
def load(
    name: str,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    backend: str = "numpy",
) -> ModuleType | Model: ...


def load(
    name: str,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    backend: str = "numpy",
) -> ModuleType | Model:
    """The generated NumPy module of built-in cell ``name`` (a GRU variant of ``variants()``, or ``lstm``),
    or a whole model of it.

    With the defaults, the module itself: ``init_params``, ``forward``, ``backward``, ``head``, ``loss``
    and ``loss_and_grads``. Otherwise a :class:`grusym.model.Model` with the same functions (and ``step``
    when unidirectional), shaped like ``torch.nn.GRU(d, h, num_layers, bidirectional=..., batch_first=...)``
    (``nn.LSTM`` for ``lstm``). A user's cell module: ``grusym.model.build(module, ...)``.

    backend: ``"numpy"`` (the default: the generated NumPy module) or ``"fused"`` (the same module with
    each run of elementwise calls of its loops as one Numba kernel; same results, needs ``numba``).
    """
    from .generated import CELLS

    known = list(CELLS)
    if not isinstance(name, str) or name not in known:
        raise UnknownVariantError(f"unknown variant {name!r}; known variants: {', '.join(known)}")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    if backend == "fused" and not fused_available():
        raise InputError(FUSED_HINT)
    package = "generated" if backend == "numpy" else "generated.fused"
    module = importlib.import_module(f"{__name__}.{package}.{name}")
    if num_layers == 1 and bidirectional is False and batch_first is False:
        return module
    if not isinstance(bidirectional, (bool, np.bool_)):
        raise InputError(f"bidirectional must be True or False, got {bidirectional!r}")
    from .model import build  # imported on use: the defaults never need it

    return build(module, num_layers, ("forward", "reverse") if bidirectional else ("forward",), batch_first)
