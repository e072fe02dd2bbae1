"""The projected methods: <g, v> against the function along random directions, several per array.

Contract: each array's elements are split into random blocks (:func:`grusym.checks.context.directions`)
and each block gets its own direction, so an error in a few elements is diluted by a block, not by the
array, and a direction that happens to be orthogonal to the error in one block does not hide it in the
others. A passing entry states its *resolution*: the smallest relative error in one element of average
size within its block that the verdict would have seen (the largest over the blocks); ``ok`` means no
element is wrong by more than that. A failing block is bisected down to its element.

* ``directional``: Richardson central differences at steps h and h/2 along each direction; the bound is
  measured, not chosen: atol + rtol sum|g v| + |D(h) - D(h/2)| (the truncation, measured) + the rounding
  the difference carries + the analytic side's rounding. A kink within the step is judged one-sided.
* ``taylor``: the remainder sweep of each direction (:func:`grusym.checks.numeric.taylor_sweep`). A block
  fails when the error of <g, v> its remainders imply stands significantly off zero (a wrong gradient's
  remainder keeps a term linear in e: rate 1); otherwise it passes, its rate printed (2 for a right
  gradient), stating the resolution the sweep had (a float32 code resolves less than a float64 one).
  "inconclusive" only when the sweep ends with too few remainders to fit: never ok, never FAIL.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .context import Context, directions, localize
from .noise import fd_noise, fd_step
from .numeric import ONE_SIDED_NOISE, Line, Taylor, kink_sides, smooth, taylor_sweep
from .report import Entry
from .tolerance import tolerance

__all__ = ["BLOCK", "directional_entry", "taylor_entry"]

Array = NDArray[Any]
# elements per direction: directional's 4-6 evaluations per block are cheap; a Taylor sweep costs ~20
BLOCK = {"directional": 16, "taylor": 32}


@dataclass(frozen=True)
class _Projection:
    analytic: float  # <g, u>
    numeric: float
    error: float  # |a - n| / scale
    bound: float
    ok: bool
    resolution: float | None  # per element of average size; None where the gradient is at noise level
    side: str = ""
    rate: float = 2.0  # taylor: the rate the block's verdict used
    undecided: bool = False  # kinks within every step along this direction


def _per_element(bound: float, g: Array, u: Array) -> float | None:
    """The relative error one element must carry to show, for any element at least as large as the array's
    average |g|: an error d_k moves <g, u> by d_k |u_k| >= d_k min |u|, seen once that exceeds ``bound``.
    None where the gradient is at noise level (then the bound is absolute)."""
    moved = np.abs(u[u != 0])
    average = float(np.mean(np.abs(g)))
    if not moved.size or average * float(np.sum(moved)) <= bound:
        return None
    return bound / (average * float(np.min(moved)))


def _directional(ctx: Context, name: str, u: Array) -> _Projection:
    g = ctx.analytic[name].astype(np.float64)
    analytic = float(np.sum(g * u))
    step = fd_step(ctx.noise, ctx.f0)
    line = Line(ctx.value, ctx.x, name, u, ctx.f0)
    # measured against sum |g_i u_i|, the size of the terms before cancellation, so a direction that
    # happens to be nearly orthogonal to g does not inflate the error
    scale = max(abs(analytic), float(np.sum(np.abs(g * u))))
    # the analytic side's rounding, element by element independent of the direction's signs: it adds up
    # like a random walk (64 eps of the largest element is already a wide margin for each)
    rounding = ctx.rounding * float(np.linalg.norm(u))

    def bound_for(noise_bound: float) -> float:
        return ctx.atol + ctx.rtol * scale + noise_bound + rounding

    def projection(numeric: float, bound: float, ok: bool, side: str = "") -> _Projection:
        error = abs(analytic - numeric) / scale if scale > 0 else 0.0
        return _Projection(
            analytic, numeric, error, bound, ok, _per_element(bound, g, u) if ok else None, side
        )

    # D(h/2) against the analytic value, within the measured truncation |D(h) - D(h/2)| and rounding. A
    # pass with a truncation within the tolerance stands; otherwise a step decides when it is clear of
    # kinks: its one-sided and central differences in agreement. A kink within the step (the sides
    # disagree): the analytic value is held to a side, else the same at steps 8, 64 and 512 times smaller
    # while their rounding stays below the tolerance; kinks within every step leave the direction undecided
    first: _Projection | None = None
    best: _Projection | None = None  # a pass whose bound a kink may have widened, the tightest
    h = step
    while True:
        coarse, numeric = line.central(h), line.central(h / 2)
        truncation = abs(coarse - numeric)
        bound = bound_for(truncation + fd_noise(ctx.noise, h / 2))
        here = projection(
            numeric, bound, abs(analytic - numeric) <= bound, "smaller step" if h < step else ""
        )
        first = first or here
        if here.ok and truncation <= ctx.rtol * scale + ctx.atol:
            return here  # a pass within the tolerance's own truncation
        if smooth(line, h, ctx.noise, lambda a, b, nb: abs(a - b) > bound_for(nb)):
            # clear of kinks at this step (a kink at x itself leaves D(h) = D(h/2), the sides apart): the
            # central difference decides
            return here if here.ok else dataclasses.replace(first, ok=False)
        if here.ok and (best is None or bound < best.bound):
            best = here
        sides = kink_sides(line, h, ctx.noise, lambda a, b, nb: abs(a - b) > bound_for(2 * nb))
        for side, value in zip(("left", "right"), sides[:2] if sides else (), strict=False):
            if sides is not None and abs(analytic - value) <= bound_for(sides[2]):
                return projection(value, bound_for(sides[2]), True, side)
        h /= 8
        if ctx.rtol * scale + ctx.atol < 2 * ONE_SIDED_NOISE * fd_noise(ctx.noise, h):
            return best or first  # what the code's rounding lets a step resolve
        if h < step / 512:
            return dataclasses.replace(first, ok=False, undecided=True)


def _worst(name: str, projections: list[_Projection], **extra: Any) -> Entry:
    """The entry of a passing array: the block with the lowest rate (taylor) or the largest error."""
    worst = max(projections, key=lambda p: (-p.rate, p.error))
    resolutions = [p.resolution for p in projections if p.resolution is not None]
    return Entry(
        name,
        (),
        worst.analytic,
        worst.numeric,
        worst.error,
        True,
        len(projections),
        projected=True,
        bound=worst.bound,
        resolution=max(resolutions) if resolutions else None,
        kinks=sum(bool(p.side) for p in projections),
        **extra,
    )


def directional_entry(ctx: Context, name: str) -> Entry:
    done, open_ = [], ""
    for u in directions(ctx, name, BLOCK["directional"]):
        p = _directional(ctx, name, u)
        if p.undecided:
            open_ = "kinks (relu, max) within every step along a direction: use fd"
            continue
        if not p.ok:

            def fails(mask: Array, u: Array = u) -> bool:
                got = _directional(ctx, name, u * mask)
                return not got.ok and not got.undecided

            return localize(ctx, name, u, fails)
        done.append(p)
    if open_:
        entry = _worst(name, done) if done else Entry(name, (), 0.0, 0.0, 0.0, False, 0, projected=True)
        return dataclasses.replace(entry, ok=False, inconclusive=open_, resolution=None)
    return _worst(name, done)


def taylor_entry(ctx: Context, name: str) -> Entry:
    g = ctx.analytic[name].astype(np.float64)
    # an implied error within what fd accepts absolutely (rounding-level gradients behind a saturated
    # gate) is not a wrong gradient
    fd_absolute = tolerance("fd", ctx.dtype).atol + fd_noise(ctx.noise, fd_step(ctx.noise, ctx.f0))

    def wrong(sweep: Taylor, slope_error: float) -> bool:
        slack = ctx.atol + ctx.rtol * abs(sweep.slope)  # the caller's loosening (none by default)
        return sweep.fitted and abs(sweep.delta) > max(sweep.seen, fd_absolute + slope_error) + slack

    def sweep(w: Array) -> tuple[Taylor, str]:
        """The sweep along w, or along -w where the point sits on a kink (relu at exactly 0): there the
        analytic value is one side's derivative, and the other side's sweep finds no error."""
        error = ctx.rounding * float(np.linalg.norm(w))
        result = taylor_sweep(ctx.value, ctx.x, name, g, w, ctx.f0, ctx.noise, error)
        if wrong(result, error):
            other = taylor_sweep(ctx.value, ctx.x, name, g, -w, ctx.f0, ctx.noise, error)
            if not wrong(other, error):
                return other, "other side"
        return result, ""

    done, rates, open_ = [], [], ""
    for u in directions(ctx, name, BLOCK["taylor"]):
        slope_error = ctx.rounding * float(np.linalg.norm(u))
        result, side = sweep(u)
        if wrong(result, slope_error):

            def fails(mask: Array, u: Array = u) -> bool:
                w = u * mask
                got, _ = sweep(w)
                return wrong(got, ctx.rounding * float(np.linalg.norm(w)))

            return localize(ctx, name, u, fails, rate=result.rate)  # the rate of the failing direction
        scale = max(abs(result.slope), abs(result.numeric), result.scale)
        error = abs(result.delta) / scale if scale > 0 else 0.0
        if not result.fitted:
            open_ = "the sweep ended before it had enough remainders to fit the error: use fd"
        if result.rates:
            rates.append(result.rate)
        resolution = _per_element(max(result.seen, fd_absolute), g, u) if result.fitted else None
        done.append(
            _Projection(result.slope, result.numeric, error, result.seen, True, resolution, side, result.rate)
        )
    entry = _worst(name, done, rate=min(rates) if rates else None)
    return dataclasses.replace(entry, ok=False, inconclusive=open_) if open_ else entry
