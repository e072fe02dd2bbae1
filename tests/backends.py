"""The generated modules' backends as a test parameter: the plain NumPy module always, the fused (Numba)
one when numba is installed (skipped cleanly otherwise)."""

from __future__ import annotations

import importlib.util

import pytest

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
BACKENDS = ["numpy", pytest.param("fused", marks=needs_numba)]
