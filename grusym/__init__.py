"""grusym: GRU gradients derived symbolically, generated as plain NumPy, and verified.

``import grusym`` never imports SymPy: the generated modules under ``grusym.generated`` need only NumPy.

>>> import grusym
>>> m = grusym.load("gru")
>>> params = m.init_params(input_size=4, hidden_size=2, output_size=4, seed=0)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

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


class _Default:
    """A layout argument left out: ``load(name)`` alone is the cell module itself."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_LAYERS, _BIDIRECTIONAL, _BATCH_FIRST = _Default(1), _Default(False), _Default(False)


@overload
def load(name: str | ModuleType, *, backend: str = "numpy") -> ModuleType: ...


@overload
def load(
    name: str | ModuleType,
    num_layers: int,
    bidirectional: bool = ...,
    batch_first: bool = ...,
    backend: str = "numpy",
) -> Model: ...


@overload
def load(
    name: str | ModuleType,
    *,
    bidirectional: bool,
    batch_first: bool = ...,
    backend: str = "numpy",
) -> Model: ...


@overload
def load(name: str | ModuleType, *, batch_first: bool, backend: str = "numpy") -> Model: ...


def load(
    name: str | ModuleType,
    num_layers: Any = _LAYERS,
    bidirectional: Any = _BIDIRECTIONAL,
    batch_first: Any = _BATCH_FIRST,
    backend: str = "numpy",
) -> ModuleType | Model:
    """The generated NumPy module of a cell, or a whole model of it.

    name: a built-in cell (a GRU variant of ``variants()``, or ``lstm``; ``lstmp`` is torch's
    ``nn.LSTM(proj_size=p)``, built from the generated lstm by ``grusym/model/lstmp.py``); a cell module
    of your own (what ``grusym derive --cell`` writes, imported, or
    ``grusym.symbolic.usercell.derive_module`` returns); or ``"FILE.py:NAME"``, a cell declared in your
    file (derived in memory: this needs SymPy).

    With no layout argument, the cell module itself: ``init_params``, ``forward``, ``predict``,
    ``backward``, ``final_states``, ``step``, ``head``, ``loss`` and ``loss_and_grads``. With any of
    ``num_layers`` (default 1), ``bidirectional`` (False) and ``batch_first`` (False) given, a
    :class:`grusym.model.Model` with the same functions, shaped like ``torch.nn.GRU(d, h, num_layers,
    bidirectional=..., batch_first=...)`` (``nn.LSTM`` for ``lstm``), states in torch's layout
    (num_layers * num_directions, n, h) even for one layer.

    backend: ``"numpy"`` (the default: the generated NumPy module) or ``"fused"`` (the same module with
    each run of elementwise calls of its loops as one Numba kernel; same results, needs ``numba``; for a
    built-in cell).
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    module = _cell_module(name, backend)
    given = [a for a in (num_layers, bidirectional, batch_first) if not isinstance(a, _Default)]
    if not given:
        return module
    layers = num_layers.value if isinstance(num_layers, _Default) else num_layers
    both = bidirectional.value if isinstance(bidirectional, _Default) else bidirectional
    first = batch_first.value if isinstance(batch_first, _Default) else batch_first
    if not isinstance(both, (bool, np.bool_)):
        raise InputError(f"bidirectional must be True or False, got {both!r}")
    from .model import build  # imported on use: the module alone never needs it

    return build(module, layers, bool(both), first)


_DERIVED: dict[tuple[str, float, str], ModuleType] = {}  # "FILE.py:NAME" cells derived this session


def _cell_module(name: object, backend: str) -> ModuleType:
    """The cell module ``load`` stacks: a built-in by name, a module given, or a cell file's."""
    from .generated import CELLS

    if isinstance(name, ModuleType):
        if backend == "fused":
            raise InputError(
                "backend='fused' loads a built-in's fused module; for your own cell, derive it with "
                "grusym derive --cell FILE.py:NAME --fused and pass that module"
            )
        return name
    known = list(CELLS)
    if isinstance(name, str) and name in known:
        if backend == "fused" and not fused_available():
            raise InputError(FUSED_HINT)
        package = "generated" if backend == "numpy" else "generated.fused"
        return importlib.import_module(f"{__name__}.{package}.{name}")
    if name == "lstmp":  # torch's LSTM(proj_size=p): the generated lstm and a projection
        if backend == "fused":
            raise InputError(
                "lstmp runs the generated NumPy lstm module; backend='fused' is not available for it"
            )
        return importlib.import_module(f"{__name__}.model.lstmp")
    if isinstance(name, str) and name.rpartition(":")[0].endswith(".py") and backend == "numpy":
        try:
            return _derived(name)
        except GrusymError as exc:  # the cell file's own problem, named with what else load takes
            raise UnknownVariantError(
                f"{name!r} is no cell grusym can load: {exc} (known variants: {', '.join(known)})"
            ) from None
    hint = (
        "; a cell of your own: grusym.load('FILE.py:NAME') or grusym.load(module) with the module "
        "grusym derive --cell writes"
        if isinstance(name, str)
        else ""
    )
    raise UnknownVariantError(f"unknown variant {name!r}; known variants: {', '.join(known)}{hint}")


def _derived(spec: str) -> ModuleType:
    from pathlib import Path

    from .symbolic.usercell import derive_module, load_cell, parse_spec

    path, cell_name = parse_spec(spec)
    key = (str(path.resolve()), path.stat().st_mtime if path.is_file() else 0.0, cell_name)
    if key not in _DERIVED:
        _DERIVED[key] = derive_module(load_cell(Path(path), cell_name))
    return _DERIVED[key]
