"""What every method of one check shares: the point, the analytic gradients, the measured noise and the rule.

Contract: a :class:`Context` is built once per ``check_gradients`` call. :func:`fd_element` is the one
element-wise numeric derivative (Richardson central differences; where they disagree with the analytic
value and the two one-sided differences disagree with each other, a kink lies within the step and the
element is judged on the side the point is on, :func:`judge_kink`); :func:`fd_elements` does a whole
array, looking for kinks only until a failing element is confirmed wrong; :func:`bounded_entry` turns
per-element numeric values into an :class:`Entry` under the rule of :mod:`grusym.checks.tolerance`;
:func:`localize` bisects a failing projection down to its elements; :func:`directions` draws the random
block directions the projected methods use.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .noise import fd_noise, fd_step
from .numeric import ONE_SIDED_NOISE, Line, kink_sides, smooth
from .report import Entry
from .tolerance import allowed, relative_error, tolerance

__all__ = ["Context", "bounded_entry", "directions", "fd_element", "localize"]

Array = NDArray[Any]


@dataclass
class Context:
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

    def agrees(self, a: float, n: float, noise_bound: float) -> bool:
        """The acceptance rule for one analytic value against one numeric value carrying ``noise_bound``."""
        return bool(abs(a - n) <= allowed(a, n, self.rtol, self.atol, noise_bound + self.rounding))


def _element_line(ctx: Context, name: str, i: int) -> tuple[Line, float]:
    step = fd_step(ctx.noise, ctx.f0, float(ctx.x[name].reshape(-1)[i]))
    unit = np.zeros(ctx.x[name].shape)
    unit.reshape(-1)[i] = 1.0
    return Line(ctx.value, ctx.x, name, unit, ctx.f0), step


def fd_element(ctx: Context, name: str, i: int) -> tuple[float, float, str]:
    """(numeric derivative of flat element i, the rounding bound it carries, "" or the side it was judged on).

    The Richardson central difference first (4 evaluations); only where it disagrees with the analytic
    value is a kink looked for (:func:`judge_kink`).
    """
    line, step = _element_line(ctx, name, i)
    numeric, bound = line.central(step), fd_noise(ctx.noise, step)
    a = float(ctx.analytic[name].reshape(-1)[i])
    if ctx.agrees(a, numeric, bound):
        return numeric, bound, ""
    return judge_kink(ctx, a, line, step, numeric, bound)


def judge_kink(
    ctx: Context, a: float, line: Line, step: float, numeric: float, bound: float
) -> tuple[float, float, str]:
    """An analytic value ``a`` that the central difference ``numeric`` rejects, looked at for a kink.

    Smooth within the step (both one-sided differences agree with each other and with the central one,
    2 more evaluations): the analytic value is wrong, (numeric, bound, "") stands. A kink within the step
    (relu, abs, max): ``a`` is held to the side it agrees with; a kink very close to x (it contaminates
    both sides a little) or two kinks (one each side): the same at steps 8, 64 and 512 times smaller, while
    their rounding stays below the tolerance.
    """
    h = step
    while True:
        if smooth(line, h, ctx.noise, lambda p, q, nb: not ctx.agrees(p, q, nb)):
            # clear of kinks at this step: at a smaller step its central difference decides; at the first
            # step it already has, and the analytic value is wrong
            finer, finer_bound = line.central(h), fd_noise(ctx.noise, h)
            if h < step and ctx.agrees(a, finer, finer_bound):
                return finer, finer_bound, "smaller step"
            return numeric, bound, ""
        sides = kink_sides(line, h, ctx.noise, lambda p, q, nb: not ctx.agrees(p, q, 2 * nb))
        if sides is not None:
            for side, value in (("left", sides[0]), ("right", sides[1])):
                if ctx.agrees(a, value, sides[2]):
                    return value, sides[2], side
        h /= 8
        if h < step / 512 or ctx.rtol * abs(a) + ctx.atol < 2 * ONE_SIDED_NOISE * fd_noise(ctx.noise, h):
            return numeric, bound, ""


def fd_elements(ctx: Context, name: str) -> tuple[Array, Array, int]:
    """(numeric, noise bound, elements judged one-sided) for every element of ``name``.

    Central differences everywhere, then :func:`judge_kink` for the failing elements, worst first, until
    one is confirmed wrong: the array fails either way, and the elements after it are less wrong, so a
    wrong array costs one kink search, not one per element.
    """
    shape = ctx.x[name].shape
    numeric, noise = np.empty(shape), np.empty(shape)
    lines = []
    for i in range(numeric.size):
        line, step = _element_line(ctx, name, i)
        numeric.reshape(-1)[i], noise.reshape(-1)[i] = line.central(step), fd_noise(ctx.noise, step)
        lines.append((line, step))
    kinks = settle(ctx, name, numeric, noise, lambda i, a, n, b: judge_kink(ctx, a, *lines[i], n, b))
    return numeric, noise, kinks


def settle(
    ctx: Context, name: str, numeric: Array, noise: Array, judge: Callable[[int, float, float, float], Any]
) -> int:
    """Re-judge the elements that fail, worst first, with ``judge(i, a, n, bound) -> (value, bound, side)``
    until one stays wrong; those judged one-sided are updated in place. Returns how many were."""
    a = ctx.analytic[name].astype(np.float64)
    bound = allowed(a, numeric, ctx.rtol, ctx.atol, noise + ctx.rounding)
    excess = (np.abs(a - numeric) / bound).reshape(-1)
    kinks = 0
    for i in np.argsort(-excess):
        if excess[i] <= 1.0:
            break
        value, value_bound, side = judge(int(i), float(a.reshape(-1)[i]), float(numeric.reshape(-1)[i]),
                                         float(noise.reshape(-1)[i]))  # fmt: skip
        if not side:
            break  # confirmed wrong: the array fails, and what follows is less wrong
        numeric.reshape(-1)[i], noise.reshape(-1)[i] = value, value_bound
        kinks += 1
    return kinks


def bounded_entry(ctx: Context, name: str, numeric: Array, noise_bound: Any, **extra: Any) -> Entry:
    """The element furthest outside the rule, its printed error and the bound it was held to."""
    a = ctx.analytic[name].astype(np.float64)
    bound = allowed(a, numeric, ctx.rtol, ctx.atol, noise_bound + ctx.rounding)
    excess = np.abs(a - numeric) / bound
    # what the row resolves in one element of average size: rtol, plus the absolute part of the bound
    # (atol and the measured noise) over the average element; far above rtol for a code that rounds
    # through float32 inside
    average = float(np.mean(np.abs(a))) if a.size else 0.0
    absolute = float(np.max(ctx.atol + noise_bound + ctx.rounding, initial=0.0))
    extra.setdefault("resolution", ctx.rtol + absolute / average if average > 0 else None)
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


def blocks(ctx: Context, name: str, per: int) -> list[Array]:
    """A random partition of the flat elements of ``name`` into blocks of at most ``per`` (at least two)."""
    size = ctx.x[name].size
    count = 1 if size <= 1 else max(2, math.ceil(size / per))
    return [np.sort(part) for part in np.array_split(ctx.rng.permutation(size), count)]


def directions(ctx: Context, name: str, per: int) -> list[Array]:
    """One direction per block: U(0.5, 1) * max(|x|, 1), signed like the analytic gradient, 0 off the block.

    Every element of a block moves and none cancels exactly; an error confined to a few elements lands in
    a few blocks, so it is diluted by at most ``per`` elements, not by the whole array. The signs follow
    the analytic gradient (random where it is 0), so <g, v> = sum |g v| and an error that scales part of
    the gradient (a missing factor, a wrong gate's derivative, a sign) adds up instead of cancelling: with
    random signs a 26 % error in three elements of a bias could project to nearly nothing.
    """
    base = ctx.x[name]
    random = ctx.rng.choice([-1.0, 1.0], base.shape)
    signs = np.where(ctx.analytic[name] > 0, 1.0, np.where(ctx.analytic[name] < 0, -1.0, random))
    v = signs * ctx.rng.uniform(0.5, 1.0, base.shape) * np.maximum(np.abs(base), 1.0)
    out = []
    for part in blocks(ctx, name, per):
        u = np.zeros(base.shape)
        u.reshape(-1)[part] = v.reshape(-1)[part]
        out.append(u)
    return out


def localize(ctx: Context, name: str, u: Array, fails: Callable[[Array], bool], **extra: Any) -> Entry:
    """Bisect the elements a failing direction ``u`` moves down to a few, then compare those one by one
    (by fd's rule for the dtype: the element-wise comparison is fd's, whichever method found the array)."""
    fd = tolerance("fd", ctx.dtype)
    elementwise = dataclasses.replace(ctx, rtol=fd.rtol, atol=fd.atol)
    shape = ctx.x[name].shape
    candidates = np.flatnonzero(u)
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
        numeric.reshape(-1)[i], noise.reshape(-1)[i], _ = fd_element(elementwise, name, int(i))
    entry = bounded_entry(elementwise, name, numeric, noise, **extra)
    return dataclasses.replace(entry, ok=False, resolution=None)
