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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .context import Context, bounded_entry, fd_element, fd_elements, settle
from .inputs import Point, function_label
from .noise import EPS, estimate_noise, resolution
from .numeric import ComplexStep
from .projected import directional_entry, taylor_entry
from .report import Entry, GradientReport
from .tolerance import tolerance

__all__ = ["AUTO_FD_MAX", "METHODS", "check_gradients"]

Array = NDArray[Any]
AUTO_FD_MAX = 4096
METHODS = ("fd", "directional", "complex", "taylor")
_FLOAT32_RESOLUTION = 1e-11  # a function that resolves less than this (relative) rounds below float64


def _fd_entry(ctx: Context, name: str) -> Entry:
    numeric, noise, kinks = fd_elements(ctx, name)
    return bounded_entry(ctx, name, numeric, noise, kinks=kinks)


def _complex_entry(ctx: Context, name: str, step: ComplexStep) -> Entry:
    xc = {k: v.astype(np.complex128) for k, v in ctx.x.items()}
    numeric = np.array([step.element(xc, name, i) for i in range(ctx.x[name].size)]).reshape(
        ctx.x[name].shape
    )
    noise = np.zeros(numeric.shape)
    fd = tolerance("fd", ctx.dtype)
    by_fd = dataclasses.replace(ctx, rtol=fd.rtol, atol=fd.atol)

    def judge(i: int, a: float, n: float, bound: float) -> tuple[float, float, str]:
        # exactly on a kink (relu at 0) the complex step takes the side its imaginary part points to; the
        # analytic value may take the other: judged one-sided by differences, as fd does, by fd's rule
        value, value_bound, side = fd_element(by_fd, name, i)
        if side and by_fd.agrees(a, value, value_bound):
            return value, value_bound + fd.atol + fd.rtol * max(abs(a), abs(value)), side
        return n, bound, ""

    kinks = settle(ctx, name, numeric, noise, judge)
    return bounded_entry(ctx, name, numeric, noise, kinks=kinks)


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
    # the analytic side's rounding, relative to the function it is compared with: the coarser of its own
    # dtype and the function's (a float64 gradient of a function that rounds through float32 inside
    # matches it only to float32 precision)
    grad_eps = max(
        [float(np.finfo(raw[k].dtype).eps) for k in names if raw[k].dtype.kind == "f"]
        + [float(np.finfo(np.float32).eps) if noisy else EPS]
    )
    scale = max(float(np.max(np.abs(raw[k]), initial=0.0)) for k in names)
    ctx = Context(
        value,
        {k: v.copy() for k, v in point.x.items()},
        {k: np.asarray(raw[k], dtype=np.float64) for k in names},
        f0,
        noise,
        default.rtol if rtol is None else rtol,
        default.atol if atol is None else atol,
        64 * grad_eps * scale,
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
        entry = {"fd": _fd_entry, "directional": directional_entry, "taylor": taylor_entry}[method]
        report.entries = [entry(ctx, name) for name in names]
    return report
