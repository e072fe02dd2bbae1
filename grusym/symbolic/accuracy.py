"""Whether a cheaper rewrite of an expression is as accurate in float64 as the form it replaces.

Contract: :func:`as_accurate` evaluates both forms at fixed probe points, in float64 the way the generated
code does (every named value computed and rounded first, primitives by the runtime's functions), and
against a 60-digit mpmath reference of the original; the rewrite passes when its error is nowhere more than
a small multiple of the original's. Algebraically equal forms are not equally accurate: the derivative of
``2 s tanh(s)`` is ``2 tanh(s) + 2 s (1 - tanh(s)^2)``, and its expansion ``2 s + 2 tanh(s) - 2 s
tanh(s)^2`` rounds to 0 where s passes 1e16 (tanh(s) = 1 in float64) while the original stays 2. The probes
put every leaf (a linear step, a state's previous value, a parameter vector, the input, an adjoint) at
magnitudes from 0 to 1e20 with both signs; they are the same on every run, so the generated code is too.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from .. import runtime as rt
from .primitives import PRIMITIVES, _Primitive

__all__ = ["Context", "as_accurate"]

PROBES = 48
_MAGNITUDES = (0.0, 1e-30, 1e-8, 0.25, 1.0, 3.0, 17.0, 40.0, 1e4, 1e10, 1e20)
_SLACK = 16.0  # a rewrite may be this many times less accurate than the original
_EPS = float(np.finfo(np.float64).eps)
_DIGITS = 60


# float64: the functions the generated code calls (its ufunc names, without the out= argument), under
# names of their own (SymPy's NumPy printer would print a function called Identity as a matrix)
def _as_float(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    # a constant argument (abs(0), sigmoid(0)) arrives as an int or a 0-d array, which out= cannot take
    return lambda x: fn(np.atleast_1d(np.asarray(x, dtype=np.float64)))


_FLOAT = {
    f"_f_{fn.label}": _as_float(
        np.copy
        if fn.ufunc == "np.copyto"
        else getattr(np, fn.ufunc[3:])
        if fn.ufunc.startswith("np.")
        else getattr(rt, fn.ufunc[3:])
    )
    for fn in PRIMITIVES.values()
}


def _renamed(e: sp.Expr) -> sp.Expr:
    return e.replace(
        lambda a: isinstance(a, _Primitive), lambda a: sp.Function(f"_f_{type(a).label}")(a.args[0])
    )


def _closed(e: sp.Expr) -> sp.Expr:
    """``e`` with every primitive but those of ``_EXACT`` replaced by its closed form (exp, log,
    Piecewise): mpmath evaluates it. Innermost first, until none is left (a closed form may hold one)."""

    def closable(a: sp.Expr) -> list[sp.Expr]:
        return [p for p in a.atoms(_Primitive) if type(p).__name__ not in _EXACT]

    while found := closable(e):
        inner = [a for a in found if not closable(a.args[0])]
        e = e.xreplace({a: type(a).closed(a.args[0]) for a in inner})
    return e


@functools.lru_cache(maxsize=4096)
def _float(e: sp.Expr, names: tuple[sp.Symbol, ...]) -> Callable[..., np.ndarray]:
    return sp.lambdify(names, _renamed(e), modules=[_FLOAT, "numpy"])  # type: ignore[no-any-return]


def _exp(x: mpmath.mpf) -> mpmath.mpf:
    """mpmath's exp, but inf / 0 beyond |x| = 1e6 (far past float64's range), where mpmath would compute
    ln 2 to as many digits as x has: minutes for exp(exp(40))."""
    if abs(x) > 1e6:
        return mpmath.inf if x > 0 else mpmath.mpf(0)
    return mpmath.exp(x)


def _tanh(x: mpmath.mpf) -> mpmath.mpf:
    return mpmath.sign(x) if abs(x) > 1e6 else mpmath.tanh(x)


def _softplus(x: mpmath.mpf) -> mpmath.mpf:
    return x if x > 1e6 else mpmath.log1p(_exp(x))


# closed forms that mpmath would evaluate as inf/inf or log(inf) at a large argument, and exp itself
_EXACT = {"Tanh": _tanh, "Softplus": _softplus, "tanh": _tanh, "exp": _exp}


@functools.lru_cache(maxsize=4096)
def _exact(e: sp.Expr, names: tuple[sp.Symbol, ...]) -> Callable[..., mpmath.mpf]:
    return sp.lambdify(names, _closed(e), modules=[_EXACT, "mpmath"])  # type: ignore[no-any-return]


def _order(
    exprs: tuple[sp.Expr, ...], defs: Mapping[sp.Symbol, sp.Expr]
) -> tuple[list[sp.Symbol], list[sp.Symbol]]:
    """The leaves the expressions read, and the named values they read in evaluation order."""
    leaves: list[sp.Symbol] = []
    named: list[sp.Symbol] = []

    def visit(sym: sp.Symbol) -> None:
        if sym in named or sym in leaves:
            return
        if sym in defs:
            for s in sorted(defs[sym].free_symbols, key=str):
                visit(s)
            named.append(sym)
        else:
            leaves.append(sym)

    for e in exprs:
        for s in sorted(e.free_symbols, key=str):
            visit(s)
    return leaves, named


def _probes(leaves: list[sp.Symbol]) -> dict[sp.Symbol, np.ndarray]:
    rng = np.random.default_rng(20261207)
    mags = np.array(_MAGNITUDES)
    return {
        s: rng.choice(mags, PROBES) * rng.choice((-1.0, 1.0), PROBES) * rng.uniform(0.5, 2.0, PROBES)
        for s in leaves
    }


@dataclass(frozen=True)
class Context:
    """What the symbols of an expression are: ``defs`` maps each named elementwise value to its scalar
    form (the other symbols are leaves); ``adjoints`` are the leaves that are adjoints, which scale the
    rounding error an adjoint expression may have (:func:`as_accurate`)."""

    defs: Mapping[sp.Symbol, sp.Expr]
    adjoints: frozenset[sp.Symbol]


def _sums(terms: list[np.ndarray]) -> list[np.ndarray]:
    """The float64 sums of ``terms`` in every order (up to five terms; beyond, the given order, its
    reverse and both orders of magnitude per probe): the emitted calls may add them in any of them."""
    if len(terms) <= 5:
        orders = [list(p) for p in itertools.permutations(terms)]
    else:
        by_size = np.argsort(np.abs(np.stack(terms)), axis=0)
        stacked = np.stack(terms)
        ascending = [np.take_along_axis(stacked, by_size[k : k + 1], axis=0)[0] for k in range(len(terms))]
        orders = [terms, terms[::-1], ascending, ascending[::-1]]
    sums = []
    for order in orders:
        total = order[0]
        for t in order[1:]:
            total = total + t
        sums.append(total)
    return sums


def _function(fn: type) -> tuple[Callable[..., np.ndarray], Callable[..., mpmath.mpf]]:
    x = sp.Symbol("x", real=True)
    return _float(fn(x), (x,)), _exact(fn(x), (x,))


class _Worst:
    """A form at the probes: its exact value and, per probe, its float64 value in the order of operations
    farthest from it (so a form is judged by its worst emission, whatever order the code adds in)."""

    def __init__(self, values: Mapping[sp.Symbol, np.ndarray], exact: Mapping[sp.Symbol, list[mpmath.mpf]]):
        self.values, self.exact = values, exact

    def __call__(self, e: sp.Expr) -> tuple[np.ndarray, list[mpmath.mpf]]:
        if e.is_Symbol:
            return np.asarray(self.values[e], dtype=np.float64), list(self.exact[e])
        if e.is_number and not e.atoms(sp.Function):
            return np.full(PROBES, float(e)), [mpmath.mpf(sp.N(e, _DIGITS))] * PROBES
        unary = isinstance(e, sp.Function) and len(e.args) == 1
        if not (isinstance(e, (sp.Add, sp.Mul)) or (isinstance(e, sp.Pow) and e.exp.is_integer) or unary):
            return self._whole(e)
        args = [self(a) for a in e.args]
        if isinstance(e, sp.Add):
            exact = [mpmath.fsum(col) for col in zip(*(a[1] for a in args), strict=True)]
            ref = np.array([float(v) for v in exact])
            sums = np.stack(_sums([a[0] for a in args]))
            worst = np.argmax(np.nan_to_num(np.abs(sums - ref), nan=np.inf), axis=0)
            return np.take_along_axis(sums, worst[None], axis=0)[0], exact
        if isinstance(e, sp.Mul):
            value, exact = args[0][0], list(args[0][1])
            for v, x in args[1:]:
                value = value * v
                exact = [a * b for a, b in zip(exact, x, strict=True)]
            return value, exact
        if isinstance(e, sp.Pow) and e.exp.is_integer:
            k = int(e.exp)
            (base, exact), _ = args
            return base**k, [_power(b, k) for b in exact]
        f_float, f_exact = _function(e.func)
        ((arg, exact),) = args
        return np.broadcast_to(f_float(arg), (PROBES,)), [_apply(f_exact, v) for v in exact]

    def _whole(self, e: sp.Expr) -> tuple[np.ndarray, list[mpmath.mpf]]:
        """Any other node (a Piecewise, a step function of two arguments) evaluated whole."""
        deps = tuple(sorted(e.free_symbols, key=str))
        value = np.broadcast_to(_float(e, deps)(*(self.values[s] for s in deps)), (PROBES,))
        fn = _exact(e, deps)
        return value, [_call(fn, [self.exact[s][k] for s in deps]) for k in range(PROBES)]


def _power(b: mpmath.mpf, k: int) -> mpmath.mpf:
    try:
        return b**k
    except ZeroDivisionError:
        return mpmath.nan


def _apply(fn: Callable[..., mpmath.mpf], v: mpmath.mpf) -> mpmath.mpf:
    if not mpmath.isfinite(v):
        return mpmath.nan
    try:
        out = fn(v)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        return mpmath.nan
    return out if isinstance(out, mpmath.mpf) else mpmath.nan  # log/sqrt of a negative: complex


def as_accurate(candidate: sp.Expr, original: sp.Expr, ctx: Context) -> bool:
    """Whether ``candidate`` (equal to ``original`` in exact arithmetic) is as accurate in float64,
    each judged by its worst order of operations.

    At every probe where the original and its exact value are finite, the candidate's error may be
    ``_SLACK`` times the original's plus ``_SLACK`` roundings of ``|exact| + scale``, the scale being
    the sum of the magnitudes of the adjoints it reads (for an expression with none: 1, the size of a
    bounded activation). So ``dh*(1 - z)`` may become ``dh - dh*z`` (an error of a rounding of ``dh``
    where z is near 1), and ``h_prev*z + h_tilde*(1 - z)`` ``h_tilde + z*(h_prev - h_tilde)``, but a
    form whose terms grow with a leaf and cancel may not.
    """
    if candidate == original:
        return True
    try:
        return _as_accurate(candidate, original, ctx)
    except Exception:  # any failure to evaluate: the derived form stays, never a crash
        return False  # a form the probes cannot evaluate is not proved as accurate


def _as_accurate(candidate: sp.Expr, original: sp.Expr, ctx: Context) -> bool:
    defs = ctx.defs
    leaves, named = _order((candidate, original), defs)
    values = _probes(leaves)
    exact = {s: [mpmath.mpf(float(v)) for v in values[s]] for s in leaves}
    with np.errstate(all="ignore"), mpmath.workdps(_DIGITS):
        for sym in named:  # rounded to float64 as the generated code stores them; and exactly
            deps = tuple(sorted(defs[sym].free_symbols, key=str))
            values[sym] = np.broadcast_to(_float(defs[sym], deps)(*(values[s] for s in deps)), (PROBES,))
            fn = _exact(defs[sym], deps)
            exact[sym] = [_call(fn, [exact[s][k] for s in deps]) for k in range(PROBES)]
        worst = _Worst(values, exact)
        got_c, _ = worst(candidate)
        got_o, exact_o = worst(original)
        reference = np.array([float(v) if mpmath.isfinite(v) else np.nan for v in exact_o])
        ok = np.isfinite(reference) & np.isfinite(got_o)
        err_c = np.abs(got_c - reference)
        err_o = np.abs(got_o - reference)
        read = [values[s] for s in leaves if s in ctx.adjoints]
        scale = np.sum(np.abs(read), axis=0) if read else 1.0
        bound = _SLACK * (err_o + _EPS * (np.abs(reference) + scale)) + np.finfo(np.float64).tiny
    return bool(np.all(~ok | (np.isfinite(got_c) & (err_c <= bound))))


def _call(fn: Callable[..., mpmath.mpf], args: list[mpmath.mpf]) -> mpmath.mpf:
    if not all(mpmath.isfinite(a) for a in args):
        return mpmath.nan
    try:
        out = fn(*args)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        return mpmath.nan
    return out if isinstance(out, mpmath.mpf) else mpmath.nan
