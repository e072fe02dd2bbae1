"""The random problem of one of grusym's own variants, shared by the gradient checks and the oracle.

Contract: :func:`variant_data` draws (module, params, X, Y, h0) deterministically from ``seed``: weights
N(0, scale^2), biases N(0, (scale/2)^2) (a scale of 3 saturates the gates), X (T, n, d) normal floats or
(T, n) token ids, Y (T, n) targets, h0 (n, h) N(0, 0.25); a cell with per-step inputs comes back as a
:class:`~grusym.stepinputs.HeldFixed` view, its inputs drawn after the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .stepinputs import HeldFixed, draw, inputs_of

__all__ = ["tupled_states", "variant_data"]


def variant_data(
    name: Any, *, T: int, n: int, d: int, h: int, q: int, seed: int, scale: float, tokens: bool
) -> tuple[Any, dict[str, np.ndarray], np.ndarray, np.ndarray, Any]:
    """(module, params, X, Y, h0) of variant ``name`` (or of a generated module, e.g. a user's cell) at the
    given sizes (see the module docstring); h0 is a tuple of states for a cell with several."""
    from . import load

    m = load(name) if isinstance(name, str) else name
    if getattr(m, "INPUT_ELEMENTWISE", False):
        d = h  # a cell that reads X elementwise (SRU's highway, a residual) exists only for d == h
    rng = np.random.default_rng(seed)
    params = m.init_params(d, h, q, seed=seed, scale=scale)
    for key, value in params.items():
        if value.ndim == 1:
            params[key] = rng.normal(0.0, scale / 2, value.shape)
    Y = rng.integers(0, q, (T, n))
    h0 = rng.normal(0.0, 0.5, (n, h))
    X_tokens = rng.integers(0, d, (T, n))
    X = X_tokens if tokens else rng.normal(0.0, 1.0, (T, n, d))
    states = getattr(m, "STATES", ("h",))
    state: Any = h0
    if len(states) > 1:  # the later states drawn after everything else: one-state problems stay as they were
        state = (h0, *(rng.normal(0.0, 0.5, (n, h)) for _ in states[1:]))
    if inputs_of(m) and not isinstance(m, HeldFixed):  # per-step inputs (c.input): drawn last, held fixed
        m = HeldFixed(m, draw(m, T, n, h, rng))
    return m, params, X, Y, state


def tupled_states(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn(params, X, Y, h0, c0, ...) calling a generated module's fn(params, X, Y, (h0, c0, ...)).

    The checks pass several initial states as separate arguments; the generated modules take one tuple.
    The wrapper keeps fn's name, so the checks' messages still name the function the caller passed.
    """

    def call(params: Any, X: Any, Y: Any, *states: Any) -> Any:
        return fn(params, X, Y, states)

    call.__qualname__ = getattr(fn, "__qualname__", "loss_and_grads")
    call.__name__ = getattr(fn, "__name__", "loss_and_grads")
    return call
