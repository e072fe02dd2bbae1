"""The measured part of a report: gradient checks run when the report is built, with versions and the date.

Contract: :func:`measure` runs every method in :data:`grusym.gradcheck.TOLERANCES` on the variant's default
random problem (:func:`grusym.gradcheck.check_variant`), checks the report's closed-form Jacobian against
central differences of the generated ``forward``, and checks that the committed module is what the generator
produces. It never raises for a failing check: failures are reported as rows with ``ok=False``.
"""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass

import numpy as np

from ..errors import GrusymError

__all__ = ["Check", "Measurement", "jacobian_error", "measure"]

JACOBIAN_RTOL = 1e-6
# what each method compares; the tolerance column means what TOLERANCES says for that method
COMPARES = {
    "fd": "generated gradients vs per-element central differences",
    "directional": "<gradient, v> vs central differences along random directions v",
    "complex": "generated gradients vs complex-step derivatives",
    "taylor": "Taylor remainder rate (>= 2 - tol; error = slope vs its Richardson estimate)",
    "oracle": "generated gradients vs the symbolic derivative of the unrolled loss (d_h = q = 3)",
}


@dataclass(frozen=True)
class Check:
    method: str
    what: str  # what was compared with what
    rtol: float
    arrays: int
    elements: int
    worst: str  # array[index] of the worst element, or a message
    error: float
    ok: bool
    ran: bool = True  # False: an optional dependency is missing (not a failure)

    @property
    def verdict(self) -> str:
        return "not run" if not self.ran else ("ok" if self.ok else "FAIL")


@dataclass(frozen=True)
class Measurement:
    checks: tuple[Check, ...]
    versions: tuple[tuple[str, str], ...]
    date: str  # UTC, ISO 8601

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _versions() -> tuple[tuple[str, str], ...]:
    import sympy

    import grusym

    return (
        ("grusym", grusym.__version__),
        ("numpy", np.__version__),
        ("sympy", sympy.__version__),
        ("python", platform.python_version()),
    )


def jacobian_error(name: str, seed: int = 0) -> tuple[float, int]:
    """Worst relative error of the closed-form J_t against central differences of forward w.r.t. h0.

    One step (T = 1), n = 2, d = 3, h = 4, weights N(0, 1): gates and tanh away from both ends.
    """
    import grusym

    from ..symbolic.variants import VARIANTS
    from .jacobian import jacobian
    from .values import step_values

    m = grusym.load(name)
    rng = np.random.default_rng(seed)
    n, d, h = 2, 3, 4
    params = m.init_params(d, h, 2, seed=seed, scale=1.0)
    for k, p in params.items():
        if p.ndim == 1:
            params[k] = rng.normal(0.0, 0.5, p.shape)
    X = rng.normal(size=(1, n, d))
    h0 = rng.uniform(-0.9, 0.9, (n, h))
    values = {k: v[0] for k, v in step_values(name, params, X, h0).items()}
    closed = jacobian(VARIANTS[name].cell()).evaluate(values, params)
    eps = 1e-6
    numeric = np.empty((n, h, h))
    for j in range(h):
        e = np.zeros((n, h))
        e[:, j] = eps
        plus = m.forward(params, X, h0 + e)[0][0]
        minus = m.forward(params, X, h0 - e)[0][0]
        numeric[:, :, j] = (plus - minus) / (2 * eps)  # rows are independent: one column for all rows
    err = np.abs(closed - numeric) / np.maximum(np.maximum(np.abs(closed), np.abs(numeric)), 1e-6)
    return float(err.max()), int(err.size)


def measure(name: str) -> Measurement:
    """Run every available check on variant ``name`` (see the module docstring)."""
    from ..gradcheck import TOLERANCES, check_variant
    from ..symbolic.codegen import module_source
    from ..symbolic.generate import default_dir

    checks = []
    for method in TOLERANCES:
        rtol = TOLERANCES[method][0]
        try:
            report = check_variant(name, method=method)
        except ImportError as exc:  # e.g. an oracle whose framework is not installed
            checks.append(
                Check(method, "not run", rtol, 0, 0, str(exc).splitlines()[0], float("nan"), True, False)
            )
            continue
        except GrusymError as exc:
            checks.append(Check(method, "raised", rtol, 0, 0, str(exc).splitlines()[0], float("nan"), False))
            continue
        worst = report.worst
        where = f"{worst.name}[{', '.join(map(str, worst.index))}]" if worst.index else worst.name
        checks.append(
            Check(
                method,
                COMPARES.get(method, "generated gradients vs numeric"),
                report.rtol,
                len(report.entries),
                sum(e.checked for e in report.entries),
                where,
                worst.error,
                report.ok,
            )
        )
    err, size = jacobian_error(name)
    checks.append(
        Check(
            "jacobian",
            "closed-form J_t (section 4) vs central differences of forward",
            JACOBIAN_RTOL,
            1,
            size,
            "J",
            err,
            err <= JACOBIAN_RTOL,
        )
    )
    path = default_dir() / f"{name}.py"
    stale = not path.exists() or path.read_text(encoding="utf-8") != module_source(name)
    checks.append(
        Check(
            "derive --check",
            "committed module vs the generator",
            0.0,
            1,
            0,
            f"grusym/generated/{name}.py",
            float("nan"),
            not stale,
        )
    )
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return Measurement(tuple(checks), _versions(), now.isoformat())
