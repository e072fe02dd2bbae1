"""A symbolic gradient oracle that shares nothing with the generator.

Contract: for tiny sizes (``LIMITS``: T <= 3, n <= 2, d, h, q <= 3) :func:`unrolled_loss` writes the whole
unrolled loss of a variant as one scalar expression in explicit symbols, one per element of every
parameter, of ``h0`` and of float ``X``. It reads only the declared cell: linear steps (``Step.terms`` and
``Step.bias``) are expanded element by element into sums of products, elementwise steps come from
``scalar_form`` with each primitive replaced by its closed form (``1/(1 + exp(-x))``,
``(e^x - e^-x)/(e^x + e^-x)``), and the mean softmax cross-entropy is ``log sum exp - logit``. Neither
``derive.py``, the rule table nor ``codegen.py`` is involved: symengine (SymPy when symengine is missing)
differentiates the expression directly.

:func:`check_oracle` evaluates the oracle's loss and gradients with mpmath at ``digits`` significant digits
on a point of dyadic rationals (exact in float64, so both sides see the same point) and compares them with
the generated float64 ``loss_and_grads``: what is left is the generated code's rounding error. This is an
exact-input, high-precision numeric comparison, not a proof of symbolic identity.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

from .checks.report import Entry, GradientReport
from .checks.tolerance import TOLERANCES, relative_error, rounding_floor
from .errors import InputError
from .problems import tupled_states
from .stepinputs import HeldFixed

__all__ = ["LIMITS", "check_oracle", "oracle_gradients", "unrolled_loss"]

LIMITS = {"T": 3, "n": 2, "d": 3, "h": 3, "q": 3}
_DYADIC = 2**12  # the check point is rounded to multiples of 1/4096: exact in float64 and as a rational


def _backend(name: str | None) -> ModuleType:
    if name in (None, "symengine"):
        try:
            import symengine

            return symengine
        except ImportError:
            if name == "symengine":
                raise InputError("backend 'symengine' requested but symengine is not installed") from None
    if name not in (None, "sympy"):
        raise InputError(f"backend must be 'symengine' or 'sympy', got {name!r}")
    import sympy

    return sympy


def _convert(expr: Any, env: dict[str, Any], B: ModuleType) -> Any:
    """Rebuild a SymPy scalar expression in backend B, symbols looked up in env, primitives in closed form."""
    import sympy as sp

    from .symbolic.primitives import PRIMITIVES

    if isinstance(expr, sp.Symbol):
        return env[expr.name]
    if expr.is_Rational:
        return B.Rational(int(expr.p), int(expr.q))
    if isinstance(expr, sp.Add):
        return B.Add(*(_convert(a, env, B) for a in expr.args))
    if isinstance(expr, sp.Mul):
        return B.Mul(*(_convert(a, env, B) for a in expr.args))
    if isinstance(expr, sp.Pow):
        return B.Pow(_convert(expr.base, env, B), _convert(expr.exp, env, B))
    if isinstance(expr, sp.exp):
        return B.exp(_convert(expr.args[0], env, B))
    if isinstance(expr, sp.log):
        return B.log(_convert(expr.args[0], env, B))
    if isinstance(expr, sp.tanh):  # gelu's closed form
        return B.tanh(_convert(expr.args[0], env, B))
    if expr is sp.pi:
        return B.pi
    if isinstance(expr, sp.Abs):  # softsign's closed form; a Piecewise differentiates in both backends
        a = _convert(expr.args[0], env, B)
        return B.Piecewise((-a, a < 0), (a, B.true))
    if isinstance(expr, sp.Piecewise):  # relu, hard_sigmoid: their closed forms carry the kink convention
        return B.Piecewise(*((_convert(e, env, B), _condition(c, env, B)) for e, c in expr.args))
    primitive: Any = type(expr)
    if primitive in PRIMITIVES.values():
        x = sp.Symbol("x", real=True)
        closed = primitive(x).rewrite(sp.exp)  # the primitive's own definition, not its derivative rule
        return _convert(closed, {"x": _convert(expr.args[0], env, B)}, B)
    raise InputError(f"the oracle cannot translate {type(expr).__name__}: {expr}")


def _condition(cond: Any, env: dict[str, Any], B: ModuleType) -> Any:
    import sympy as sp

    if cond is sp.true:
        return B.true
    if isinstance(cond, (sp.LessThan, sp.StrictLessThan, sp.GreaterThan, sp.StrictGreaterThan)):
        lhs, rhs = _convert(cond.lhs, env, B), _convert(cond.rhs, env, B)
        op = {sp.LessThan: "__le__", sp.StrictLessThan: "__lt__", sp.GreaterThan: "__ge__"}
        return getattr(lhs, op.get(type(cond), "__gt__"))(rhs)
    if isinstance(cond, sp.Equality):  # abs' closed form: its value 0 at the kink
        return B.Eq(_convert(cond.lhs, env, B), _convert(cond.rhs, env, B))
    raise InputError(f"the oracle cannot translate the condition {cond}")


def _linear(step: Any, values: dict[str, Any], params: dict[str, Any], B: ModuleType) -> Any:
    """``sum_terms left @ W + b`` expanded element by element (lists of backend scalars)."""
    rows = len(values[step.terms[0].left])
    cols = len(params[step.terms[0].weight][0])
    out = [[B.Add(*(params[b][j] for b in step.biases)) for j in range(cols)] for _ in range(rows)]
    for term in step.terms:
        left, W = values[term.left], params[term.weight]
        for i in range(rows):
            for j in range(cols):
                out[i][j] = out[i][j] + B.Add(*(left[i][k] * W[k][j] for k in range(len(W))))
    return out


def _cell(name: Any) -> Any:
    """A declared cell: ``name`` itself, or the built-in of that name."""
    from .symbolic.variants import CELLS

    if not isinstance(name, str):
        return name
    if name not in CELLS:
        raise InputError(f"unknown variant {name!r}; known variants: {', '.join(CELLS)}")
    return CELLS[name].cell()


def unrolled_loss(
    name: Any,
    sizes: dict[str, int],
    Y: Any,
    *,
    tokens: Any = None,
    backend: str | None = None,
    aux: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """The unrolled loss of cell ``name`` (a built-in's name or a declared Cell) as one scalar expression,
    and its symbols by input name.

    sizes: T, n, d, h, q (at most ``LIMITS``); Y: (T, n) integer targets; tokens: optional (T, n) ids,
    in which case X is one-hot constants and has no symbols. Returns (loss, symbols) where symbols maps
    every parameter name, every initial state ("h0", "c0", ...) and (float X) "X" to an object array of
    symbols of that shape. aux: the per-step inputs of a cell with ``c.input``s, (T, n, h) arrays of
    constants (exact binary rationals), held fixed: they get no symbols.
    """
    from .symbolic.cell import scalar_form
    from .symbolic.variants import head

    cell = _cell(name)
    for key, limit in LIMITS.items():
        if not 1 <= int(sizes[key]) <= limit:
            raise InputError(f"the oracle is for tiny sizes: {key} must be in [1, {limit}], got {sizes[key]}")
    B = _backend(backend)
    T, n, d, h, q = (int(sizes[k]) for k in ("T", "n", "d", "h", "q"))
    dims = {"n": n, "d": d, "h": h, "q": q}
    _, head_step = head()
    shapes = {p.name: tuple(dims[s] for s in p.shape_names) for p in cell.params.values()}
    shapes |= {"W_hq": (h, q), "b_q": (q,)} | {f"{s}0": (n, h) for s in cell.states}
    if tokens is None:
        shapes["X"] = (T, n, d)
    symbols: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        arr = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            arr[idx] = B.Symbol(f"{key}[{','.join(map(str, idx))}]")
        symbols[key] = arr
    P = {k: v.tolist() for k, v in symbols.items()}
    if tokens is None:
        X = P["X"]
    else:
        X = [[[B.Integer(int(tokens[t][i] == k)) for k in range(d)] for i in range(n)] for t in range(T)]
    forms = {s.name: scalar_form(s.expr) for s in cell.steps if s.kind == "elementwise"}
    prev = {s: P[f"{s}0"] for s in cell.states}
    terms = []
    fixed = _constants(cell, aux, (T, n, h), B)
    for t in range(T):
        values = {"X": X[t], **{f"{s}_prev": v for s, v in prev.items()}}
        values |= {k: v[t] for k, v in fixed.items()}
        for step in cell.steps:
            if step.kind == "linear":
                values[step.name] = _linear(step, values, P, B)
            elif step.kind in ("mean", "sum"):  # each row's mean (sum) over the units, in every column
                scale = B.Integer(1) / h if step.kind == "mean" else B.Integer(1)
                values[step.name] = [[B.Add(*row) * scale] * h for row in values[step.inputs[0]]]
            else:
                values[step.name] = [
                    [
                        _convert(
                            forms[step.name],
                            {k: values[k][i][j] for k in step.inputs} | {v: P[v][j] for v in step.vectors},
                            B,
                        )
                        for j in range(h)
                    ]
                    for i in range(n)
                ]
        prev = {s: values[s] for s in cell.states}
        logits = _linear(head_step, {"H": values["h"]}, P, B)
        for i in range(n):
            terms.append(B.log(B.Add(*(B.exp(c) for c in logits[i]))) - logits[i][int(Y[t][i])])
    return B.Add(*terms) / (T * n), symbols


def _constants(
    cell: Any, aux: dict[str, Any] | None, shape: tuple[int, ...], B: ModuleType
) -> dict[str, Any]:
    """The per-step inputs as nested lists of backend rationals (exact: every float is a binary one)."""
    names = list(getattr(cell, "inputs", ()))
    given = dict(aux or {})
    if sorted(given) != sorted(names):
        raise InputError(
            f"cell {cell.name!r} reads the per-step inputs {names}; the oracle got {sorted(given)}"
        )
    out = {}
    for k in names:
        a = np.broadcast_to(np.asarray(given[k], dtype=np.float64), shape)
        out[k] = [
            [[B.Rational(*Fraction(float(v)).as_integer_ratio()) for v in row] for row in step] for step in a
        ]
    return out


def _evaluator(point: dict[Any, Any]) -> Callable[[Any], Any]:
    """A memoised mpmath evaluator for backend expression DAGs (shared subtrees are evaluated once)."""
    import mpmath

    memo: dict[Any, Any] = {}

    def ev(e: Any) -> Any:
        hit = memo.get(e)
        if hit is not None:
            return hit
        kind = type(e).__name__
        if e in point:
            v = point[e]
        elif e.is_Number:
            frac = Fraction(str(e))
            v = mpmath.mpf(frac.numerator) / frac.denominator
        elif kind == "Add":
            v = mpmath.fsum(ev(a) for a in e.args)
        elif kind == "Mul":
            v = mpmath.fprod(ev(a) for a in e.args)
        elif kind == "Pow":
            base, expo = e.args
            v = mpmath.exp(ev(expo)) if type(base).__name__ == "Exp1" else ev(base) ** ev(expo)
        elif kind == "Piecewise":
            args = e.args
            if type(args[0]).__name__ == "ExprCondPair":  # SymPy: (value, condition) pairs
                pairs = [(a.args[0], a.args[1]) for a in args]
            else:  # symengine: value, condition, value, condition, ...
                pairs = list(zip(args[::2], args[1::2], strict=True))
            v = next(ev(val) for val, cond in pairs if _holds(cond, ev))
        elif kind in ("exp", "log", "tanh"):
            v = getattr(mpmath, kind)(ev(e.args[0]))
        elif kind == "Exp1":
            v = mpmath.e
        elif kind in ("Pi", "Constant") and str(e) == "pi":
            v = mpmath.pi
        else:
            raise InputError(f"the oracle evaluator cannot handle {kind}: {e}")
        memo[e] = v
        return v

    return ev


def _holds(cond: Any, ev: Callable[[Any], Any]) -> bool:
    kind = type(cond).__name__
    if kind in ("BooleanTrue", "true"):
        return True
    lhs, rhs = (ev(a) for a in cond.args)
    compare = {"LessThan": lhs <= rhs, "StrictLessThan": lhs < rhs, "GreaterThan": lhs >= rhs}
    if kind in compare:
        return bool(compare[kind])
    if kind == "StrictGreaterThan":
        return bool(lhs > rhs)
    if kind == "Equality":
        return bool(lhs == rhs)
    raise InputError(f"the oracle evaluator cannot handle the condition {cond}")


def _input_size(name: Any, params: dict[str, Any]) -> int:
    p = next(p for p in _cell(name).params.values() if p.shape_names[0] == "d")
    return int(np.asarray(params[p.name]).shape[0])


def oracle_gradients(
    name: Any,
    params: dict[str, Any],
    X: Any,
    Y: Any,
    h0: Any,
    *,
    digits: int = 40,
    backend: str | None = None,
    aux: dict[str, Any] | None = None,
) -> tuple[float, dict[str, np.ndarray], float]:
    """The oracle's loss and gradients of cell ``name`` (a built-in's name or a Cell) at (params, X, Y, h0),
    as float64 arrays.

    X: (T, n, d) floats or (T, n) token ids, Y: (T, n), h0: (n, h) or a tuple of states in the cell's
    order, all within ``LIMITS``; aux: a cell's per-step inputs (T, n, h), held fixed. Values are
    taken as exact binary rationals and evaluated at ``digits`` significant digits before rounding.
    Returns (loss, grads, seconds spent differentiating).
    """
    import time

    import mpmath

    cell = _cell(name)
    X = np.asarray(X)
    tokens = X if X.dtype.kind in "iu" else None
    T, n = X.shape[:2]
    states0 = dict(zip((f"{s}0" for s in cell.states), (h0,) if len(cell.states) == 1 else h0, strict=True))
    sizes = {
        "T": T,
        "n": n,
        "h": np.asarray(states0["h0"]).shape[1],
        "q": np.asarray(params["W_hq"]).shape[1],
    }
    sizes["d"] = X.shape[2] if tokens is None else _input_size(cell, params)
    loss, symbols = unrolled_loss(cell, sizes, np.asarray(Y), tokens=tokens, backend=backend, aux=aux)
    values = {**params, **states0} | ({} if tokens is not None else {"X": X})
    with mpmath.workdps(digits):
        point = {}
        for key, syms in symbols.items():
            arr = np.asarray(values[key], dtype=np.float64)
            for idx in np.ndindex(*syms.shape):
                frac = Fraction(float(arr[idx]))  # exact: every float is a binary rational
                point[syms[idx]] = mpmath.mpf(frac.numerator) / frac.denominator
        ev = _evaluator(point)
        start = time.perf_counter()
        derivs = {k: [loss.diff(s) for s in syms.reshape(-1)] for k, syms in symbols.items()}
        seconds = time.perf_counter() - start
        grads = {
            k: np.array([float(ev(g)) for g in gs]).reshape(symbols[k].shape) for k, gs in derivs.items()
        }
        value = float(ev(loss))
    return value, grads, seconds


def check_oracle(
    name: str | ModuleType,
    *,
    cell: Any = None,
    T: int = 3,
    n: int = 2,
    d: int = 3,
    h: int = 3,
    q: int = 3,
    seed: int = 0,
    scale: float = 1.0,
    tokens: bool = False,
    loss_and_grads: Callable[..., Any] | None = None,
    localize: bool = True,
    digits: int = 40,
    backend: str | None = None,
) -> GradientReport:
    """Compare the generated loss and gradients of ``name`` (or ``loss_and_grads``) with the oracle.

    name: a built-in's name, or a generated module (a user's cell) whose declared Cell is ``cell``.
    The problem is ``problems.variant_data``'s, rounded to multiples of 1/4096 so the float64 inputs
    are exactly the oracle's rationals. One entry per gradient plus one for the loss value itself.
    """
    from .problems import variant_data

    m, params, X, Y, h0 = variant_data(name, T=T, n=n, d=d, h=h, q=q, seed=seed, scale=scale, tokens=tokens)
    if cell is None:
        cell = _cell(m.VARIANT)
    params = {k: np.round(v * _DYADIC) / _DYADIC for k, v in params.items()}
    multi = isinstance(h0, tuple)
    h0 = tuple(np.round(s * _DYADIC) / _DYADIC for s in h0) if multi else np.round(h0 * _DYADIC) / _DYADIC
    if not tokens:
        X = np.round(X * _DYADIC) / _DYADIC
    # a cell's per-step inputs, held fixed (problems.variant_data)
    aux = m.inputs_at(X, params) if isinstance(m, HeldFixed) else None
    value, reference, seconds = oracle_gradients(
        cell, params, X, Y, h0, digits=digits, backend=backend, aux=aux
    )
    fn = loss_and_grads or m.loss_and_grads
    result = fn(params, X, Y, h0)
    generated_loss, generated = float(result[0]), result[1]
    rtol, atol = TOLERANCES["oracle"]
    report = GradientReport(
        "oracle", rtol, note=f"symbolic, {digits} digits, differentiated in {seconds:.2f} s"
    )
    scale = max(float(np.max(np.abs(g), initial=0.0)) for g in reference.values())
    for key, ref in [("loss", np.array(value)), *reference.items()]:
        if key != "loss" and key not in generated:
            raise InputError(f"loss_and_grads returned no gradient for {key!r}")
        ana = np.asarray(generated_loss if key == "loss" else generated[key], dtype=np.float64)
        if ana.shape != ref.shape:
            raise InputError(f"gradient of {key!r} has shape {ana.shape}, the oracle's has {ref.shape}")
        floor = rounding_floor(abs(value), rtol, atol) if key == "loss" else rounding_floor(scale, rtol, atol)
        err = relative_error(ana, ref, floor)
        worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        e = float(err[worst])
        report.entries.append(
            Entry(
                key,
                tuple(int(i) for i in worst),
                float(ana[worst]),
                float(ref[worst]),
                e,
                e <= rtol,
                int(err.size),
                reference="oracle",
            )
        )
    if localize:
        from .checks.recurrent import localize_failures  # one way: the checks never import the oracle

        if multi:  # the locator passes several states as separate arguments, the module takes one tuple
            names = tuple(f"{s}0" for s in m.STATES)
            localize_failures(
                report, tupled_states(m.loss), tupled_states(fn), params, X, Y, h0, state_names=names
            )
        else:
            localize_failures(report, m.loss, fn, params, X, Y, h0)
    return report
