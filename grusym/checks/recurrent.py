"""Recurrent models: check ``loss_and_grads`` against ``loss`` and find the first wrong time step.

Contract: ``check_recurrent(loss, loss_and_grads, params, X, Y, h0)`` calls ``loss(params, X, Y, h0)`` and
``loss_and_grads(params, X, Y, h0) -> (loss, grads, ...)`` in the caller's own layout:

* ``params``: a dict (gradients keyed alike) or a list/tuple (book style; gradients as a list alike);
* ``X``: floats (checked as input ``X``) or integer token ids (a list is fine); time on axis 0, or on axis
  1 with ``batch_first=True``; one sequence without a batch axis (column vectors) is the same thing;
* ``Y``: anything sliceable along the same time axis;
* ``h0``: one array (``"h0"``), a tuple of arrays passed as separate arguments
  (``loss(params, X, Y, h0, c0)``, named by ``state_names``, default h0, c0) or None (no state argument);
* ``reduction``: "mean" (over time steps, or time and batch: any mean over T) or "sum".

``loss=None`` takes the loss from ``loss_and_grads``. Failing entries get the first wrong time step
(:func:`locate_time_step`): for each prefix X[:L], Y[:L] both sides are computed on the prefix problem
from the same initial state, scaled like the full loss (L/T for a mean); the first prefix that disagrees
ends at the step whose loss term is the first with a wrong gradient.

Time steps are counted from 1, as in the reports' mathematics: step t = 1 is the first, computed from
X[0] (the array index is t - 1) and the initial state h_0; the prefix X[:L] holds steps 1..L. Messages
read "first wrong at t = 1 (X[0])"; ``Entry.time_step`` and ``StepLocation.first_wrong`` hold that t
(``Entry.step_index`` the array index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .core import check_gradients
from .inputs import Point, function_label
from .noise import EPS, estimate_noise, fd_noise, fd_step
from .numeric import central
from .report import GradientReport
from .tolerance import allowed, tolerance

__all__ = ["StepLocation", "check_recurrent", "localize_failures", "locate_time_step"]

Array = NDArray[Any]


@dataclass(frozen=True)
class _Layout:
    params: Any
    h0: Any
    batch_first: bool = False
    reduction: str = "mean"
    state_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.reduction not in ("mean", "sum"):
            raise InputError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")

    @property
    def states(self) -> list[str]:
        if self.h0 is None:
            return []
        if not isinstance(self.h0, list | tuple):
            return ["h0"]
        names = self.state_names or (
            ("h0", "c0") if len(self.h0) == 2 else tuple(f"s{i}" for i in range(len(self.h0)))
        )
        if len(names) != len(self.h0):
            raise InputError(f"state_names has {len(names)} names for {len(self.h0)} initial states")
        return list(names)

    def axis(self, X: Any) -> int:
        return 1 if self.batch_first and np.ndim(X) >= 2 else 0

    def steps(self, X: Any) -> int:
        return len(X) if isinstance(X, list | tuple) else int(np.shape(X)[self.axis(X)])

    def prefix(self, A: Any, L: int, X: Any) -> Any:
        if isinstance(A, list | tuple):
            return A[:L]
        a = np.asarray(A)
        if a.ndim == 0:
            return A
        return a[:, :L] if self.axis(X) == 1 and a.ndim >= 2 else a[:L]

    def inputs(self, X: Any) -> tuple[dict[str, Any], bool]:
        tokens = isinstance(X, list | tuple) or np.asarray(X).dtype.kind != "f"
        if isinstance(self.params, Mapping):
            inputs: dict[str, Any] = {str(k): v for k, v in self.params.items()}
        else:
            inputs = {"params": list(self.params)}
        states = self.states
        if len(states) == 1 and not isinstance(self.h0, list | tuple):
            inputs["h0"] = self.h0
        elif states:
            inputs.update(zip(states, self.h0, strict=True))
        if not tokens:
            inputs["X"] = X
        return inputs, tokens

    def call(self, fn: Callable[..., Any], x: Mapping[str, Any], X: Any, Y: Any, tokens: bool) -> Any:
        params = {k: x[k] for k in self.params} if isinstance(self.params, Mapping) else x["params"]
        states = [x[s] for s in self.states]
        return fn(params, X if tokens else x["X"], Y, *states)

    def grads(self, result: Any, label: str) -> dict[str, Any]:
        """``loss_and_grads`` returns (loss, grads, ...): the grads, keyed like ``inputs``."""
        if not (isinstance(result, tuple) and len(result) >= 2):
            raise InputError(f"{label} must return (loss, grads, ...), got {type(result).__name__}")
        grads = result[1]
        if isinstance(grads, Mapping):
            return dict(grads)
        if not isinstance(self.params, Mapping) and isinstance(grads, list | tuple):
            return {
                "params": list(grads[: len(self.params)]),
                **dict(zip(self.states, grads[len(self.params) :], strict=False)),
            }
        raise InputError(
            f"{label} must return (loss, grads dict, ...), got a {type(grads).__name__} for grads"
        )


@dataclass(frozen=True)
class StepLocation:
    """Where along time a gradient element first goes wrong.

    ``first_wrong`` is the step t counted from 1 (its input is X[t - 1]); ``analytic[t - 1]`` and
    ``numeric[t - 1]`` are the contributions of the loss term at step t to the element (differences of
    prefix gradients, scaled like the full loss).
    """

    name: str
    index: tuple[int, ...]
    first_wrong: int | None
    analytic: Array
    numeric: Array

    def __str__(self) -> str:
        where = f"{self.name}[{', '.join(map(str, self.index))}]"
        first = "none" if self.first_wrong is None else f"t = {self.first_wrong} (X[{self.first_wrong - 1}])"
        lines = [f"per-step contributions to {where} (first wrong at {first}; t counts from 1)"]
        lines += [
            f"  t={t:<3d} {f'(X[{t - 1}])':8s} analytic {a: .6e}  numeric {n: .6e}"
            for t, (a, n) in enumerate(zip(self.analytic, self.numeric, strict=True), start=1)
        ]
        return "\n".join(lines)


def _loss_fn(loss: Callable[..., Any] | None, loss_and_grads: Callable[..., Any]) -> Callable[..., Any]:
    if loss is not None:
        return loss
    return lambda *args: loss_and_grads(*args)[0]


def locate_time_step(
    loss: Callable[..., Any] | None,
    loss_and_grads: Callable[..., Any],
    params: Any,
    X: Any,
    Y: Any,
    h0: Any,
    name: str,
    index: tuple[int, ...],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    batch_first: bool = False,
    reduction: str = "mean",
    state_names: tuple[str, ...] | None = None,
    dtype: Any = np.float64,
) -> StepLocation:
    """The first time step t (from 1: t = 1 reads X[0]) at which the gradient of ``name[index]`` goes wrong.

    Layout arguments as for :func:`check_recurrent`. For L = 1..T both sides are computed on the prefix
    problem X[:L], Y[:L] from the same initial state, scaled by L/T for a mean loss: the analytic gradient
    from ``loss_and_grads`` and Richardson central differences of ``loss`` with a step from its resolution
    (measured once, on the full problem), compared by the fd rule of ``dtype``'s tolerance row. The prefix
    of length L holds the loss terms of steps t = 1..L, so ``first_wrong`` = L for the shortest prefix that
    disagrees. Prefixes (not suffixes) keep every step at its absolute position, so a bug tied to the step
    that reads X[k] is reported at t = k + 1.
    """
    layout = _Layout(params, h0, batch_first, reduction, state_names)
    label = function_label(loss_and_grads, "loss_and_grads")
    loss_fn = _loss_fn(loss, loss_and_grads)
    T = layout.steps(X)
    tol = tolerance("fd", dtype)
    rtol = tol.rtol if rtol is None else rtol
    atol = tol.atol if atol is None else atol
    analytic, numeric = np.zeros(T), np.zeros(T)
    first = None
    noise = 0.0
    # longest prefix first: its measured resolution bounds every shorter prefix's (less computation,
    # no more rounding), so the 36-evaluation estimate runs once, not once per prefix
    for L in range(T, 0, -1):
        Xp, Yp = layout.prefix(X, L, X), layout.prefix(Y, L, X)
        inputs, tokens = layout.inputs(Xp)
        point = Point.of(inputs, None)
        if name not in point.x:
            raise InputError(
                f"{name!r} is not a parameter, initial state or float 'X' (known: {sorted(point.x)})"
            )
        x = point.x
        shape = x[name].shape
        if len(index) != len(shape) or any(i >= s for i, s in zip(index, shape, strict=True)):
            continue  # X[t] for t >= L is not part of this prefix: both contributions are zero

        def value(
            xs: dict[str, Array], Xp: Any = Xp, Yp: Any = Yp, tokens: bool = tokens, point: Point = point
        ) -> float:
            out = layout.call(loss_fn, point.build(xs), Xp, Yp, tokens)
            return float(np.real(out[0] if isinstance(out, tuple) else out))

        grads = layout.grads(layout.call(loss_and_grads, point.build(x, native=True), Xp, Yp, tokens), label)
        found, _ = point.gradients(grads, [name], label)
        scale = L / T if reduction == "mean" else 1.0
        f0 = value(x)
        noise = estimate_noise(value, x) if L == T else max(noise, EPS * max(abs(f0), 1.0))
        flat = int(np.ravel_multi_index(index, shape))
        step = fd_step(noise, f0, float(x[name].reshape(-1)[flat]))
        unit = np.zeros(shape)
        unit.reshape(-1)[flat] = 1.0
        a = float(np.asarray(found[name], dtype=np.float64)[index])
        n = central(value, x, name, unit, step)
        analytic[L - 1], numeric[L - 1] = scale * a, scale * n
        if abs(a - n) > allowed(a, n, rtol, atol, fd_noise(noise, step)):
            first = L
    per_step_a = np.diff(analytic, prepend=0.0)
    per_step_n = np.diff(numeric, prepend=0.0)
    return StepLocation(name, tuple(index), first, per_step_a, per_step_n)


def check_recurrent(
    loss: Callable[..., Any] | None,
    loss_and_grads: Callable[..., Any],
    params: Any,
    X: Any,
    Y: Any,
    h0: Any = None,
    *,
    method: str = "fd",
    wrt: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    localize: bool = True,
    seed: int = 0,
    batch_first: bool = False,
    reduction: str = "mean",
    state_names: tuple[str, ...] | None = None,
) -> GradientReport:
    """Check ``loss_and_grads`` against ``loss`` for every parameter, initial state and float ``X``.

    Layouts as in the module docstring; grusym's generated modules use the defaults: X (T, n, d) floats or
    (T, n) token ids, Y (T, n), h0 (n, h), the loss a mean over T*n. method, wrt, exclude, rtol, atol and
    seed as for :func:`grusym.checks.check_gradients`. With ``localize``, each failing entry that names an
    element gets the first wrong time step (:func:`locate_time_step`).

    Time steps are counted from 1 as in the reports: t = 1 is the first step, computed from X[0] and the
    initial state h_0 (h0 here); a failing entry prints "first wrong at t = 1 (X[0])" and holds t in
    ``Entry.time_step`` (the array index in ``Entry.step_index``).
    """
    layout = _Layout(params, h0, batch_first, reduction, state_names)
    inputs, tokens = layout.inputs(X)
    label = function_label(loss_and_grads, "loss_and_grads")
    loss_fn = _loss_fn(loss, loss_and_grads)

    def fun(x: Mapping[str, Any]) -> Any:
        return layout.call(loss_fn, x, X, Y, tokens)

    def grad_fun(x: Mapping[str, Any]) -> dict[str, Any]:
        return layout.grads(layout.call(loss_and_grads, x, X, Y, tokens), label)

    fun.__qualname__ = getattr(loss if loss is not None else loss_and_grads, "__qualname__", "loss")
    grad_fun.__qualname__ = getattr(loss_and_grads, "__qualname__", "loss_and_grads")
    report = check_gradients(
        fun,
        grad_fun,
        inputs,
        method=method,
        wrt=wrt,
        exclude=exclude,
        rtol=rtol,
        atol=atol,
        seed=seed,
        labels=("loss", "loss_and_grads"),
    )
    if localize:
        localize_failures(
            report, loss, loss_and_grads, params, X, Y, h0,
            batch_first=batch_first, reduction=reduction, state_names=state_names,
        )  # fmt: skip
    return report


def localize_failures(
    report: GradientReport,
    loss: Callable[..., Any] | None,
    loss_and_grads: Callable[..., Any],
    params: Any,
    X: Any,
    Y: Any,
    h0: Any,
    **layout: Any,
) -> GradientReport:
    """Attach the first wrong time step to every FAIL entry of ``report`` that names an element."""
    dtype = np.float32 if "float32" in report.note else np.float64
    for k, e in enumerate(report.entries):
        if not e.ok and not e.inconclusive and not e.projected and e.index:
            where = locate_time_step(
                loss, loss_and_grads, params, X, Y, h0, e.name, e.index, dtype=dtype, **layout
            )
            report.entries[k] = dataclasses.replace(e, time_step=where.first_wrong)
    return report
