"""Every tolerance of every check, per dtype, and the one acceptance rule they feed.

Contract: an analytic value ``a`` and its reference ``n`` agree when

    |a - n| <= atol + rtol * max(|a|, |n|) + noise_bound

``rtol`` and ``atol`` come from ``TABLE[dtype][method]`` (or the caller); ``noise_bound`` is measured, never
chosen: the rounding the reference carries (fun's measured resolution over the step, for "fd" and
"directional"; none for the exact "complex" step) plus the rounding of the analytic side (64 eps(dtype) times
the largest gradient element). Every term is non-negative and grows with rtol and atol, so loosening a
tolerance can only turn FAIL into ok. The printed error ``|a - n| / max(|a|, |n|)`` uses no tolerance.

"taylor" reads its row differently: its verdict is the error of <g, v> the remainders imply, fitted with its
uncertainty (:func:`grusym.checks.numeric.taylor_sweep`); ``rtol`` and ``atol`` only loosen it: an implied
error within ``atol + rtol |<g, v>|`` (beyond what the fit resolves) passes. Both are 0 by default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["TABLE", "TOLERANCES", "Tolerance", "allowed", "relative_error", "rounding_floor", "tolerance"]


class Tolerance(NamedTuple):
    rtol: float
    atol: float


TABLE: dict[str, dict[str, Tolerance]] = {
    "float64": {
        "fd": Tolerance(1e-5, 1e-10),
        "directional": Tolerance(1e-6, 1e-10),
        "complex": Tolerance(1e-9, 1e-13),
        "taylor": Tolerance(0.0, 0.0),
        # the symbolic oracle (grusym.oracle) evaluated at 40 digits against float64 code
        "oracle": Tolerance(1e-10, 1e-14),
    },
    # a float32 code: its own rounding (~6e-8 relative) is part of both sides; truncation of a step
    # chosen from that resolution stays below 1e-4, a 0.1 % error stays above it
    "float32": {
        "fd": Tolerance(2e-4, 1e-6),
        # the projection's truncation and rounding are measured and bounded; rtol is only a margin
        "directional": Tolerance(1e-6, 1e-6),
        "complex": Tolerance(1e-5, 1e-7),
        "taylor": Tolerance(0.0, 0.0),
        "oracle": Tolerance(1e-5, 1e-7),
    },
}
TOLERANCES: dict[str, Tolerance] = TABLE["float64"]  # the float64 row, by method


def tolerance(method: str, dtype: Any = np.float64) -> Tolerance:
    """The row of ``TABLE`` for ``dtype`` (float16 and float32 use the float32 row)."""
    key = "float64" if np.dtype(dtype).itemsize >= 8 else "float32"
    return TABLE[key][method]


def allowed(analytic: Any, numeric: Any, rtol: float, atol: float, noise_bound: Any = 0.0) -> Any:
    """The largest |analytic - numeric| the rule accepts, elementwise."""
    scale = np.maximum(np.abs(analytic), np.abs(numeric))
    return atol + rtol * scale + noise_bound


def relative_error(analytic: Any, numeric: Any, atol: float = 0.0) -> Any:
    """|a - n| / max(|a|, |n|, atol), elementwise (0 where both are 0): the printed error."""
    diff = np.abs(np.asarray(analytic) - np.asarray(numeric))
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)
    return np.divide(diff, scale, out=np.zeros_like(diff, dtype=np.float64), where=scale > 0)


def rounding_floor(
    scale: float, rtol: float, atol: float, eps: float = float(np.finfo(np.float64).eps)
) -> float:
    """The floor for comparing analytic gradients with an exact reference (complex step, oracle).

    scale: the largest gradient element of the whole problem. The analytic side carries an absolute
    rounding error of about 64 eps scale (a saturated gate's z*(1-z) loses all relative precision), so
    elements below that divided by rtol are compared absolutely.
    """
    return max(atol, 64 * eps * scale / rtol)
