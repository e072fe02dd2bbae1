"""Check analytic gradients against numeric ones and say exactly where they disagree.

Contract: ``check_gradients(fun, grad_fun, inputs, method=...)`` takes a scalar ``fun`` and its hand-written
gradient over a dict (``fun(inputs)``) or a tuple of positional arguments (``fun(*inputs)``), nested or
not (see :mod:`grusym.checks.inputs`). ``grad_fun`` returns the gradients in the inputs' structure, or
``(loss, gradients, ...)``; with ``fun=None`` that loss is the function checked. The caller's arrays are
never modified. The result is a :class:`GradientReport` with one :class:`Entry` per checked array: its
worst element (the one furthest outside the tolerance rule of :mod:`grusym.checks.tolerance`), analytic and
numeric values and the relative error. A failing entry always names one element, also for the methods that
probe whole arrays at once (they bisect the failing array down to an element).

Methods:

* ``"fd"``: central differences + Richardson extrapolation, one element at a time, the step chosen from
  fun's measured resolution (:mod:`grusym.checks.noise`);
* ``"directional"``: <grad, v> against the directional difference along a random v per array;
* ``"complex"``: the complex step Im f(x + i s e_k) / s, refused when the imaginary part is lost;
* ``"taylor"``: the remainder |f(x + e v) - f(x) - e <g, v>| must fall at rate 2 as e halves (rate 1 for a
  wrong gradient), fitted where it stands above the noise; "inconclusive" when the sweep cannot resolve
  ``atol`` of sum |g_i v_i|;
* ``"auto"``: ``"fd"`` up to ``AUTO_FD_MAX`` elements, ``"directional"`` above.

The tolerance row is ``TABLE[dtype][method]`` for the lowest precision among the inputs, the gradients and
fun's measured resolution; the report's note says which and why. The analytic side runs at the caller's
dtypes (a float32 code is checked as it runs), the numeric side at float64 copies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .inputs import Point, function_label
from .noise import EPS, estimate_noise, fd_noise, fd_step, resolution
from .numeric import ComplexStep, central, taylor_sweep
from .report import Entry, GradientReport
from .tolerance import allowed, relative_error, tolerance

__all__ = ["AUTO_FD_MAX", "METHODS", "check_gradients"]

Array = NDArray[Any]
AUTO_FD_MAX = 4096
METHODS = ("fd", "directional", "complex", "taylor")
_FLOAT32_RESOLUTION = 1e-11  # a function that resolves less than this (relative) rounds below float64


@dataclass
class _Context:
    value: Callable[[dict[str, Array]], float]
    x: dict[str, Array]
    analytic: dict[str, Array]
    f0: float
    noise: float
    rtol: float
    atol: float
    rounding: float  # the analytic side's own rounding: 64 eps(its dtype) * largest gradient element
    rng: np.random.Generator
    dtype: Any = np.float64


def _bounded_entry(ctx: _Context, name: str, numeric: Array, noise_bound: Any, **extra: Any) -> Entry:
    """The element furthest outside the rule, its printed error and the bound it was held to."""
    a = ctx.analytic[name].astype(np.float64)
    bound = allowed(a, numeric, ctx.rtol, ctx.atol, noise_bound + ctx.rounding)
    excess = np.abs(a - numeric) / bound
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else ()
    err = relative_error(a, numeric)
    return Entry(
        name,
        tuple(int(i) for i in worst),
        float(a[worst]),
        float(numeric[worst]),
        float(err[worst]) if err.size else 0.0,
        bool(np.all(excess <= 1.0)),
        int(a.size),
        bound=float(np.broadcast_to(bound, a.shape)[worst]) if a.size else 0.0,
        **extra,
    )


def _fd_element(ctx: _Context, name: str, i: int) -> tuple[float, float]:
    """(numeric derivative of flat element i, the rounding bound it carries)."""
    flat_x = ctx.x[name].reshape(-1)
    step = fd_step(ctx.noise, ctx.f0, float(flat_x[i]))
    unit = np.zeros(ctx.x[name].shape)
    unit.reshape(-1)[i] = 1.0
    return central(ctx.value, ctx.x, name, unit, step), fd_noise(ctx.noise, step)


def _fd_entry(ctx: _Context, name: str) -> Entry:
    numeric = np.empty(ctx.x[name].shape)
    noise = np.empty(ctx.x[name].shape)
    for i in range(numeric.size):
        numeric.reshape(-1)[i], noise.reshape(-1)[i] = _fd_element(ctx, name, i)
    return _bounded_entry(ctx, name, numeric, noise)


def _direction(ctx: _Context, name: str) -> Array:
    """Random signs times U(0.5, 1), scaled by max(|x|, 1): every element moves, none cancels exactly."""
    base = ctx.x[name]
    v = ctx.rng.choice([-1.0, 1.0], base.shape) * ctx.rng.uniform(0.5, 1.0, base.shape)
    return v * np.maximum(np.abs(base), 1.0)


def _localize(ctx: _Context, name: str, fails: Callable[[Array], bool], **extra: Any) -> Entry:
    """Bisect the elements of a failing array down to a few, then compare those one by one (fd)."""
    shape = ctx.x[name].shape
    candidates = np.arange(int(np.prod(shape)))
    while candidates.size > 1:
        half = candidates.size // 2
        for part in (candidates[:half], candidates[half:]):
            mask = np.zeros(shape, dtype=bool)
            mask.reshape(-1)[part] = True
            if fails(mask):
                candidates = part
                break
        else:
            break  # errors that cancel between the halves: compare the rest element by element
    numeric = ctx.analytic[name].astype(np.float64).copy()
    noise = np.zeros(shape)
    for i in candidates:
        numeric.reshape(-1)[i], noise.reshape(-1)[i] = _fd_element(ctx, name, int(i))
    entry = _bounded_entry(ctx, name, numeric, noise, **extra)
    return dataclasses.replace(entry, ok=False)


def _directional(ctx: _Context, name: str, u: Array) -> tuple[float, float, float, float]:
    """(<g, u>, the directional difference along u, the printed error, the allowed |difference|)."""
    g = ctx.analytic[name].astype(np.float64)
    analytic = float(np.sum(g * u))
    step = fd_step(ctx.noise, ctx.f0)
    numeric = central(ctx.value, ctx.x, name, u, step)
    # measured against sum |g_i u_i|, the size of the terms before cancellation, so a direction that
    # happens to be nearly orthogonal to g does not inflate the error
    scale = max(abs(analytic), abs(numeric), float(np.sum(np.abs(g * u))))
    bound = ctx.atol + ctx.rtol * scale + fd_noise(ctx.noise, step) + ctx.rounding * float(np.sum(np.abs(u)))
    diff = abs(analytic - numeric)
    return analytic, numeric, diff / scale if scale > 0 else 0.0, bound


def _directional_entry(ctx: _Context, name: str) -> Entry:
    u = _direction(ctx, name)
    analytic, numeric, err, bound = _directional(ctx, name, u)
    if abs(analytic - numeric) <= bound:
        return Entry(name, (), analytic, numeric, err, True, 1, projected=True, bound=bound)

    def fails(mask: Array) -> bool:
        a, n, _, b = _directional(ctx, name, u * mask)
        return abs(a - n) > b

    return _localize(ctx, name, fails)


def _complex_entry(ctx: _Context, name: str, step: ComplexStep) -> Entry:
    xc = {k: v.astype(np.complex128) for k, v in ctx.x.items()}
    numeric = np.array([step.element(xc, name, i) for i in range(ctx.x[name].size)]).reshape(
        ctx.x[name].shape
    )
    return _bounded_entry(ctx, name, numeric, 0.0)


def _taylor_entry(ctx: _Context, name: str) -> Entry:
    minimum = 2 - ctx.rtol
    v = _direction(ctx, name)
    g = ctx.analytic[name].astype(np.float64)
    slope_error = ctx.rounding * float(np.sum(np.abs(v)))  # the analytic side's own rounding of <g, v>
    result = taylor_sweep(ctx.value, ctx.x, name, g, v, ctx.f0, ctx.noise, slope_error)
    scale = max(abs(result.slope), abs(result.numeric), result.scale)
    err = abs(result.slope - result.numeric) / scale if scale > 0 else 0.0
    if result.rates and result.rate < minimum:

        def fails(mask: Array) -> bool:
            u = v * mask
            sweep = taylor_sweep(
                ctx.value, ctx.x, name, g, u, ctx.f0, ctx.noise, ctx.rounding * float(np.sum(np.abs(u)))
            )
            return bool(sweep.rates) and sweep.rate < minimum

        return _localize(ctx, name, fails, rate=result.rate)  # the rate the verdict used
    # what the sweep could resolve, against what the rule asks: atol of sum |g v|, or what fd accepts
    # absolutely (a gradient at rounding level, e.g. behind a saturated gate)
    fd_absolute = tolerance("fd", ctx.dtype).atol + fd_noise(ctx.noise, fd_step(ctx.noise, ctx.f0))
    needed = ctx.atol * result.scale + fd_absolute + slope_error
    entry = Entry(
        name, (), result.slope, result.numeric, err, True, 1, rate=result.rate, projected=True, bound=needed
    )
    if result.seen <= needed:
        return entry
    relative = result.seen / result.scale if result.scale > 0 else float("inf")
    why = (
        "the remainder never rose above the noise"
        if not result.rates
        else f"the remainder reaches the noise ({result.threshold:.1e}) too early"
    )
    why += f"; the sweep resolves gradient errors of {relative:.1e} of sum |g v|, the tolerance asks "
    return dataclasses.replace(entry, ok=False, inconclusive=f"{why}{ctx.atol:.0e}: use fd")


def _value_of(result: Any, label: str) -> float:
    if isinstance(result, tuple) and result:
        result = result[0]  # (loss, ...) from a function that also returns gradients or a cache
    a = np.asarray(result)
    if a.size != 1:
        raise InputError(
            f"{label} must return a scalar loss, got an array of shape {a.shape}; for array outputs "
            "use check_vjp"
        )
    return float(np.real(a.reshape(())))


def check_gradients(
    fun: Callable[..., Any] | None,
    grad_fun: Callable[..., Any],
    inputs: Any,
    *,
    method: str = "fd",
    wrt: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    labels: tuple[str, str] = ("fun", "grad_fun"),
) -> GradientReport:
    """Compare ``grad_fun`` with numeric derivatives of ``fun`` for every float input (or those in ``wrt``).

    fun: inputs -> scalar loss (``fun(inputs)`` for a dict, ``fun(*inputs)`` for a tuple), or None to use
    the loss that ``grad_fun`` returns first. grad_fun: inputs -> gradients in the inputs' structure (dict
    or tuple, same shapes), or (loss, gradients, ...). inputs: the point, never modified. method: "fd",
    "directional", "complex", "taylor" or "auto" (module docstring). wrt / exclude: leaf or top-level
    names to check / to skip (inputs without a gradient, e.g. an ignored initial state). rtol / atol
    default to ``tolerance(method, dtype)`` (``grusym.checks.tolerance``). seed: the random directions of
    "directional" and "taylor". labels: how messages name fun and grad_fun. Raises InputError for an
    unknown method or bad inputs; never raises on a wrong gradient (call ``report.raise_if_failed()``).
    """
    fun_label = function_label(fun, labels[0]) if fun is not None else function_label(grad_fun, labels[1])
    grad_label = function_label(grad_fun, labels[1])
    point = Point.of(inputs, fun if fun is not None else grad_fun)
    names = point.select(wrt, exclude)
    if method == "auto":
        method = "fd" if sum(point.x[k].size for k in names) <= AUTO_FD_MAX else "directional"
    if method not in METHODS:
        hint = (
            " (the oracle needs a variant: check_variant(name, method='oracle'))"
            if method == "oracle"
            else ""
        )
        raise InputError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}, auto{hint}")
    raw, loss = point.gradients(point.call(grad_fun, point.x, native=True), names, grad_label)
    if fun is None and loss is None:
        raise InputError(f"fun is None, so {grad_label} must return (loss, gradients), not gradients alone")
    target: Callable[..., Any] = fun if fun is not None else grad_fun

    def value(x: dict[str, Array]) -> float:
        return _value_of(point.call(target, x), fun_label)

    f0 = value(point.x)
    noise = estimate_noise(value, point.x)
    low = min(
        [point.dtypes[k].itemsize for k in names]
        + [raw[k].dtype.itemsize for k in names if raw[k].dtype.kind == "f"]
    )
    noisy = resolution(noise, f0) > _FLOAT32_RESOLUTION
    dtype = np.float32 if low < 8 or noisy else np.float64
    default = tolerance(method, dtype)
    grad_eps = min(float(np.finfo(raw[k].dtype).eps) if raw[k].dtype.kind == "f" else EPS for k in names)
    scale = max(float(np.max(np.abs(raw[k]), initial=0.0)) for k in names)
    ctx = _Context(
        value,
        {k: v.copy() for k, v in point.x.items()},
        {k: np.asarray(raw[k], dtype=np.float64) for k in names},
        f0,
        noise,
        default.rtol if rtol is None else rtol,
        default.atol if atol is None else atol,
        64 * max(grad_eps, EPS) * scale,
        np.random.default_rng(seed),
        dtype,
    )
    note = ""
    if dtype == np.float32:
        why = "inputs or gradients are float32" if low < 8 else "its resolution is below float64's"
        copies = "complex128" if method == "complex" else "float64"
        r = resolution(noise, f0)
        if noisy:  # the code rounds through float32 inside: the reference carries that resolution
            reference = f"reference: {fun_label} at {copies} inputs, resolving only {r:.1e} (float32 inside)"
        else:
            reference = f"reference: {fun_label} run at {copies} copies of the inputs (resolution {r:.0e})"
        note = f"float32 tolerances ({why}); {reference}"
    report = GradientReport(method, ctx.rtol, note=note, atol=ctx.atol)
    if method == "complex":
        step = ComplexStep(lambda xc: point.call(target, xc), fun_label)
        step.probe(value, ctx.x, names, noise, f0)
        report.entries = [_complex_entry(ctx, name, step) for name in names]
    else:
        entry = {"fd": _fd_entry, "directional": _directional_entry, "taylor": _taylor_entry}[method]
        report.entries = [entry(ctx, name) for name in names]
    return report
