"""How finely a function resolves its value near a point, measured, and the steps that follow from it.

Contract: :func:`estimate_noise` returns the standard deviation of the rounding noise of ``fun`` near ``x``
(More and Wild's ECnoise: the k-th differences of equally spaced values of a smooth function shrink like
step^k, those of noise keep a fixed size). It probes at several spacings, 1e-10 to 1e-4 relative, because
a code that rounds through float32 somewhere is exactly constant at the small ones (its inputs do not move
in float32) and shows its real resolution, ~6e-8 of the values it rounds, only at the larger ones; a
spacing whose differences look smooth rather than noisy gives no estimate, and neither does one whose
second differences are concentrated in one place: that is a kink (relu, abs, max) within the probe's reach,
not rounding, which spreads over every point. The largest estimate wins.
:func:`fd_step` balances the truncation of Richardson-extrapolated central differences (step^4) against that
noise (noise / step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["estimate_noise", "fd_noise", "fd_step", "resolution"]

Array = NDArray[Any]
EPS = float(np.finfo(np.float64).eps)
_SPACINGS = (1e-10, 1e-8, 1e-6, 1e-4)
_POINTS = 9
# rounding spreads over the 7 second differences (largest / median deviation ~3); a kink puts one far out
_KINK_RATIO = 20.0
# a central difference with Richardson extrapolation carries about 2 noise / step; 8 is the margin
FD_NOISE_FACTOR = 8.0


def _ecnoise(values: Array) -> float | None:
    """ECnoise on equally spaced values: the noise level, or None when the differences look smooth."""
    if np.ptp(values) == 0:
        return None  # constant: the spacing is below the function's resolution
    second = np.diff(values, 2)
    spread = np.abs(second - np.median(second))  # less the curvature, which is nearly the same at each
    if np.max(spread) > _KINK_RATIO * np.median(spread):
        return None  # one point stands out: a kink near x, not rounding noise
    sigmas = []
    diffs = values
    for k in range(1, 7):
        diffs = np.diff(diffs)
        gamma = math.comb(2 * k, k)
        sigmas.append((float(np.sqrt(np.mean(diffs**2) / gamma)), bool(np.any(diffs[:-1] * diffs[1:] < 0))))
    for k in range(len(sigmas) - 2):
        trio = [s for s, _ in sigmas[k : k + 3]]
        if min(trio) > 0 and max(trio) <= 4 * min(trio) and sigmas[k][1]:
            return trio[0]
    return None


def estimate_noise(
    fun: Callable[[dict[str, Array]], float], x: dict[str, Array], points: int = _POINTS
) -> float:
    """The rounding noise (standard deviation) of ``fun`` near ``x``: at least eps * max(|f(x)|, 1).

    fun: dict of float64 arrays -> float. ``points`` equally spaced values along one fixed random
    direction (scaled by max(|x|, 1)) at each spacing of ``_SPACINGS``; 4 * 9 evaluations in all.
    """
    rng = np.random.default_rng(20240601)  # fixed: the estimate must not move the checks' directions
    direction = {k: rng.choice([-1.0, 1.0], v.shape) * np.maximum(np.abs(v), 1.0) for k, v in x.items()}
    f0 = fun(x)
    found = EPS * max(abs(f0), 1.0)
    shifted = {k: v.copy() for k, v in x.items()}
    for spacing in _SPACINGS:
        values = []
        for j in range(points):
            for k in x:
                shifted[k] = x[k] + (j - points // 2) * spacing * direction[k]
            values.append(fun(shifted))
        sigma = _ecnoise(np.array(values))
        if sigma is not None:
            found = max(found, sigma)
    return found


def resolution(noise: float, f0: float) -> float:
    """The relative resolution of a function with noise ``noise`` at value ``f0`` (eps for clean float64)."""
    return max(noise / max(abs(f0), 1.0), EPS)


def fd_step(noise: float, f0: float, x: float = 0.0) -> float:
    """The Richardson central-difference step at an element of value ``x``: res^(1/5) * max(|x|, 1)."""
    return min(resolution(noise, f0) ** 0.2, 0.1) * max(abs(x), 1.0)


def fd_noise(noise: float, step: float) -> float:
    """The bound on the rounding a Richardson central difference with ``step`` carries."""
    return FD_NOISE_FACTOR * noise / step
