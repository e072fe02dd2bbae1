"""The numeric side of every check: central differences, the guarded complex step and the Taylor sweep.

Contract: every estimator takes ``value`` (dict of float64 arrays -> float) and restores the arrays it
perturbs. :class:`ComplexStep` evaluates ``Im f(x + i s e_k) / s`` and refuses (``InputError`` naming what
it observed, suggesting ``method="fd"``) whenever the imaginary part may have been lost: a NumPy
``ComplexWarning`` during ``fun`` (a complex value stored into a real array), a real return value, or a
probe along a random direction where the complex step and central differences disagree. It never returns a
value from a truncated evaluation. An exception raised by the user's code under complex input is re-raised
with a note that the complex step was running.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GrusymError, InputError
from .noise import fd_noise, fd_step

__all__ = ["ComplexStep", "Taylor", "central", "taylor_sweep"]

Array = NDArray[Any]
Value = Callable[[dict[str, Array]], float]
_COMPLEX_STEP = 1e-20  # no subtraction, so any step far below sqrt(eps) gives full precision
_TAYLOR_START = 1e-2
_TAYLOR_HALVINGS = 48
# a remainder below this many noise standard deviations is rounding, not Taylor remainder
TAYLOR_NOISE_FACTOR = 64.0

try:
    _ComplexWarning: type[Warning] = np.exceptions.ComplexWarning
except AttributeError:  # numpy < 1.25
    _ComplexWarning = np.ComplexWarning  # type: ignore[attr-defined]


def central(value: Value, x: dict[str, Array], name: str, direction: Array, step: float) -> float:
    """Richardson-extrapolated central difference of ``value`` along ``direction`` (in ``x[name]``)."""
    base = x[name]
    original = base.copy()

    def quotient(s: float) -> float:
        base[...] = original + s * direction
        plus = value(x)
        base[...] = original - s * direction
        minus = value(x)
        base[...] = original
        return (plus - minus) / (2 * s)

    try:
        return (4 * quotient(step / 2) - quotient(step)) / 3
    finally:
        base[...] = original


class ComplexStep:
    """Im f(x + i s v) / s for a complex-analytic ``fun``, with every loss of the imaginary part refused."""

    def __init__(self, evaluate: Callable[[dict[str, Array]], Any], label: str) -> None:
        self.evaluate = evaluate  # dict of complex arrays -> fun's raw return value
        self.label = label

    def __call__(self, xc: dict[str, Array]) -> float:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _ComplexWarning)
            try:
                value = self.evaluate(xc)
            except GrusymError:
                raise
            except Exception as exc:
                note = (
                    f"grusym: this was raised inside {self.label} while the complex step evaluated it on "
                    "complex inputs; code that is not complex-safe (in-place += into float arrays, float(), "
                    "comparisons) cannot use method='complex': use method='fd'"
                )
                if hasattr(exc, "add_note"):
                    exc.add_note(note)
                    raise
                raise InputError(f"{note}: {type(exc).__name__}: {exc}") from exc
        lost = [w for w in caught if issubclass(w.category, _ComplexWarning)]
        if lost:
            w = lost[0]
            raise InputError(
                f"complex step refused: {self.label} discarded the imaginary part (NumPy ComplexWarning "
                f"'{w.message}' at {w.filename}:{w.lineno}), typically by storing a complex value into a "
                "preallocated real array (h = np.zeros(n); h[:] = ...); every derivative it gives would be "
                "wrong: use method='fd'"
            )
        if isinstance(value, tuple) and value:
            value = value[0]
        if not np.iscomplexobj(value):
            raise InputError(
                f"complex step refused: {self.label} returned a real {type(value).__name__} for complex "
                "inputs, so the imaginary part was dropped on the way (e.g. float(), .real, a real output "
                "buffer): use method='fd'"
            )
        return float(np.imag(value)) / _COMPLEX_STEP

    def element(self, xc: dict[str, Array], name: str, i: int) -> float:
        flat = xc[name].reshape(-1)
        original = flat[i]
        flat[i] = original + 1j * _COMPLEX_STEP
        try:
            return self(xc)
        finally:
            flat[i] = original

    def probe(self, value: Value, x: dict[str, Array], names: list[str], noise: float, f0: float) -> None:
        """Refuse when the complex step and central differences disagree along one random direction.

        A silent loss (np.real, abs, a comparison that picks a branch on the real part only) returns a
        complex value but a wrong imaginary part; this catches it before any verdict is given.
        """
        rng = np.random.default_rng(97)
        for name in names:
            v = rng.choice([-1.0, 1.0], x[name].shape) * np.maximum(np.abs(x[name]), 1.0)
            step = fd_step(noise, f0)
            reference = central(value, x, name, v, step)
            xc = {k: a.astype(np.complex128) for k, a in x.items()}
            xc[name] = xc[name] + 1j * _COMPLEX_STEP * v
            imaginary = self(xc)
            slack = 1e-4 * max(abs(reference), abs(imaginary)) + 4 * fd_noise(noise, step)
            if abs(imaginary - reference) > slack:
                lost = "is lost (Im f = 0)" if imaginary == 0 else "is wrong"
                raise InputError(
                    f"complex step refused: along a random direction in {name!r} the imaginary part "
                    f"{lost}: complex step {imaginary:.6g}, central differences {reference:.6g}; "
                    f"{self.label} is not complex-analytic here (abs, .real, np.maximum, comparisons or "
                    "real buffers on values): use method='fd'"
                )


@dataclass(frozen=True)
class Taylor:
    rate: float  # the asymptotic rate (smallest e above the noise, extrapolated); inf when no pair is trusted
    rates: tuple[float, ...]  # log2 r(e) / r(e/2) for the halvings above the noise, largest e first
    slope: float  # <g, v>
    numeric: float  # the directional derivative estimated from the same evaluations
    seen: float  # the smallest error of <g, v> (absolute) the sweep could have seen
    scale: float  # sum |g_i v_i|
    threshold: float  # remainders below this are noise


def taylor_sweep(
    value: Value,
    x: dict[str, Array],
    name: str,
    g: Array,
    v: Array,
    f0: float,
    noise: float,
    slope_error: float = 0.0,
) -> Taylor:
    """Halve e from 1e-2 until the remainder r(e) = f(x+ev) - f(x) - e<g,v> is rounding noise.

    The rate is fitted only on consecutive pairs that both stand above the noise: noise + e * slope_error,
    where slope_error bounds the rounding of <g, v> itself (a float32 gradient carries ~1e-7 of it, which
    would otherwise show as a rate-1 term once the quadratic one falls below it). ``resolved``: if <g, v>
    were off by delta, r(e) would carry a term e * delta, visible once it exceeds max(|r(e)|, noise);
    so delta <= min_e max(|r(e)|, noise) / e (``seen``) is what the sweep resolves.
    """
    base = x[name]
    original = base.copy()
    slope = float(np.sum(g * v))
    threshold = max(TAYLOR_NOISE_FACTOR * noise, 1e-13 * max(abs(f0), 1.0))

    def floor(e: float) -> float:
        return threshold + e * slope_error

    es: list[float] = []
    rs: list[float] = []
    e = _TAYLOR_START
    try:
        for _ in range(_TAYLOR_HALVINGS):
            base[...] = original + e * v
            es.append(e)
            rs.append(value(x) - f0 - e * slope)
            if len(rs) >= 2 and abs(rs[-1]) < floor(e) and abs(rs[-2]) < floor(2 * e):
                break
            e /= 2
    finally:
        base[...] = original
    above = [abs(r) >= floor(ei) for r, ei in zip(rs, es, strict=True)]
    trusted = [k for k in range(len(rs) - 1) if above[k] and above[k + 1]]
    rates = tuple(math.log2(abs(rs[k]) / abs(rs[k + 1])) for k in trusted)
    numeric = slope
    if trusted:
        k = trusted[-1]  # Richardson on the one-sided quotients D(e) = slope + r(e)/e
        numeric = slope + (4 * rs[k + 1] - rs[k]) / es[k]
    rate = rates[-1] if rates else math.inf
    if len(rates) >= 2:
        # the rate approaches its limit with a deviation proportional to e: extrapolate it. A right
        # gradient's rate may still be climbing towards 2 (a cubic term against a small quadratic one)
        # when the remainder reaches the noise; a wrong one's falls towards 1, where this changes nothing
        rate = max(rate, 2 * rates[-1] - rates[-2])
    scale = float(np.sum(np.abs(g * v)))
    seen = min(max(abs(r), floor(ei)) / ei for r, ei in zip(rs, es, strict=True))
    return Taylor(rate, rates, slope, numeric, seen, scale, threshold)
