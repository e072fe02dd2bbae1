"""Gradient checks applied to grusym's own variants, and the import path of every checking name.

Contract: the checking machinery lives in :mod:`grusym.checks` (numeric methods, noise and tolerances, the
report type, recurrent adapters, vector-Jacobian checks); this module re-exports its public names under
their historical path (``grusym.gradcheck.check_gradients``, ``check_recurrent``, ``Entry``, ...) and adds
the variant-specific entry points: :func:`variant_problem` and :func:`check_variant`, which can also ask
the symbolic oracle (:mod:`grusym.oracle`). It sits above both; neither imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .checks.core import AUTO_FD_MAX, METHODS, check_gradients
from .checks.noise import EPS, estimate_noise
from .checks.recurrent import StepLocation, check_recurrent, localize_failures, locate_time_step
from .checks.report import Entry, GradientReport
from .checks.tolerance import TABLE, TOLERANCES, Tolerance, relative_error, rounding_floor
from .checks.vjp import check_layer, check_vjp
from .errors import InputError
from .problems import tupled_states
from .problems import variant_data as _variant_data
from .stepinputs import refuse_gradient

__all__ = [
    "AUTO_FD_MAX",
    "METHODS",
    "TABLE",
    "TOLERANCES",
    "Entry",
    "GradientReport",
    "StepLocation",
    "Tolerance",
    "check_gradients",
    "check_layer",
    "check_recurrent",
    "check_variant",
    "check_vjp",
    "estimate_noise",
    "localize_failures",
    "locate_time_step",
    "noise_floor",
    "relative_error",
    "rounding_floor",
    "variant_problem",
]

Fun = Callable[[dict[str, Any]], Any]


def noise_floor(f0: float, rtol: float, atol: float, noise: float = 0.0) -> float:
    """The smallest magnitude at which a relative comparison is meaningful given rounding in ``fun``.

    Kept for callers of the old relative-error floor: 8 max(noise, eps max(|f0|, 1)) / eps^(1/5), over
    rtol. The checks themselves now add the measured noise bound to the tolerance instead.
    """
    rounding = 8 * max(noise, EPS * max(abs(f0), 1.0)) / EPS**0.2
    return max(atol, rounding / rtol)


def variant_problem(
    name: str,
    *,
    T: int = 3,
    n: int = 2,
    d: int = 3,
    h: int = 4,
    q: int = 5,
    seed: int = 0,
    scale: float = 1.0,
    tokens: bool = False,
) -> tuple[Fun, Fun, dict[str, Any]]:
    """A random float64 problem for variant ``name``: ``fun``, ``grad_fun`` and the point ``inputs``.

    ``inputs`` holds every parameter, ``h0`` and (unless ``tokens``) the float input ``X``; weights are
    N(0, scale^2) and biases N(0, (scale/2)^2), so a scale of 3 saturates the gates.
    """
    m, params, X, Y, h0 = _variant_data(name, T=T, n=n, d=d, h=h, q=q, seed=seed, scale=scale, tokens=tokens)
    inputs: dict[str, Any] = {**params, "h0": h0}
    if not tokens:
        inputs["X"] = X

    def split(x: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
        return {k: x[k] for k in params}, (X if tokens else x["X"]), x["h0"]

    def fun(x: dict[str, Any]) -> Any:
        p, Xp, hp = split(x)
        return m.loss(p, Xp, Y, hp)

    def grad_fun(x: dict[str, Any]) -> dict[str, Any]:
        p, Xp, hp = split(x)
        return dict(m.loss_and_grads(p, Xp, Y, hp)[1])

    return fun, grad_fun, inputs


def check_variant(
    name: Any,
    *,
    method: str = "fd",
    seed: int = 0,
    scale: float = 1.0,
    loss_and_grads: Callable[..., Any] | None = None,
    localize: bool = True,
    wrt: Sequence[str] | None = None,
    **sizes: Any,
) -> GradientReport:
    """Check every gradient of the generated module ``name`` (a built-in's name, or a generated module such as
    a user's cell) on a random problem (``variant_problem``); a cell with several states checks each one.

    loss_and_grads: check this function (same signature as the module's) instead of the generated one,
    against the generated ``loss``. method ``"oracle"`` compares with the symbolic oracle
    (:func:`grusym.oracle.check_oracle`, tiny sizes). Failing entries name the first wrong time step.
    wrt: check only these inputs (parameters, ``h0``, ``X``). A cell with per-step inputs (``c.input``)
    is checked with them drawn once and held fixed; a ``wrt`` naming one is refused.
    """
    if wrt is not None:
        from . import load  # the package imports this module

        refuse_gradient(load(name) if isinstance(name, str) else name, wrt)
    if method == "oracle":
        from .oracle import check_oracle

        if wrt is not None:
            raise InputError("the oracle checks every gradient: wrt applies to the numeric methods")
        return check_oracle(
            name, seed=seed, scale=scale, loss_and_grads=loss_and_grads, localize=localize, **sizes
        )
    full = {"T": 3, "n": 2, "d": 3, "h": 4, "q": 5, "tokens": False, **sizes}
    m, params, X, Y, h0 = _variant_data(name, seed=seed, scale=scale, **full)
    loss, lag = m.loss, loss_and_grads or m.loss_and_grads
    names = None
    if isinstance(h0, tuple):  # the checks pass states as arguments, the generated modules take one tuple
        names = tuple(f"{s}0" for s in m.STATES)
        loss = tupled_states(m.loss)
        lag = tupled_states(lag)
    return check_recurrent(
        loss, lag, params, X, Y, h0, method=method, localize=localize, seed=seed, state_names=names, wrt=wrt
    )
