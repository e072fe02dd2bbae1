"""The optional packages the benchmark compares against, each imported on demand, and the one-line hint that
names the extra installing it (the core install has none of them)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["AUTO", "FUSED_HINT", "ONNX_HINT", "TORCH_HINT", "optional", "resolve"]

TORCH_HINT = "pip install 'grusym[torch]' adds it (the pinned torch==2.13.0)"
ONNX_HINT = "pip install 'grusym[onnx]' adds it (onnx and onnxruntime)"
FUSED_HINT = 'pip install "grusym[fused]" adds it'
AUTO: Any = object()  # an argument's default meaning "import it if installed"


def optional(name: str) -> ModuleType | None:
    """The module ``name``, or None when it is not installed (or blocked, as tests do)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def resolve(module: ModuleType | None, name: str) -> ModuleType | None:
    """``module`` as given (None: skip it), or the installed ``name`` when it is :data:`AUTO`."""
    return optional(name) if module is AUTO else module
