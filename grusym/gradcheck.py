"""Check analytic gradients against numeric ones and say exactly where they disagree.

Contract: ``check_gradients(fun, grad_fun, inputs)`` takes ``fun(inputs) -> float`` and ``grad_fun(inputs) ->
dict`` over a dict of float arrays, never modifies the caller's arrays, and returns a
:class:`GradientReport` with one :class:`Entry` per checked array: its worst element, the analytic value (from
``grad_fun``) and the numeric value (from finite differences of ``fun``), and the relative error
``|analytic - numeric| / max(|analytic|, |numeric|, atol)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import GradientCheckError, InputError, ShapeError

__all__ = [
    "TOLERANCES",
    "Entry",
    "GradientReport",
    "check_gradients",
    "check_variant",
    "noise_floor",
    "relative_error",
    "variant_problem",
]

Array = NDArray[Any]
Fun = Callable[[dict[str, Array]], Any]
GradFun = Callable[[dict[str, Array]], Mapping[str, Any]]

_EPS = float(np.finfo(np.float64).eps)
# central differences with Richardson extrapolation have truncation error O(step^4) and rounding error
# O(eps |f| / step); a step of eps^(1/5) relative to max(|x|, 1) balances the two
_FD_STEP = _EPS ** (1 / 5)
TOLERANCES = {"fd": (1e-5, 1e-7)}  # method -> (rtol, atol)


def noise_floor(f0: float, rtol: float, atol: float) -> float:
    """The smallest magnitude at which a relative comparison is meaningful given rounding in ``fun``."""
    rounding = 8 * _EPS * max(abs(f0), 1.0) / _FD_STEP
    return max(atol, rounding / rtol)


def relative_error(analytic: Array, numeric: Array, atol: float) -> Array:
    """|a - n| / max(|a|, |n|, atol), elementwise: relative where values are large, absolute near zero."""
    return np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)


@dataclass(frozen=True)
class Entry:
    """The verdict on one array: its worst element."""

    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    error: float
    ok: bool
    checked: int  # elements compared
    time_step: int | None = None

    def describe(self) -> str:
        where = f"{self.name}[{', '.join(map(str, self.index))}]" if self.index else self.name
        text = (
            f"{where}: analytic {self.analytic:.10g} vs numeric {self.numeric:.10g} "
            f"(relative error {self.error:.2e})"
        )
        if self.time_step is not None:
            text += f", first wrong at t = {self.time_step}"
        return text


@dataclass
class GradientReport:
    """The result of a gradient check: ``ok``, the ``worst`` entry and a table (``str(report)``)."""

    method: str
    rtol: float
    entries: list[Entry] = field(default_factory=list)

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
        rows = [("parameter", "worst rel. error", "where", "analytic", "numeric", "verdict")]
        for e in self.entries:
            where = str(list(e.index)) + ("" if e.time_step is None else f" t={e.time_step}")
            rows.append(
                (
                    e.name,
                    f"{e.error:.2e}",
                    where,
                    f"{e.analytic:.6g}",
                    f"{e.numeric:.6g}",
                    "ok" if e.ok else "FAIL",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"gradient check ({self.method}, rtol {self.rtol:.0e})"]
        lines += ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.append(
            "all gradients agree" if self.ok else f"{len(self.failures)} of {len(self.entries)} FAILED"
        )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` naming the worst failing parameter and element."""
        if not self.ok:
            failing = "; ".join(e.describe() for e in self.failures)
            raise GradientCheckError(f"gradient check ({self.method}) failed: {failing}")


def _copy_inputs(inputs: Mapping[str, Any]) -> dict[str, Array]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError("inputs must be a non-empty dict of float arrays")
    out = {}
    for k, v in inputs.items():
        a = np.array(v, dtype=np.float64, copy=True) if np.asarray(v).dtype.kind in "fiu" else None
        if a is None:
            raise InputError(f"inputs[{k!r}] must be a float array, got dtype {np.asarray(v).dtype}")
        out[k] = a
    return out


def _analytic(grad_fun: GradFun, x: dict[str, Array], names: list[str]) -> dict[str, Array]:
    grads = grad_fun({k: v.copy() for k, v in x.items()})
    out = {}
    for name in names:
        if name not in grads:
            raise InputError(f"grad_fun returned no gradient for {name!r} (it returned {sorted(grads)})")
        g = np.asarray(grads[name], dtype=np.float64)
        if g.shape != x[name].shape:
            raise ShapeError(
                f"gradient of {name!r} has shape {g.shape}, but {name!r} has shape {x[name].shape}"
            )
        out[name] = g
    return out


def _fd_numeric(fun: Fun, x: dict[str, Array], name: str) -> Array:
    """Central differences with Richardson extrapolation, one element at a time, step scaled per element."""
    base = x[name]
    numeric = np.empty_like(base)
    flat, out = base.reshape(-1), numeric.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        step = _FD_STEP * max(abs(original), 1.0)

        def central(s: float, i: int = i, original: float = original) -> float:
            flat[i] = original + s
            plus = float(np.real(fun(x)))
            flat[i] = original - s
            minus = float(np.real(fun(x)))
            flat[i] = original
            return (plus - minus) / (2 * s)

        out[i] = (4 * central(step / 2) - central(step)) / 3
    return numeric


def check_gradients(
    fun: Fun,
    grad_fun: GradFun,
    inputs: Mapping[str, Any],
    *,
    method: str = "fd",
    wrt: list[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> GradientReport:
    """Compare ``grad_fun`` with numeric derivatives of ``fun`` for every element of every input in ``wrt``.

    fun: dict of arrays -> scalar loss; grad_fun: dict of arrays -> dict of gradients (same shapes).
    inputs: the point to check at (copied, never modified). method: ``"fd"``, central differences in
    float64 with a step chosen per element. rtol/atol default to ``TOLERANCES[method]``; the absolute floor
    of the relative error is raised to the rounding noise of ``fun`` divided by rtol (``noise_floor``).
    """
    if method not in TOLERANCES:
        raise InputError(f"unknown method {method!r}; known methods: {', '.join(TOLERANCES)}")
    x = _copy_inputs(inputs)
    names = list(x) if wrt is None else list(wrt)
    unknown = [n for n in names if n not in x]
    if unknown:
        raise InputError(f"wrt names {unknown} are not keys of inputs ({sorted(x)})")
    default_rtol, default_atol = TOLERANCES[method]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    analytic = _analytic(grad_fun, x, names)
    floor = noise_floor(float(np.real(fun(x))), rtol, atol)
    report = GradientReport(method, rtol)
    for name in names:
        numeric = _fd_numeric(fun, x, name)
        err = relative_error(analytic[name], numeric, floor)
        worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
        e = float(err[worst]) if err.size else 0.0
        report.entries.append(
            Entry(
                name,
                tuple(int(i) for i in worst),
                float(analytic[name][worst]),
                float(numeric[worst]),
                e,
                e <= rtol,
                int(err.size),
            )
        )
    return report


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
    from . import load

    m = load(name)
    rng = np.random.default_rng(seed)
    params = m.init_params(d, h, q, seed=seed, scale=scale)
    for key, value in params.items():
        if value.ndim == 1:
            params[key] = rng.normal(0.0, scale / 2, value.shape)
    Y = rng.integers(0, q, (T, n))
    inputs = {**params, "h0": rng.normal(0.0, 0.5, (n, h))}
    X_tokens = rng.integers(0, d, (T, n))
    if not tokens:
        inputs["X"] = rng.normal(0.0, 1.0, (T, n, d))

    def split(x: Mapping[str, Array]) -> tuple[dict[str, Array], Array, Array]:
        return {k: x[k] for k in params}, (X_tokens if tokens else x["X"]), x["h0"]

    def fun(x: dict[str, Array]) -> Any:
        p, X, h0 = split(x)
        return m.loss(p, X, Y, h0)

    def grad_fun(x: dict[str, Array]) -> dict[str, Array]:
        p, X, h0 = split(x)
        return dict(m.loss_and_grads(p, X, Y, h0)[1])

    return fun, grad_fun, inputs


def check_variant(
    name: str, *, method: str = "fd", seed: int = 0, scale: float = 1.0, **sizes: Any
) -> GradientReport:
    """Check every gradient of the generated module ``name`` on a random problem (``variant_problem``)."""
    fun, grad_fun, inputs = variant_problem(name, seed=seed, scale=scale, **sizes)
    return check_gradients(fun, grad_fun, inputs, method=method)
