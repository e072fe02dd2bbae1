"""The generated modules' backends as a test parameter: the plain NumPy module always, the fused (Numba)
one when numba is installed (skipped cleanly otherwise); and the plain module a fused one must equal."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
BACKENDS = ["numpy", pytest.param("fused", marks=needs_numba)]


def fastmath_twin(source: str, name: str) -> ModuleType:
    """The plain module ``source`` with NumPy's tanh and grusym's sigmoid replaced by grusym.fastmath's
    NumPy twins: what a fused module computes (its kernels do the plain module's arithmetic in the same
    order, and fastmath's scalar tanh and sigmoid agree with their twins to the last bit), so the two
    must agree bit for bit. Plain NumPy: no numba needed to build it."""
    text = source.replace("np.tanh(", "_fm.tanh(").replace("rt.sigmoid(", "_fm.sigmoid(")
    imports = "from grusym import runtime as rt\n"
    text = text.replace(imports, "from grusym import fastmath as _fm\n" + imports, 1)
    module = ModuleType(name)
    exec(compile(text, f"<fastmath twin of {name}>", "exec"), module.__dict__)
    return module
