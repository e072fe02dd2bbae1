"""The measured part of a report: gradient checks run when the report is built, with versions and the date.

Contract: :func:`measure` runs every method in :data:`grusym.gradcheck.TOLERANCES` on the cell's default
random problem (:func:`grusym.gradcheck.check_variant`; the oracle reads the cell's declaration), checks the
report's closed-form Jacobian of the full state against central differences of the generated ``step``, and,
for a built-in variant, checks that the committed module is what the generator produces. It works the same
for a built-in's name and for any :class:`~grusym.report.context.Subject` (a user's cell). It never raises
for a failing check: failures are reported as rows with ``ok=False``.
"""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...errors import GrusymError

if TYPE_CHECKING:
    from ..context import Subject

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
    refused: bool = (
        False  # the method refused this cell (e.g. complex step on a kink): says why, not a failure
    )

    @property
    def verdict(self) -> str:
        if self.refused:
            return "refused"
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


def jacobian_error(cell: str | Subject, seed: int = 0) -> tuple[float, int]:
    """Worst relative error of the closed-form J_t of the full state against central differences of ``step``.

    cell: a built-in variant's name or a Subject. One step, n = 2, d = 3, h = 4, weights N(0, 1), biases
    N(0, 1/4), every state uniform in (-0.9, 0.9): gates and tanh away from both ends.
    """
    from ..analysis.jacobian import state_jacobian
    from ..context import subject
    from .problem import report_input_size
    from .values import initial_state, step_values

    sub = subject(cell) if isinstance(cell, str) else cell
    m, decl = sub.module, sub.cell
    rng = np.random.default_rng(seed)
    n, d, h, k = 2, 3, 4, len(decl.states)
    d = report_input_size(m, d, h)
    params = m.init_params(d, h, 2, seed=seed, scale=1.0)
    for name, p in params.items():
        if p.ndim == 1:
            params[name] = rng.normal(0.0, 0.5, p.shape)
    X = rng.normal(size=(1, n, d))
    full = rng.uniform(-0.9, 0.9, (n, k * h))
    values = {
        key: v[0] for key, v in step_values(decl, params, X, initial_state(decl, n, h, full), m).items()
    }
    closed = state_jacobian(decl).evaluate(values, params)

    def step(state: np.ndarray) -> np.ndarray:
        new = m.step(params, X[0], initial_state(decl, n, h, state))
        return np.concatenate(new if isinstance(new, tuple) else [new], axis=1)

    eps = 1e-6
    numeric = np.empty((n, k * h, k * h))
    for j in range(k * h):
        e = np.zeros((n, k * h))
        e[:, j] = eps
        numeric[:, :, j] = (step(full + e) - step(full - e)) / (2 * eps)  # rows are independent
    err = np.abs(closed - numeric) / np.maximum(np.maximum(np.abs(closed), np.abs(numeric)), 1e-6)
    return float(err.max()), int(err.size)


def measure(cell: str | Subject) -> Measurement:
    """Run every available check on ``cell``, a built-in's name or a Subject (see the module docstring)."""
    from ...gradcheck import TOLERANCES, check_variant
    from ...oracle import check_oracle
    from ...symbolic.codegen import module_source
    from ...symbolic.generate import default_dir
    from ..context import subject

    sub = subject(cell) if isinstance(cell, str) else cell
    name = sub.name
    checks = []
    for method in TOLERANCES:
        rtol = TOLERANCES[method][0]
        try:
            if method == "oracle":  # the oracle differentiates the declaration itself, a user's too
                report = check_oracle(sub.module, cell=sub.cell)
            else:
                report = check_variant(sub.module, method=method)
        except ImportError as exc:  # e.g. an oracle whose framework is not installed
            checks.append(
                Check(method, "not run", rtol, 0, 0, str(exc).splitlines()[0], float("nan"), True, False)
            )
            continue
        except GrusymError as exc:  # the method refuses this loss (and says why): the others still run
            why = str(exc).splitlines()[0].split(": ", 1)[-1]
            what = f"{COMPARES.get(method, method)}; refused for this cell: {why}"
            checks.append(Check(method, what, rtol, 0, 0, "-", float("nan"), True, True, True))
            continue
        worst = report.worst
        # positions counted from 1, as in the report's text
        where = f"{worst.name}[{', '.join(str(i + 1) for i in worst.index)}]" if worst.index else worst.name
        checks.append(
            Check(
                method,
                COMPARES.get(method, "generated gradients vs numeric"),
                report.rtol,
                len(report.entries),
                sum(e.checked for e in report.entries if e.name != "loss"),  # the oracle's loss: no gradient
                where,
                worst.error,
                report.ok,
            )
        )
    err, size = jacobian_error(sub)
    checks.append(
        Check(
            "jacobian",
            "closed-form J_t (Appendix A) vs central differences of step",
            JACOBIAN_RTOL,
            1,
            size,
            "J",
            err,
            err <= JACOBIAN_RTOL,
        )
    )
    if not sub.builtin:  # a user's module lives in the user's tree: its own derive --cell --check
        checks.append(
            Check("derive --check", "not run: a user's cell", 0.0, 0, 0, "grusym derive --cell ... --check",
                  float("nan"), True, False)
        )  # fmt: skip
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        return Measurement(tuple(checks), _versions(), now.isoformat())
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
