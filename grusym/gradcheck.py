"""Check analytic gradients against numeric ones and say exactly where they disagree.

Contract: ``check_gradients(fun, grad_fun, inputs, method=...)`` takes ``fun(inputs) -> float`` and
``grad_fun(inputs) -> dict`` over a dict of float arrays, never modifies the caller's arrays, evaluates in
float64 and returns a :class:`GradientReport` with one :class:`Entry` per checked array: its worst element,
the analytic value (from ``grad_fun``), the numeric one and the relative error
``|analytic - numeric| / max(|analytic|, |numeric|, floor)``. A failing entry always names one element, also
for the methods that probe whole arrays at once (they bisect the failing array down to an element).

Methods (tolerances: the one table ``TOLERANCES``):

* ``"fd"``: central differences + Richardson extrapolation, one element at a time, step scaled per element;
* ``"directional"``: <grad, v> against the directional difference along a random v per array (4 calls of
  ``fun`` per array instead of 4 per element);
* ``"complex"``: the complex step Im f(x + i s e_k) / s, no cancellation (``fun`` must accept complex input);
* ``"taylor"``: the remainder |f(x + e v) - f(x) - e <g, v>| must fall at rate 2 as e halves (rate 1 for a
  wrong gradient); e runs from 1e-2 down to where the remainder is rounding noise, so the verdict does not
  depend on a step size;
* ``"auto"``: ``"fd"`` up to ``AUTO_FD_MAX`` elements, ``"directional"`` above.

Recurrent models in grusym's convention (``loss(params, X, Y, h0)`` and ``loss_and_grads(params, X, Y, h0)``
with the mean over all T*n positions) go through :func:`check_recurrent`, which also locates the first
time step whose loss term has a wrong gradient (:func:`locate_time_step`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .errors import GradientCheckError, InputError, ShapeError

__all__ = [
    "TOLERANCES",
    "Entry",
    "GradientReport",
    "StepLocation",
    "check_gradients",
    "check_recurrent",
    "check_variant",
    "estimate_noise",
    "locate_time_step",
    "noise_floor",
    "relative_error",
    "rounding_floor",
    "variant_problem",
]

Array = NDArray[Any]
Fun = Callable[[dict[str, Array]], Any]
GradFun = Callable[[dict[str, Array]], Mapping[str, Any]]
LossFun = Callable[[Mapping[str, Array], Array, Array, Array], Any]

_EPS = float(np.finfo(np.float64).eps)
# central differences with Richardson extrapolation have truncation error O(step^4) and rounding error
# O(eps |f| / step); a step of eps^(1/5) relative to max(|x|, 1) balances the two
_FD_STEP = _EPS ** (1 / 5)
_COMPLEX_STEP = 1e-20  # no subtraction, so any step far below sqrt(eps) gives full precision
_TAYLOR_START = 1e-2
_TAYLOR_HALVINGS = 48
AUTO_FD_MAX = 4096


class Tolerance(NamedTuple):
    rtol: float
    atol: float


# every tolerance of every check, in one place (all checks run in float64)
TOLERANCES: dict[str, Tolerance] = {
    "fd": Tolerance(1e-5, 1e-7),
    "directional": Tolerance(1e-6, 1e-7),
    "complex": Tolerance(1e-9, 1e-13),
    # rtol: how far the observed rate may fall below 2; atol: remainders below atol * max(|f|, 1) are
    # rounding noise and give no rate
    "taylor": Tolerance(0.2, 1e-12),
    # the symbolic oracle (grusym.oracle) evaluated at 40 digits against float64 code
    "oracle": Tolerance(1e-10, 1e-14),
}
METHODS = ("fd", "directional", "complex", "taylor")


def noise_floor(f0: float, rtol: float, atol: float, noise: float = 0.0) -> float:
    """The smallest magnitude at which a relative comparison is meaningful given rounding in ``fun``.

    noise: the measured rounding noise of ``fun`` (``estimate_noise``); at least eps * max(|f0|, 1).
    A central difference with Richardson extrapolation carries about 2 noise / step of it; 8 is a margin.
    """
    rounding = 8 * max(noise, _EPS * max(abs(f0), 1.0)) / _FD_STEP
    return max(atol, rounding / rtol)


def estimate_noise(fun: Fun, x: dict[str, Array], points: int = 9) -> float:
    """The rounding noise of ``fun`` near ``x``, measured, not assumed (More and Wild's ECnoise idea).

    ``fun`` is evaluated at ``points`` equally spaced points 1e-9 apart (relative) along a fixed random
    direction; the smooth part of their 4th differences is ~1e-36, so what is left is rounding: its RMS
    divided by sqrt(70) (the 4th difference of independent noise has variance 70 sigma^2). A loss whose
    intermediate values dwarf the loss itself (log-sum-exp of logits near 1000) rounds at eps * 1000,
    not eps * |loss|.
    """
    rng = np.random.default_rng(20240601)  # fixed: the estimate must not move the checks' directions
    shifted = {k: v.copy() for k, v in x.items()}
    steps = {k: rng.choice([-1.0, 1.0], v.shape) * np.maximum(np.abs(v), 1.0) * 1e-9 for k, v in x.items()}
    values = []
    for j in range(points):
        for k in x:
            shifted[k] = x[k] + (j - points // 2) * steps[k]
        values.append(_value(fun, shifted))
    diffs = np.diff(np.array(values), n=4)
    return float(np.sqrt(np.mean(diffs**2) / 70.0))


def rounding_floor(scale: float, rtol: float, atol: float) -> float:
    """The floor for comparing float64 analytic gradients with an exact reference (complex step, oracle).

    scale: the largest gradient element of the whole problem. The analytic side carries an absolute
    rounding error of about 64 eps scale (a saturated gate's z*(1-z) loses all relative precision), so
    elements below that divided by rtol are compared absolutely.
    """
    return max(atol, 64 * _EPS * scale / rtol)


def relative_error(analytic: Array, numeric: Array, atol: float) -> Array:
    """|a - n| / max(|a|, |n|, atol), elementwise: relative where values are large, absolute near zero."""
    return np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)


@dataclass(frozen=True)
class Entry:
    """The verdict on one array: its worst element (or, for a passing directional check, the projection)."""

    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    error: float
    ok: bool
    checked: int  # elements compared (directions probed for "directional" and "taylor")
    time_step: int | None = None
    rate: float | None = None  # observed Taylor convergence rate (2 for a right gradient, 1 for a wrong one)
    projected: bool = False  # analytic = <g, v> and numeric = its directional difference, no single element
    reference: str = "numeric"  # what the analytic value is compared with

    @property
    def where(self) -> str:
        if self.projected:
            return f"{self.name} along a random direction"
        return f"{self.name}[{', '.join(map(str, self.index))}]" if self.index else self.name

    def describe(self) -> str:
        text = (
            f"{self.where}: analytic {self.analytic:.10g} vs {self.reference} {self.numeric:.10g} "
            f"(relative error {self.error:.2e})"
        )
        if self.rate is not None:
            text += f", Taylor rate {self.rate:.2f} (expected 2)"
        if self.time_step is not None:
            text += f", first wrong at t = {self.time_step}"
        return text


@dataclass
class GradientReport:
    """The result of a gradient check: ``ok``, the ``worst`` entry and a table (``str(report)``)."""

    method: str
    rtol: float
    entries: list[Entry] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    @property
    def worst(self) -> Entry:
        failing = [e for e in self.entries if not e.ok]
        return max(failing or self.entries, key=lambda e: e.error)

    @property
    def failures(self) -> list[Entry]:
        return [e for e in self.entries if not e.ok]

    def __str__(self) -> str:
        rates = any(e.rate is not None for e in self.entries)
        reference = self.entries[0].reference if self.entries else "numeric"
        head = ["parameter", "worst rel. error", "where", "analytic", reference]
        rows = [(*head, "rate", "verdict") if rates else (*head, "verdict")]
        for e in self.entries:
            where = "along v" if e.projected else str(list(e.index))
            if e.time_step is not None:
                where += f" t={e.time_step}"
            row = [e.name, f"{e.error:.2e}", where, f"{e.analytic:.6g}", f"{e.numeric:.6g}"]
            if rates:
                row.append("-" if e.rate is None or math.isinf(e.rate) else f"{e.rate:.2f}")
            rows.append((*row, "ok" if e.ok else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        tol = f"rate >= {2 - self.rtol:.2f}" if self.method == "taylor" else f"rtol {self.rtol:.0e}"
        lines = [f"gradient check ({self.method}, {tol})" + (f"; {self.note}" if self.note else "")]
        lines += ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.append(
            "all gradients agree" if self.ok else f"{len(self.failures)} of {len(self.entries)} FAILED"
        )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` naming each failing parameter and element, worst first."""
        if not self.ok:
            failing = "; ".join(e.describe() for e in sorted(self.failures, key=lambda e: -e.error))
            raise GradientCheckError(f"gradient check ({self.method}) failed: {failing}")


def _copy_inputs(inputs: Mapping[str, Any]) -> dict[str, Array]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError("inputs must be a non-empty dict of float arrays")
    out = {}
    for k, v in inputs.items():
        # C order: the perturbations write through reshape(-1), which copies a transposed view's data
        a = np.array(v, dtype=np.float64, copy=True, order="C") if np.asarray(v).dtype.kind in "fiu" else None
        if a is None:
            raise InputError(f"inputs[{k!r}] must be a float array, got dtype {np.asarray(v).dtype}")
        if not np.isfinite(a).all():
            raise InputError(
                f"inputs[{k!r}] holds NaN or infinity; gradients can only be checked at finite points"
            )
        out[k] = a
    return out


def _analytic(grad_fun: GradFun, x: dict[str, Array], names: list[str]) -> dict[str, Array]:
    grads = grad_fun({k: v.copy() for k, v in x.items()})
    if not isinstance(grads, Mapping):
        raise InputError(f"grad_fun must return a dict of gradients, got {type(grads).__name__}")
    out = {}
    for name in names:
        if name not in grads:
            raise InputError(f"grad_fun returned no gradient for {name!r} (it returned {sorted(grads)})")
        g = np.asarray(grads[name])
        if np.iscomplexobj(g) or g.dtype.kind not in "fiu":
            raise InputError(f"the gradient of {name!r} must be a real float array, got dtype {g.dtype}")
        if g.shape != x[name].shape:
            raise ShapeError(
                f"gradient of {name!r} has shape {g.shape}, but {name!r} has shape {x[name].shape}"
            )
        out[name] = g.astype(np.float64)
    return out


def _value(fun: Fun, x: dict[str, Array]) -> float:
    return float(np.real(fun(x)))


def _fd_element(fun: Fun, x: dict[str, Array], name: str, i: int) -> float:
    """Central difference with Richardson extrapolation for flat element ``i`` of ``x[name]``."""
    flat = x[name].reshape(-1)
    original = float(flat[i])
    step = _FD_STEP * max(abs(original), 1.0)

    def central(s: float) -> float:
        flat[i] = original + s
        plus = _value(fun, x)
        flat[i] = original - s
        minus = _value(fun, x)
        flat[i] = original
        return (plus - minus) / (2 * s)

    return (4 * central(step / 2) - central(step)) / 3


def _fd_numeric(fun: Fun, x: dict[str, Array], name: str) -> Array:
    """Central differences with Richardson extrapolation, one element at a time, step scaled per element."""
    numeric = np.empty_like(x[name])
    out = numeric.reshape(-1)
    for i in range(out.size):
        out[i] = _fd_element(fun, x, name, i)
    return numeric


def _complex_numeric(fun: Fun, x: dict[str, Array], name: str) -> Array:
    """Im f(x + i s e_k) / s for every element k: no subtraction, so no cancellation."""
    xc = {k: v.astype(np.complex128) for k, v in x.items()}
    flat = xc[name].reshape(-1)
    numeric = np.empty(flat.size)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + 1j * _COMPLEX_STEP
        value = fun(xc)
        flat[i] = original
        if not np.iscomplexobj(value):
            raise InputError(
                f"fun returned a real {type(value).__name__} for complex inputs, so the complex step cannot "
                "work: make fun complex-analytic (no abs, max, comparisons or float() on values) or use "
                "method='fd'"
            )
        numeric[i] = float(np.imag(value)) / _COMPLEX_STEP
    return numeric.reshape(x[name].shape)


@dataclass
class _Context:
    fun: Fun
    x: dict[str, Array]
    analytic: dict[str, Array]
    f0: float
    noise: float  # measured rounding noise of fun at x
    rtol: float
    atol: float
    rng: np.random.Generator


def _worst_entry(ctx: _Context, name: str, numeric: Array, floor: float, **extra: Any) -> Entry:
    analytic = ctx.analytic[name]
    err = relative_error(analytic, numeric, floor)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    e = float(err[worst]) if err.size else 0.0
    return Entry(
        name,
        tuple(int(i) for i in worst),
        float(analytic[worst]),
        float(numeric[worst]),
        e,
        e <= ctx.rtol,
        int(err.size),
        **extra,
    )


def _fd_entry(ctx: _Context, name: str) -> Entry:
    numeric = _fd_numeric(ctx.fun, ctx.x, name)
    return _worst_entry(ctx, name, numeric, noise_floor(ctx.f0, ctx.rtol, ctx.atol, ctx.noise))


def _complex_entry(ctx: _Context, name: str) -> Entry:
    numeric = _complex_numeric(ctx.fun, ctx.x, name)
    # the complex step is exact to rounding; what is left is rounding in the analytic gradient itself
    scale = max(float(np.max(np.abs(g), initial=0.0)) for g in ctx.analytic.values())
    floor = rounding_floor(scale, ctx.rtol, ctx.atol)
    return _worst_entry(ctx, name, numeric, floor)


def _direction(ctx: _Context, name: str) -> Array:
    """Random signs times U(0.5, 1), scaled by max(|x|, 1): every element moves, none cancels exactly."""
    base = ctx.x[name]
    v = ctx.rng.choice([-1.0, 1.0], base.shape) * ctx.rng.uniform(0.5, 1.0, base.shape)
    return v * np.maximum(np.abs(base), 1.0)


def _localize(
    ctx: _Context, name: str, fails: Callable[[Array], bool]
) -> tuple[tuple[int, ...], float, float, float]:
    """Bisect the elements of a failing array down to one; return (index, analytic, numeric, rel. error)."""
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
    floor = noise_floor(ctx.f0, TOLERANCES["fd"].rtol, TOLERANCES["fd"].atol, ctx.noise)
    best: tuple[tuple[int, ...], float, float, float] | None = None
    for i in candidates:
        numeric = _fd_element(ctx.fun, ctx.x, name, int(i))
        analytic = float(ctx.analytic[name].reshape(-1)[i])
        err = float(relative_error(np.array(analytic), np.array(numeric), floor))
        index = tuple(int(k) for k in np.unravel_index(int(i), shape))
        if best is None or err > best[3]:
            best = (index, analytic, numeric, err)
    assert best is not None
    return best


def _directional(ctx: _Context, name: str, u: Array) -> tuple[float, float, float]:
    """(<g, u>, the directional difference of fun along u, relative error against the unprojected scale)."""
    base = ctx.x[name]
    original = base.copy()
    g = ctx.analytic[name]
    analytic = float(np.sum(g * u))

    def central(s: float) -> float:
        base[...] = original + s * u
        plus = _value(ctx.fun, ctx.x)
        base[...] = original - s * u
        minus = _value(ctx.fun, ctx.x)
        base[...] = original
        return (plus - minus) / (2 * s)

    numeric = (4 * central(_FD_STEP / 2) - central(_FD_STEP)) / 3
    # measured against sum |g_i u_i|, the size of the terms before cancellation, so a direction that
    # happens to be nearly orthogonal to g does not inflate the error
    scale = max(float(np.sum(np.abs(g * u))), noise_floor(ctx.f0, ctx.rtol, ctx.atol, ctx.noise))
    err = abs(analytic - numeric) / max(abs(analytic), abs(numeric), scale)
    return analytic, numeric, err


def _directional_entry(ctx: _Context, name: str) -> Entry:
    u = _direction(ctx, name)
    analytic, numeric, err = _directional(ctx, name, u)
    if err <= ctx.rtol:
        return Entry(name, (), analytic, numeric, err, True, 1, projected=True)
    index, a, n, e = _localize(ctx, name, lambda mask: _directional(ctx, name, u * mask)[2] > ctx.rtol)
    return Entry(name, index, a, n, e, False, 1)


@dataclass(frozen=True)
class _Taylor:
    rate: float  # the asymptotic rate (smallest e above the noise); inf when every remainder is noise
    rates: tuple[float, ...]  # log2 r(e) / r(e/2) for the halvings above the noise, largest e first
    slope: float  # <g, v>
    numeric: float  # the directional derivative estimated from the same evaluations


def _taylor(ctx: _Context, name: str, v: Array) -> _Taylor:
    """Halve e from _TAYLOR_START until the remainder f(x+ev) - f(x) - e<g,v> is rounding noise."""
    base = ctx.x[name]
    original = base.copy()
    slope = float(np.sum(ctx.analytic[name] * v))
    noise = max(TOLERANCES["taylor"].atol * max(abs(ctx.f0), 1.0), 64 * ctx.noise)
    es: list[float] = []
    rs: list[float] = []
    e = _TAYLOR_START
    try:
        for _ in range(_TAYLOR_HALVINGS):
            base[...] = original + e * v
            es.append(e)
            rs.append(_value(ctx.fun, ctx.x) - ctx.f0 - e * slope)
            if len(rs) >= 2 and abs(rs[-1]) < noise and abs(rs[-2]) < noise:
                break
            e /= 2
    finally:
        base[...] = original
    trusted = [k for k in range(len(rs) - 1) if abs(rs[k]) >= noise and abs(rs[k + 1]) >= noise]
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
    return _Taylor(rate, rates, slope, numeric)


def _taylor_entry(ctx: _Context, name: str) -> Entry:
    minimum = 2 - ctx.rtol
    v = _direction(ctx, name)
    result = _taylor(ctx, name, v)
    scale = max(float(np.sum(np.abs(ctx.analytic[name] * v))), noise_floor(ctx.f0, 1e-5, 1e-7, ctx.noise))
    err = abs(result.slope - result.numeric) / max(abs(result.slope), abs(result.numeric), scale)
    if result.rate >= minimum:
        return Entry(name, (), result.slope, result.numeric, err, True, 1, rate=result.rate, projected=True)
    index, a, n, e = _localize(ctx, name, lambda mask: _taylor(ctx, name, v * mask).rate < minimum)
    flat = int(np.ravel_multi_index(index, v.shape)) if index else 0
    unit = np.zeros_like(v)
    unit.reshape(-1)[flat] = v.reshape(-1)[flat]
    rate = _taylor(ctx, name, unit).rate
    return Entry(name, index, a, n, e, False, 1, rate=rate)


_ENTRY: dict[str, Callable[[_Context, str], Entry]] = {
    "fd": _fd_entry,
    "directional": _directional_entry,
    "complex": _complex_entry,
    "taylor": _taylor_entry,
}


def check_gradients(
    fun: Fun,
    grad_fun: GradFun,
    inputs: Mapping[str, Any],
    *,
    method: str = "fd",
    wrt: list[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> GradientReport:
    """Compare ``grad_fun`` with numeric derivatives of ``fun`` for every input array in ``wrt``.

    fun: dict of arrays -> scalar loss; grad_fun: dict of arrays -> dict of gradients (same shapes).
    inputs: the point to check at (copied to float64, never modified). method: ``"fd"``, ``"directional"``,
    ``"complex"``, ``"taylor"`` or ``"auto"`` (see the module docstring). rtol/atol default to
    ``TOLERANCES[method]``; for ``"fd"`` the absolute floor of the relative error is raised to the
    measured rounding noise of ``fun`` (``estimate_noise``) over the step, divided by rtol
    (``noise_floor``). seed: the random directions of "directional" and "taylor". Raises InputError for an
    unknown method or bad inputs; never raises on a wrong gradient (call ``report.raise_if_failed()``).
    """
    x = _copy_inputs(inputs)
    names = list(x) if wrt is None else list(wrt)
    unknown = [n for n in names if n not in x]
    if unknown:
        raise InputError(f"wrt names {unknown} are not keys of inputs ({sorted(x)})")
    if method == "auto":
        method = "fd" if sum(x[k].size for k in names) <= AUTO_FD_MAX else "directional"
    if method not in _ENTRY:
        hint = (
            " (the oracle needs a variant: check_variant(name, method='oracle'))"
            if method == "oracle"
            else ""
        )
        raise InputError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}, auto{hint}")
    default = TOLERANCES[method]
    ctx = _Context(
        fun,
        x,
        _analytic(grad_fun, x, names),
        _value(fun, x),
        estimate_noise(fun, x),
        default.rtol if rtol is None else rtol,
        default.atol if atol is None else atol,
        np.random.default_rng(seed),
    )
    report = GradientReport(method, ctx.rtol)
    for name in names:
        report.entries.append(_ENTRY[method](ctx, name))
    return report


# recurrent models -------------------------------------------------------------------------------------


def _recurrent_inputs(
    params: Mapping[str, Any], X: Any, h0: Any
) -> tuple[dict[str, Array], Callable[[Mapping[str, Array]], tuple[dict[str, Array], Array, Array]]]:
    tokens = np.asarray(X).dtype.kind in "iu"
    inputs = {**{k: np.asarray(v) for k, v in params.items()}, "h0": np.asarray(h0)}
    if not tokens:
        inputs["X"] = np.asarray(X)

    def split(x: Mapping[str, Array]) -> tuple[dict[str, Array], Array, Array]:
        return {k: x[k] for k in params}, (np.asarray(X) if tokens else x["X"]), x["h0"]

    return inputs, split


def _grads_of(result: Any) -> Mapping[str, Any]:
    """``loss_and_grads`` returns (loss, grads, ...); take the dict."""
    if isinstance(result, tuple) and len(result) >= 2 and isinstance(result[1], Mapping):
        return result[1]
    raise InputError(f"loss_and_grads must return (loss, grads dict, ...), got {type(result).__name__}")


@dataclass(frozen=True)
class StepLocation:
    """Where along time a gradient element first goes wrong.

    ``analytic[t]`` and ``numeric[t]`` are the contributions of the loss term at time step t to the
    element (differences of prefix gradients, normalised by the full T*n like the real loss).
    """

    name: str
    index: tuple[int, ...]
    first_wrong: int | None
    analytic: Array
    numeric: Array

    def __str__(self) -> str:
        where = f"{self.name}[{', '.join(map(str, self.index))}]"
        lines = [f"per-step contributions to {where} (first wrong at t = {self.first_wrong})"]
        lines += [
            f"  t={t:<3d} analytic {a: .6e}  numeric {n: .6e}"
            for t, (a, n) in enumerate(zip(self.analytic, self.numeric, strict=True))
        ]
        return "\n".join(lines)


def locate_time_step(
    loss: LossFun,
    loss_and_grads: Callable[..., Any],
    params: Mapping[str, Any],
    X: Any,
    Y: Any,
    h0: Any,
    name: str,
    index: tuple[int, ...],
    *,
    rtol: float | None = None,
) -> StepLocation:
    """The first time step t at which the gradient of element ``name[index]`` goes wrong.

    X: (T, n, d) floats or (T, n) token ids; Y: (T, n); h0: (n, h). For L = 1..T both sides are computed
    on the prefix problem X[:L], Y[:L] from the same h0, scaled by L/T (the loss is a mean over T*n): the
    analytic gradient from ``loss_and_grads`` and central differences of ``loss``. The prefix of length
    L holds the loss terms of steps 0..L-1, so ``first_wrong`` = L-1 for the shortest prefix that
    disagrees: the step whose loss term is the first with a wrong gradient. Prefixes (not suffixes) keep
    every step at its absolute position, so a bug tied to step k is reported at k.
    """
    X, Y = np.asarray(X), np.asarray(Y)
    T = X.shape[0]
    tol = TOLERANCES["fd"]
    rtol = tol.rtol if rtol is None else rtol
    analytic, numeric = np.zeros(T), np.zeros(T)
    first = None
    for L in range(1, T + 1):
        inputs, split = _recurrent_inputs(params, X[:L], h0)
        x = _copy_inputs(inputs)
        if name not in x:
            raise InputError(f"{name!r} is not a parameter, 'h0' or float 'X' (known: {sorted(x)})")
        shape = x[name].shape
        if any(i >= s for i, s in zip(index, shape, strict=True)):
            continue  # X[t] for t >= L is not part of this prefix: both contributions are zero

        def fun(x: Mapping[str, Array], L: int = L, split: Any = split) -> float:
            p, Xp, hp = split(x)
            return float(np.real(loss(p, Xp, Y[:L], hp)))

        p, Xp, hp = split(x)
        grads = _grads_of(loss_and_grads(p, Xp, Y[:L], hp))
        if name not in grads:
            raise InputError(f"loss_and_grads returned no gradient for {name!r}")
        scale = L / T
        a = scale * float(np.asarray(grads[name])[index])
        n = scale * _fd_element(fun, x, name, int(np.ravel_multi_index(index, shape)))
        analytic[L - 1], numeric[L - 1] = a, n
        floor = noise_floor(fun(x), rtol, tol.atol, estimate_noise(fun, x))
        if first is None and float(relative_error(np.array(a), np.array(n), floor)) > rtol:
            first = L - 1
    per_step_a = np.diff(analytic, prepend=0.0)
    per_step_n = np.diff(numeric, prepend=0.0)
    return StepLocation(name, tuple(index), first, per_step_a, per_step_n)


def check_recurrent(
    loss: LossFun,
    loss_and_grads: Callable[..., Any],
    params: Mapping[str, Any],
    X: Any,
    Y: Any,
    h0: Any,
    *,
    method: str = "fd",
    wrt: list[str] | None = None,
    localize: bool = True,
    seed: int = 0,
) -> GradientReport:
    """Check ``loss_and_grads`` against ``loss`` for every parameter, ``h0`` and (float) ``X``.

    loss(params, X, Y, h0) -> float and loss_and_grads(params, X, Y, h0) -> (loss, grads, ...) follow the
    generated modules' convention: X (T, n, d) floats or (T, n) token ids, Y (T, n), h0 (n, h), the loss a
    mean over T*n. With ``localize``, each failing entry gets the first wrong time step
    (:func:`locate_time_step`).
    """
    inputs, split = _recurrent_inputs(params, X, h0)

    def fun(x: Mapping[str, Array]) -> Any:
        p, Xp, hp = split(x)
        return loss(p, Xp, Y, hp)

    def grad_fun(x: Mapping[str, Array]) -> dict[str, Array]:
        p, Xp, hp = split(x)
        return dict(_grads_of(loss_and_grads(p, Xp, Y, hp)))

    report = check_gradients(fun, grad_fun, inputs, method=method, wrt=wrt, seed=seed)
    if localize:
        localize_failures(report, loss, loss_and_grads, params, X, Y, h0)
    return report


def localize_failures(
    report: GradientReport,
    loss: LossFun,
    loss_and_grads: Callable[..., Any],
    params: Mapping[str, Any],
    X: Any,
    Y: Any,
    h0: Any,
) -> GradientReport:
    """Attach the first wrong time step to every failing entry of ``report`` that names an element."""
    for k, e in enumerate(report.entries):
        if not e.ok and not e.projected and e.index:
            where = locate_time_step(loss, loss_and_grads, params, X, Y, h0, e.name, e.index)
            report.entries[k] = dataclasses.replace(e, time_step=where.first_wrong)
    return report


# grusym's own variants ------------------------------------------------------------------------------


def _variant_data(
    name: Any, *, T: int, n: int, d: int, h: int, q: int, seed: int, scale: float, tokens: bool
) -> tuple[Any, dict[str, Array], Array, Array, Any]:
    from . import load

    m = load(name) if isinstance(name, str) else name  # a built-in's name, or a generated module
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
    if len(states) > 1:  # the later states drawn after everything else: one-state problems stay as they were
        return m, params, X, Y, (h0, *(rng.normal(0.0, 0.5, (n, h)) for _ in states[1:]))
    return m, params, X, Y, h0


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
) -> tuple[Fun, GradFun, dict[str, Array]]:
    """A random float64 problem for variant ``name``: ``fun``, ``grad_fun`` and the point ``inputs``.

    ``inputs`` holds every parameter, ``h0`` and (unless ``tokens``) the float input ``X``; weights are
    N(0, scale^2) and biases N(0, (scale/2)^2), so a scale of 3 saturates the gates.
    """
    m, params, X, Y, h0 = _variant_data(name, T=T, n=n, d=d, h=h, q=q, seed=seed, scale=scale, tokens=tokens)
    inputs, split = _recurrent_inputs(params, X, h0)

    def fun(x: dict[str, Array]) -> Any:
        p, Xp, hp = split(x)
        return m.loss(p, Xp, Y, hp)

    def grad_fun(x: dict[str, Array]) -> dict[str, Array]:
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
    **sizes: Any,
) -> GradientReport:
    """Check every gradient of the generated module ``name`` (a built-in's name, or a generated module) on a
    random problem (``variant_problem``); a cell with several states checks each initial state.

    loss_and_grads: check this function (same signature as the module's) instead of the generated one,
    against the generated ``loss``. method ``"oracle"`` compares with the symbolic oracle
    (:func:`grusym.oracle.check_oracle`, tiny sizes). Failing entries name the first wrong time step.
    """
    if method == "oracle":
        from .oracle import check_oracle

        return check_oracle(
            name, seed=seed, scale=scale, loss_and_grads=loss_and_grads, localize=localize, **sizes
        )
    full = {"T": 3, "n": 2, "d": 3, "h": 4, "q": 5, "tokens": False, **sizes}
    m, params, X, Y, h0 = _variant_data(name, seed=seed, scale=scale, **full)
    if isinstance(h0, tuple):  # several states: every one of them is an input of its own ("h0", "c0", ...)
        return _check_states(m, params, X, Y, h0, method, loss_and_grads or m.loss_and_grads, seed)
    return check_recurrent(
        m.loss,
        loss_and_grads or m.loss_and_grads,
        params,
        X,
        Y,
        h0,
        method=method,
        localize=localize,
        seed=seed,
    )


def _check_states(
    m: Any,
    params: dict[str, Array],
    X: Array,
    Y: Array,
    h0: tuple[Array, ...],
    method: str,
    lg: Any,
    seed: int,
) -> GradientReport:
    names = [f"{s}0" for s in m.STATES]
    tokens = X.dtype.kind in "iu"
    inputs = {**params, **dict(zip(names, h0, strict=True))} | ({} if tokens else {"X": X})

    def split(x: Mapping[str, Array]) -> tuple[dict[str, Array], Array, tuple[Array, ...]]:
        return {k: x[k] for k in params}, (X if tokens else x["X"]), tuple(x[k] for k in names)

    def fun(x: Mapping[str, Array]) -> Any:
        return m.loss(*split(x)[:2], Y, split(x)[2])

    def grad_fun(x: Mapping[str, Array]) -> dict[str, Array]:
        p, Xp, states = split(x)
        return dict(_grads_of(lg(p, Xp, Y, states)))

    return check_gradients(fun, grad_fun, inputs, method=method, seed=seed)
