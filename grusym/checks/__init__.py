"""Gradient checks for any NumPy code: one package that depends on nothing above it.

``check_gradients`` (scalar functions, dict or positional inputs), ``check_vjp`` and ``check_layer``
(array outputs, layer pairs with caches), ``check_recurrent`` (recurrent losses in the caller's layout,
with the first wrong time step). Modules: ``inputs`` (the point), ``noise`` (measured resolution, steps),
``tolerance`` (the per-dtype table and the acceptance rule), ``numeric`` (fd, complex step, Taylor),
``core``, ``vjp``, ``recurrent``, ``report`` (the result type, also used by the symbolic oracle).
"""

from .core import check_gradients
from .recurrent import check_recurrent
from .report import Entry, GradientReport
from .tolerance import TABLE
from .vjp import check_layer, check_vjp

__all__ = [
    "TABLE",
    "Entry",
    "GradientReport",
    "check_gradients",
    "check_layer",
    "check_recurrent",
    "check_vjp",
]
