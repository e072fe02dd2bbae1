"""The errors grusym raises on bad input.

Every public entry point raises a subclass of :class:`GrusymError`; each also subclasses the built-in
exception a caller would expect (``ValueError`` for bad values and shapes, ``TypeError`` for bad types), so
``except ValueError`` keeps working. Messages name the argument, what was expected and what was given.
"""

from __future__ import annotations

__all__ = [
    "DTypeError",
    "GradientCheckError",
    "GrusymError",
    "InputError",
    "NonFiniteError",
    "ParameterError",
    "ShapeError",
    "UnknownVariantError",
]


class GrusymError(Exception):
    """Base class of every error grusym raises on purpose."""


class InputError(GrusymError, ValueError):
    """An argument has a value grusym cannot use (empty, out of range, unreadable)."""


class ShapeError(InputError):
    """An array has the wrong shape or its shape disagrees with another argument."""


class NonFiniteError(InputError):
    """An array holds NaN or infinity."""


class ParameterError(InputError):
    """A parameter dictionary has missing or unexpected keys."""


class UnknownVariantError(InputError):
    """A variant name that grusym does not define."""


class DTypeError(GrusymError, TypeError):
    """An array has a dtype grusym cannot use (integer weights, object arrays, mixed precisions)."""


class GradientCheckError(GrusymError, AssertionError):
    """An analytic gradient disagrees with its numeric estimate."""
