"""The numeric side of every check: central differences, the guarded complex step and the Taylor sweep.

Contract: every estimator takes ``value`` (dict of float64 arrays -> float) and restores the arrays it
perturbs. :class:`ComplexStep` evaluates ``Im f(x + i s e_k) / s`` and refuses (``InputError`` naming what
it observed, suggesting ``method="fd"``) whenever the imaginary part may have been lost: a NumPy
``ComplexWarning`` during ``fun`` (a complex value stored into a real array), a real return value, or a
probe along a random direction where the complex step and central differences disagree. Every refusal names
the line of the user's code and the construct on it (:mod:`grusym.checks.trace`). It never returns a value
from a truncated evaluation. An exception the user's code raises because its input was complex (an in-place
``+=`` into a real array, ``float()``) is a refusal too, naming that line and any earlier silent store into
a real array; any other exception is re-raised with a note that the complex step was running.
:class:`Line` evaluates along one direction: central and one-sided differences, the latter for a kink
(relu, max) within the step.
"""

from __future__ import annotations

import math
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GrusymError, InputError
from .noise import fd_noise, fd_step, resolution
from .trace import Loss, describe_line, locate_loss, user_frame

__all__ = ["ComplexStep", "Line", "Taylor", "central", "kink_sides", "smooth", "taylor_sweep"]

Array = NDArray[Any]
Value = Callable[[dict[str, Array]], float]
_COMPLEX_STEP = 1e-20  # no subtraction, so any step far below sqrt(eps) gives full precision
_TAYLOR_START = 1e-2
_TAYLOR_MAX = 1.0  # the largest e a sweep starts from (v is scaled like x: e = 1 doubles it)
_TAYLOR_HEADROOM = 1e3  # a start this far above the noise leaves about five halvings to fit a rate on
_TAYLOR_HALVINGS = 48
_FIT_MIN = 5  # fewer remainders than this decide nothing
_SIGNIFICANT = 5.0  # an implied error this many times its uncertainty off zero is a wrong gradient
# a remainder below this many noise standard deviations is rounding, not Taylor remainder
TAYLOR_NOISE_FACTOR = 64.0

try:
    _ComplexWarning: type[Warning] = np.exceptions.ComplexWarning
except AttributeError:  # numpy < 1.25
    _ComplexWarning = np.ComplexWarning  # type: ignore[attr-defined]


def central(value: Value, x: dict[str, Array], name: str, direction: Array, step: float) -> float:
    """Richardson-extrapolated central difference of ``value`` along ``direction`` (in ``x[name]``)."""
    return Line(value, x, name, direction).central(step)


class Line:
    """``value`` along one direction in ``x[name]``: f(s) = value(x + s u), each s evaluated once.

    ``central(h)`` is the Richardson-extrapolated central difference (4 evaluations, truncation O(h^4)),
    ``one_sided(h, side)`` the third-order one-sided difference on points 0, h/2, h, 3h/2 of one side
    (truncation O(h^3)): the estimate that stays right when a kink lies within the step on the other side.
    """

    def __init__(
        self, value: Value, x: dict[str, Array], name: str, direction: Array, f0: float | None = None
    ) -> None:
        self.value, self.x, self.name, self.direction = value, x, name, direction
        self.values: dict[float, float] = {} if f0 is None else {0.0: f0}

    def __call__(self, s: float) -> float:
        if s not in self.values:
            base = self.x[self.name]
            original = base.copy()
            try:
                base[...] = original + s * self.direction
                self.values[s] = self.value(self.x)
            finally:
                base[...] = original
        return self.values[s]

    def central(self, h: float) -> float:
        def quotient(s: float) -> float:
            return (self(s) - self(-s)) / (2 * s)

        return (4 * quotient(h / 2) - quotient(h)) / 3

    def one_sided(self, h: float, side: int) -> float:
        s = side * h / 2
        return (-11 * self(0.0) + 18 * self(s) - 9 * self(2 * s) + 2 * self(3 * s)) / (6 * s)


# a one-sided difference on 0, h/2, h, 3h/2 carries (11 + 18 + 9 + 2) / 3 = 13.3 noise / h; central 8
ONE_SIDED_NOISE = 2.0  # times fd_noise(noise, h)


def kink_sides(
    line: Line, h: float, noise: float, disagree: Callable[[float, float, float], bool]
) -> tuple[float, float, float] | None:
    """(left, right, noise bound) when the two one-sided derivatives disagree (a kink within the step), else
    None (the function is smooth there, so the central difference stands). ``disagree(a, b, noise_bound)``
    is the caller's acceptance rule, negated."""
    bound = ONE_SIDED_NOISE * fd_noise(noise, h)
    left, right = line.one_sided(h, -1), line.one_sided(h, 1)
    return (left, right, bound) if disagree(left, right, bound) else None


def smooth(line: Line, h: float, noise: float, disagree: Callable[[float, float, float], bool]) -> bool:
    """Whether both one-sided derivatives agree with each other and with the central difference at step h:
    no kink within it, so smaller steps would only find the same (a kink close to x shifts the central
    difference away from both sides, two kinks one side each pull the sides apart)."""
    bound = ONE_SIDED_NOISE * fd_noise(noise, h)
    left, right, central = line.one_sided(h, -1), line.one_sided(h, 1), line.central(h)
    return not (disagree(left, right, 2 * bound) or disagree(central, left, 2 * bound))


class ComplexStep:
    """Im f(x + i s v) / s for a complex-analytic ``fun``, with every loss of the imaginary part refused."""

    def __init__(self, evaluate: Callable[[dict[str, Array]], Any], label: str) -> None:
        self.evaluate = evaluate  # dict of complex arrays -> fun's raw return value
        self.label = label

    def __call__(self, xc: dict[str, Array], locate: Callable[[], Loss | None] | None = None) -> float:
        """Im f(xc) / s; ``locate`` finds the line that lost the imaginary part, for the refusal's words."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _ComplexWarning)
            try:
                value = self.evaluate(xc)
            except GrusymError:
                raise
            except Exception as exc:
                self._raised(exc, caught)
                raise
        lost = [w for w in caught if issubclass(w.category, _ComplexWarning)]
        if lost:
            w = lost[0]
            raise InputError(
                f"complex step refused: {self.label} cast a complex value to real at "
                f"{describe_line(w.filename, w.lineno)}, discarding its imaginary part (NumPy "
                "ComplexWarning: a store into a real array, float(), a real dtype); every derivative it "
                "gives would be wrong: use method='fd'"
            )
        if isinstance(value, tuple) and value:
            value = value[0]
        if not np.iscomplexobj(value):
            found = locate() if locate is not None else None
            where = f": it happens {found}" if found else " (float(), .real, a real output buffer)"
            raise InputError(
                f"complex step refused: {self.label} returned a real {type(value).__name__} for complex "
                f"inputs, so the imaginary part was dropped on the way{where}: use method='fd'"
            )
        return float(np.imag(value)) / _COMPLEX_STEP

    def _raised(self, exc: Exception, caught: list[warnings.WarningMessage]) -> None:
        """Refuse, naming the line, when the user's code raised because its input was complex (an in-place
        ``+=`` into a real array, ``float()``); any other exception gets a note and propagates."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if user_frame(f.filename)]
        site = f" at {describe_line(frames[-1].filename, frames[-1].lineno or 0)}" if frames else ""
        stored = [w for w in caught if issubclass(w.category, _ComplexWarning)]
        first = (
            f"first, at {describe_line(stored[0].filename, stored[0].lineno)}, a complex value was stored "
            "into a real array (NumPy ComplexWarning: its imaginary part silently discarded); then "
            if stored
            else ""
        )
        message = str(exc).splitlines()[0] if str(exc) else ""
        casting = "ufunc" in type(exc).__name__.lower()  # numpy's UFuncTypeError: an in-place cast failed
        if isinstance(exc, TypeError) and (casting or "complex" in message.lower()):
            update = " (an in-place update of a real array with a complex value)" if "=" in site else ""
            raise InputError(
                f"complex step refused: {first}{self.label} raised {type(exc).__name__}{site}{update}: "
                f"{message}; code that is not complex-safe cannot use method='complex': use method='fd'"
            ) from exc
        note = (
            f"grusym: this was raised{site} inside {self.label} while the complex step evaluated it on "
            "complex inputs; code that is not complex-safe (in-place += into float arrays, float(), "
            "comparisons) cannot use method='complex': use method='fd'"
        )
        if hasattr(exc, "add_note"):
            exc.add_note(note)
            return
        raise InputError(f"{note}: {type(exc).__name__}: {exc}") from exc

    def element(self, xc: dict[str, Array], name: str, i: int) -> float:
        flat = xc[name].reshape(-1)
        original = flat[i]
        flat[i] = original + 1j * _COMPLEX_STEP
        try:
            return self(xc)
        finally:
            flat[i] = original

    @staticmethod
    def _agrees_near_kinks(
        line: Line,
        imaginary: float,
        step: float,
        noise: float,
        disagree: Callable[[float, float, float], bool],
    ) -> bool:
        """Whether the complex step agrees with central differences along ``line``, or with one side's
        derivative where a kink lies within the step (at steps 8, 64 and 512 times smaller too: a kink
        close to x contaminates both sides a little, two kinks one each)."""
        for h in (step, step / 8, step / 64, step / 512):
            if not disagree(imaginary, line.central(h), 4 * fd_noise(noise, h)):
                return True
            if smooth(line, h, noise, disagree):
                return False  # no kink within the step, and still different: the imaginary part is wrong
            sides = kink_sides(line, h, noise, lambda a, b, nb: disagree(a, b, 2 * nb))
            if (
                sides is not None
                and min(abs(imaginary - s) for s in sides[:2]) <= 1e-4 * abs(imaginary) + sides[2]
            ):
                return True
        return False  # at every step, neither the central difference nor a side: the imaginary part is wrong

    def probe(self, value: Value, x: dict[str, Array], names: list[str], noise: float, f0: float) -> None:
        """Refuse when the complex step and central differences disagree along one random direction.

        A silent loss (np.var, np.real, abs, a comparison that picks a branch on the real part only)
        returns a complex value but a wrong imaginary part; this catches it before any verdict is given and
        names the line of the user's code where it happens (:func:`grusym.checks.trace.locate_loss`). A
        kink within the central difference's step (relu, max) is not a loss: there the complex step must
        agree with one of the one-sided derivatives instead.
        """
        rng = np.random.default_rng(97)

        def disagree(a: float, b: float, noise_bound: float) -> bool:
            return abs(a - b) > 1e-4 * max(abs(a), abs(b)) + noise_bound

        for name in names:
            v = rng.choice([-1.0, 1.0], x[name].shape) * np.maximum(np.abs(x[name]), 1.0)
            step = fd_step(noise, f0)
            line = Line(value, x, name, v, f0)
            reference = line.central(step)
            xc = {k: a.astype(np.complex128) for k, a in x.items()}
            xc[name] = xc[name] + 1j * _COMPLEX_STEP * v
            plain = min(resolution(noise, f0) ** (1 / 3), 1e-2)  # the plain central step for the trace

            def locate(name: str = name, v: Array = v, plain: float = plain) -> Loss | None:
                return locate_loss(self.evaluate, x, name, v, plain, _COMPLEX_STEP)

            imaginary = self(xc, locate)
            if self._agrees_near_kinks(line, imaginary, step, noise, disagree):
                continue
            lost = "is lost (Im f = 0)" if imaginary == 0 else "is wrong"
            found = locate()
            where = (
                f"loses it {found}"
                if found is not None
                else "is not complex-analytic here, though no line of it shows where (abs, .real, "
                "np.var, np.maximum, comparisons or real buffers on values)"
            )
            raise InputError(
                f"complex step refused: along a random direction in {name!r} the imaginary part "
                f"{lost} (complex step {imaginary:.6g}, central differences {reference:.6g}); "
                f"{self.label} {where}: use method='fd'"
            )


@dataclass(frozen=True)
class Taylor:
    rate: float  # median of the last 3 rates above the noise (shown; the verdict is delta); inf with none
    rates: tuple[float, ...]  # log2 r(e) / r(e/2) for the halvings above the noise, largest e first
    slope: float  # <g, v>
    numeric: float  # the directional derivative the remainders imply: slope + delta
    seen: float  # the smallest error of <g, v> (absolute) the sweep resolves: _SIGNIFICANT sd + slope_error
    scale: float  # sum |g_i v_i|
    threshold: float  # remainders below this are noise
    fitted: bool = True  # enough remainders to fit delta; otherwise the sweep decides nothing

    @property
    def delta(self) -> float:
        """The error of <g, v> the remainders imply (0 for a right gradient, within ``seen``)."""
        return self.numeric - self.slope


def taylor_sweep(
    value: Value,
    x: dict[str, Array],
    name: str,
    g: Array,
    v: Array,
    f0: float,
    noise: float,
    slope_error: float = 0.0,
) -> Taylor:
    """Halve e until the remainder r(e) = f(x+ev) - f(x) - e<g,v> is rounding noise.

    The sweep starts at e = 1e-2, or larger (by factors of 4, up to 1) while the remainder there stands
    less than ``_TAYLOR_HEADROOM`` times above the noise: a code that rounds through float32 leaves only a
    narrow band between its remainder and its noise at 1e-2, too narrow for a rate. Rates are taken on
    consecutive pairs that both stand above the noise: noise + e * slope_error, where slope_error bounds
    the rounding of <g, v> itself. The verdict's number is delta, the error of <g, v> the remainders imply:
    Richardson-extrapolated from the remainders where they converge (:func:`_fit_delta`). A right gradient
    gives delta = 0 within its uncertainty u; ``seen`` = _SIGNIFICANT u + slope_error is the error the
    sweep would call. Unlike a rate read off two remainders,
    the fit is not fooled where an error's e * delta and c e^2 cancel (rates that climb above 2).
    """
    base = x[name]
    original = base.copy()
    slope = float(np.sum(g * v))
    threshold = max(TAYLOR_NOISE_FACTOR * noise, 1e-13 * max(abs(f0), 1.0))

    def floor(e: float) -> float:
        return threshold + e * slope_error

    def remainder(e: float) -> float:
        base[...] = original + e * v
        return value(x) - f0 - e * slope

    e = _TAYLOR_START
    try:
        with np.errstate(all="ignore"):
            first = remainder(e)
            while abs(first) < _TAYLOR_HEADROOM * floor(e) and e * 4 <= _TAYLOR_MAX:
                grown = remainder(4 * e)
                if not math.isfinite(grown):
                    break
                e, first = 4 * e, grown
            es, rs = [e], [first]
            for _ in range(_TAYLOR_HALVINGS):
                if len(rs) >= _FIT_MIN and abs(rs[-1]) < floor(es[-1]) and abs(rs[-2]) < floor(es[-2]):
                    break
                e /= 2
                es.append(e)
                rs.append(remainder(e))
    finally:
        base[...] = original
    above = [math.isfinite(r) and abs(r) >= floor(ei) for r, ei in zip(rs, es, strict=True)]
    trusted = [k for k in range(len(rs) - 1) if above[k] and above[k + 1]]
    rates = tuple(math.log2(abs(rs[k]) / abs(rs[k + 1])) for k in trusted)
    # shown, not judged on: the median of the last three pairs above the noise, 2 for a right gradient
    # and 1 for a wrong one, unmoved by one erratic pair next to the noise
    rate = float(np.median(rates[-3:])) if rates else math.inf
    scale = float(np.sum(np.abs(g * v)))
    distinct = dict(sorted((ei, r) for ei, r in zip(es, rs, strict=True) if math.isfinite(r)))
    points = sorted(distinct.items(), reverse=True)  # each e once (the start may revisit one), largest first
    if len(points) < _FIT_MIN:
        return Taylor(rate, rates, slope, slope, math.inf, scale, threshold, fitted=False)
    delta, sd = _fit_delta(points, noise)
    return Taylor(rate, rates, slope, slope + delta, _SIGNIFICANT * sd + slope_error, scale, threshold)


def _fit_delta(points: list[tuple[float, float]], noise: float) -> tuple[float, float]:
    """(delta, its uncertainty) from remainders (e, r(e)) at e halving, largest e first.

    D(e) = r(e) / e = delta + c e + d e^2 + ...; one Richardson step, delta_k = 2 D(e_k / 2) - D(e_k), removes
    c (so an error's e * delta and c e^2 cannot cancel) and leaves -d e_k^2 / 2, which falls by 4 per halving
    while the rounding it carries, about 5 noise / e_k, grows by 2. Its uncertainty at e_k: the truncation,
    read off how far delta moves around e_k (it must shrink by 4 per halving, or the estimate has not
    converged), plus 5.1 noise / e_k. The e_k with the smallest uncertainty gives the estimate: in the
    converged band between the higher-order terms at large e and the noise at small e.
    """
    es = [e for e, _ in points]
    ds = [(4 * points[k + 1][1] - points[k][1]) / es[k] for k in range(len(points) - 1)]
    if any(abs(es[k + 1] - es[k] / 2) > 1e-12 * es[k] for k in range(len(ds))):
        raise ValueError("remainders must be taken at e halving")  # the sweep's own invariant
    moves = [abs(ds[j] - ds[j + 1]) for j in range(len(ds) - 1)]
    best, best_err = 0.0, math.inf
    for k in range(len(moves) - 1):
        # the truncation at e_k seen three ways, which agree once delta_k converges: from the move to the
        # next step (4/3), from the one after (16/3) and from the one before (1/3)
        truncation = max(4 / 3 * moves[k], 16 / 3 * moves[k + 1], moves[k - 1] / 3 if k else 0.0)
        err = truncation + 5.1 * noise / es[k]
        if err < best_err:
            best, best_err = ds[k], err
    return best, best_err
