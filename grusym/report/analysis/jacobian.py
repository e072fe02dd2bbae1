"""The one-step Jacobian J_t = ds_t/ds_{t-1} of a cell's state s in closed form, and what it says about BPTT.

For a cell with one state s = h. With several states (LSTM's h and c) s is the full state vector, the
states side by side in ``cell.states`` order, and J_t is the block matrix of :class:`StateJacobian` whose
block (a, b) is the :class:`Jacobian` da_t/db_{t-1}; every block is derived the same way.

Contract: :func:`jacobian` chains the cell's own local derivatives (``Derivation.local[...].used``, i.e.
SymPy's derivatives of the declared steps) forward through the steps: a linear step ``a = left @ W + ...``
contributes ``W^T J_left`` (X has no path to h_{t-1}), an elementwise step ``v = f(u, ...)`` contributes
``diag(df/du) J_u``. The result is a sum of products of ``diag(.)`` factors and transposed weights, in the
numerator layout ``J[i, j] = dh_t[i] / dh_{t-1}[j]`` of one batch row, so that BPTT reads
``dh_{t-1} = dh_t J_t`` for row vectors. Nothing here is typed per variant.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ...symbolic.cell import OUTPUT, STATE, Cell, prev_name, scalar_form
from ...symbolic.derive import Derivation, derive
from ...symbolic.primitives import Sigmoid, Tanh
from ..render import latex
from .compile import numeric

__all__ = [
    "BoundTerm",
    "Factor",
    "Jacobian",
    "StateJacobian",
    "collect_bound",
    "factor_vectors",
    "jacobian",
    "state_jacobian",
    "within_step",
]

SIGN = sp.Symbol("sign", real=True)  # +-1: the side a tanh output saturates on
# a reduction step m = v @ M (symbolic/reduce.py) is the factor M^T = M, named like a weight; not a parameter
REDUCTION = {"mean": "<mean>", "sum": "<sum>"}


def _hidden_size(params: dict[str, np.ndarray]) -> int:
    return int(np.asarray(params["W_hq"]).shape[0])


def weight_matrix(name: str, params: dict[str, np.ndarray], h: int | None = None) -> np.ndarray:
    """A weight factor's matrix: the parameter, or a reduction's M (J/h for a mean, J for a sum)."""
    if name not in REDUCTION.values():
        return np.asarray(params[name])
    h = h or _hidden_size(params)
    return np.full((h, h), 1.0 / h if name == REDUCTION["mean"] else 1.0)


@dataclass(frozen=True)
class Factor:
    """``diag(expr)`` when ``weight`` is None, else ``weight^T``."""

    expr: sp.Expr = sp.S.One
    weight: str | None = None


Term = tuple[Factor, ...]  # a matrix product, left to right
Norms = tuple[tuple[str, str], ...]  # a sum of parameter norms: ((param, "2" | "1" | "inf"), ...)


@dataclass(frozen=True)
class BoundTerm:
    """``coef`` times the product of the norm sums ``norms``; ``unbounded``: data-dependent factors left."""

    coef: sp.Expr
    norms: tuple[Norms, ...]
    unbounded: tuple[str, ...] = ()

    def value(self, params: dict[str, np.ndarray]) -> float:
        """The term's value for these parameters (nan when a factor is data dependent)."""
        if self.unbounded:
            return float("nan")
        out = float(self.coef)
        for parts in self.norms:
            out *= sum(_norm(weight_matrix(p, params), kind) for p, kind in parts)
        return out


def collect_bound(terms: list[BoundTerm]) -> list[BoundTerm]:
    """Like terms added up (the blocks of a full-state J repeat factors): one term per product of norms."""
    out: dict[tuple[Any, ...], sp.Expr] = {}
    for bt in terms:
        key = (bt.norms, bt.unbounded)
        out[key] = out.get(key, sp.Integer(0)) + bt.coef
    return [BoundTerm(coef, norms, unbounded) for (norms, unbounded), coef in out.items() if coef != 0]


def _norm(a: np.ndarray, kind: str) -> float:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1 or kind == "inf":
        return float(np.max(np.abs(a)))
    # "1": the induced norm for row vectors times a, max_i sum_j |a[j, i]| (the largest column sum)
    return float(np.linalg.norm(a, 2 if kind == "2" else 1))


def _normal(term: Term) -> Term | None:
    """Merge adjacent diagonals, drop identities; None if the product is zero."""
    out: list[Factor] = []
    for f in term:
        if f.weight is None:
            if f.expr == 0:
                return None
            if out and out[-1].weight is None:
                out[-1] = Factor(out[-1].expr * f.expr)
                continue
        out.append(f)
    # numbers commute with everything: one constant in front
    const = sp.Mul(*(f.expr for f in out if f.weight is None and f.expr.is_Number))
    rest = [f for f in out if not (f.weight is None and f.expr.is_Number)]
    if rest and rest[0].weight is None and const != 1:
        return (Factor(const * rest[0].expr), *rest[1:])
    return ((Factor(const),) if const != 1 else ()) + tuple(rest)


def _collect(terms: list[Term]) -> tuple[Term, ...]:
    """Sum terms that differ only in their leading diagonal; keep first-seen order."""
    lead: dict[Term, sp.Expr] = {}
    for term in terms:
        t = _normal(term)
        if t is None:
            continue
        head, rest = (t[0].expr, t[1:]) if t and t[0].weight is None else (sp.Integer(1), t)
        lead[rest] = lead.get(rest, sp.Integer(0)) + head
    out = []
    for rest, head in lead.items():
        t = _normal((Factor(head), *rest))
        if t is not None:
            out.append(t)
    return tuple(
        sorted(out, key=lambda t: sum(f.weight is not None for f in t))
    )  # stable: fewest weights first


@dataclass(frozen=True)
class Jacobian:
    """J_t = sum over ``terms`` of products of factors: d target_t / d source_{t-1} (default: h, h)."""

    cell: Cell
    terms: tuple[Term, ...]
    target: str = OUTPUT
    source: str = OUTPUT

    @property
    def params(self) -> frozenset[str]:
        return frozenset(self.cell.params)

    def at(self, subs: dict[sp.Symbol, Any]) -> Jacobian:
        """J with values substituted into every diagonal (e.g. a gate at 0 or 1)."""
        terms = [
            tuple(Factor(f.expr.subs(subs).subs(SIGN**2, 1)) if f.weight is None else f for f in t)
            for t in self.terms
        ]
        return Jacobian(self.cell, _collect(terms), self.target, self.source)

    def is_identity(self) -> bool:
        return len(self.terms) == 1 and self.terms[0] == ()

    def tex(self) -> str:
        """``diag(.) W^T ...`` sums; ``0`` or ``I`` when degenerate."""
        if not self.terms:
            return "0"
        return " + ".join(self._term_tex(t) for t in self.terms)

    def _term_tex(self, term: Term) -> str:
        if not term:
            return "I"
        parts = []
        if all(f.weight is None and f.expr.is_Number for f in term):
            return f"{latex.scalar(term[0].expr)} I"
        for f in term:
            if f.weight is not None:
                parts.append(f"{latex.name(f.weight, params=self.params)}^{{\\top}}")
            elif f.expr.is_Number:
                parts.append(latex.scalar(f.expr))
            else:
                parts.append(
                    rf"\operatorname{{diag}}\left({latex.elementwise(f.expr, params=self.params)}\right)"
                )
        return " ".join(parts)

    def evaluate(self, values: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> np.ndarray:
        """J of every batch row, (n, h, h); ``values`` maps each name in the diagonals to an (n, h) array
        (an elementwise parameter vector in a diagonal is read from ``params``)."""
        n, h = next(iter(values.values())).shape
        values = {**{k: np.broadcast_to(params[k], (n, h)) for k in _vectors(self.cell)}, **values}
        total = np.zeros((n, h, h))
        for term in self.terms:
            M = np.broadcast_to(np.eye(h), (n, h, h)).copy()
            for f in reversed(term):
                if f.weight is not None:
                    M = weight_matrix(f.weight, params, h).T @ M
                else:
                    names, fn = numeric(f.expr)
                    c = np.broadcast_to(np.asarray(fn(*(values[v] for v in names)), float), (n, h))
                    M = c[:, :, None] * M
            total += M
        return total

    def bound(self) -> list[tuple[sp.Expr, tuple[str, ...], tuple[str, ...]]]:
        """Per term: (sup of its diagonal factors over the ranges, unbounded names, its weights)."""
        ranges = value_ranges(self.cell)
        out = []
        for term in self.terms:
            coef, free = sp.Integer(1), []
            for f in term:
                if f.weight is None:
                    c, unbounded = _sup_abs(f.expr, ranges)
                    coef *= c
                    free += unbounded
            out.append((coef, tuple(free), tuple(f.weight for f in term if f.weight is not None)))
        return out

    def uniform_bound(self, ranges: dict[str, tuple[Any, Any]] | None = None) -> list[BoundTerm]:
        """A bound on ``||J_t||_2`` that holds for every t: a sum of :class:`BoundTerm`.

        Each diagonal factor is bounded by its supremum over ``ranges`` (default: the proved ranges of
        :func:`value_ranges`); a factor ``c * v`` in a value v without a range is bounded through v's own
        linear step when that step reads bounded values only: ``|v| <= sum ||W||_1 + ||b||_inf`` for
        ``v = u W + b`` with ``|u| <= 1`` elementwise (``||W||_1`` the largest column sum).
        """
        proved = value_ranges(self.cell)
        ranges = ranges if ranges is not None else proved
        steps = {s.name: s for s in self.cell.steps}
        out = []
        for term in self.terms:
            coef, left = sp.Integer(1), []
            norms: list[Norms] = []
            for f in term:
                if f.weight is not None:
                    norms.append(((f.weight, "2"),))
                    continue
                c, unbounded = _sup_abs(f.expr, ranges)
                coef *= c
                for v in unbounded:
                    step = steps.get(v)
                    if v in self.cell.params:  # an elementwise parameter vector: its largest |entry|
                        norms.append(((v, "inf"),))
                    elif (
                        step is not None
                        and step.kind == "linear"
                        and all(
                            t.left in proved and max(abs(x) for x in proved[t.left]) <= 1 for t in step.terms
                        )
                    ):
                        parts: Norms = tuple((t.weight, "1") for t in step.terms)
                        norms.append(parts + tuple((b, "inf") for b in step.biases))
                    else:
                        left.append(v)
            out.append(BoundTerm(coef, tuple(norms), tuple(left)))
        return out


def _weights(term: Term) -> int:
    return sum(f.weight is not None for f in term)


def _vectors(cell: Cell) -> list[str]:
    return [k for k, p in cell.params.items() if p.kind == "vector"]


@dataclass(frozen=True)
class StateJacobian:
    """J_t of the full state: ``blocks[(a, b)]`` is da_t/db_{t-1} for states a, b in ``cell.states`` order."""

    cell: Cell
    blocks: dict[tuple[str, str], Jacobian]

    @property
    def states(self) -> list[str]:
        return list(self.cell.states)

    def evaluate(self, values: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> np.ndarray:
        """J of every batch row, (n, S h, S h), block (a, b) at rows of a and columns of b."""
        rows = [
            np.concatenate([self.blocks[(a, b)].evaluate(values, params) for b in self.states], axis=2)
            for a in self.states
        ]
        return np.concatenate(rows, axis=1)


def state_jacobian(cell: Cell, der: Derivation | None = None) -> StateJacobian:
    """Every block da_t/db_{t-1} of ``cell``'s states (one block, dh_t/dh_{t-1}, for a one-state cell)."""
    der = der or derive(cell)
    return StateJacobian(cell, {(a, b): jacobian(cell, der, a, b) for a in cell.states for b in cell.states})


def jacobian(
    cell: Cell, der: Derivation | None = None, target: str = OUTPUT, source: str = OUTPUT
) -> Jacobian:
    """d target_t / d source_{t-1} of ``cell``, by default dh_t/dh_{t-1} (see the module docstring)."""
    return _chain(cell, der or derive(cell), target, prev_name(source), source)


def within_step(cell: Cell, target: str, source: str, der: Derivation | None = None) -> Jacobian:
    """d target_t / d source_t along the paths inside one step (source a value the step computes): how a
    state computed later in the step depends on one computed earlier (the LSTM's dh_t/dc_t)."""
    return _chain(cell, der or derive(cell), target, source, source)


def _chain(cell: Cell, der: Derivation, target: str, start: str, source: str) -> Jacobian:
    """Chain the local derivatives forward from the value ``start`` (identity there) to ``target``."""
    local = {(ld.step, ld.wrt): ld.used for ld in der.local}
    J: dict[str, tuple[Term, ...]] = {start: ((),)}
    for step in cell.steps:
        if step.name == start:
            continue  # the start's own step: its value is the variable, not a function of it
        terms: list[Term] = []
        if step.kind == "linear":
            for t in step.terms:
                terms += [(Factor(weight=t.weight), *rest) for rest in J.get(t.left, ())]
        elif step.kind in REDUCTION:
            terms += [(Factor(weight=REDUCTION[step.kind]), *rest) for rest in J.get(step.inputs[0], ())]
        else:
            for u in step.inputs:
                terms += [(Factor(local[(step.name, u)]), *rest) for rest in J.get(u, ())]
        J[step.name] = _collect(terms)
    return Jacobian(cell, J[target], target, source)


def recurrent_weights(cell: Cell) -> tuple[str, ...]:
    """The weights of the cell's main recurrent matrix: ``W_hh`` (the affine named after the output state)
    when J has it, else every weight on a path from a previous state (stacked side by side: the LSTM's
    ``[W_hi, W_hf, W_hg, W_ho]``); () when the recurrence is elementwise only (minGRU, IndRNN)."""
    sj = state_jacobian(cell)
    found = {f.weight for J in sj.blocks.values() for t in J.terms for f in t if f.weight}
    own = f"W_h{OUTPUT}"
    if own in found:
        return (own,)
    return tuple(p for p in cell.params if p in found)


def factor_vectors(cell: Cell) -> tuple[str, ...]:
    """The parameter vectors that scale another value (IndRNN's ``u * h_prev``, a multiplicative
    integration's ``alpha * wx * uh``): a vector whose derivative involves another value. ``init_params``
    draws every vector zero, which cuts what it scales; the report's runs set these to 1 instead."""
    out = []
    for step in cell.steps:
        if step.kind != "elementwise":
            continue
        f = scalar_form(step.expr)
        for v in step.vectors:
            sym = sp.Symbol(v, real=True)
            if sp.diff(f, sym).free_symbols - {sym}:
                out.append(v)
    return tuple(dict.fromkeys(out))


def primitive_outputs(cell: Cell) -> dict[str, type]:
    """Steps whose value is a primitive of another value: name -> Sigmoid (a gate) or Tanh."""
    out = {}
    for s in cell.steps:
        if s.kind == "elementwise":
            f = scalar_form(s.expr)
            if isinstance(f, (Sigmoid, Tanh)):
                out[s.name] = type(f)
    return out


def value_ranges(cell: Cell) -> dict[str, tuple[Any, Any]]:
    """Bounded values: gates in [0, 1], tanh outputs in [-1, 1], and h_{t-1} in [-1, 1] when |h_0| <= 1.

    The state range is proved, not assumed: sup |h_t| over the other ranges with |h_{t-1}| <= 1 must be <= 1.
    """
    ranges = {k: ((0, 1) if v is Sigmoid else (-1, 1)) for k, v in primitive_outputs(cell).items()}
    last = next(s for s in cell.steps if s.name == OUTPUT)
    if last.name in ranges:
        ranges[STATE] = ranges[last.name]
        return ranges
    trial = {**ranges, STATE: (-1, 1)}
    sup, unbounded = _sup_abs(scalar_form(last.expr), trial)
    if not unbounded and sup <= 1:
        ranges[STATE] = (-1, 1)
    return ranges


def _sup_abs(expr: sp.Expr, ranges: dict[str, tuple[Any, Any]]) -> tuple[sp.Expr, list[str]]:
    """sup |expr| over the box ``ranges``: a product over factors with disjoint variables, each exact.

    Factors in a variable without a range are returned by name (their sup is data dependent).
    """
    factors = sp.Mul.make_args(sp.factor(expr))
    groups: list[tuple[set[sp.Symbol], list[sp.Expr]]] = []
    for f in factors:
        syms = set(f.free_symbols)
        merged = [g for g in groups if g[0] & syms]
        for g in merged:
            groups.remove(g)
            syms |= g[0]
        groups.append((syms, [f, *(x for g in merged for x in g[1])]))
    coef, unbounded = sp.Integer(1), []
    for syms, fs in sorted(groups, key=lambda g: sorted(s.name for s in g[0])):
        g = sp.Mul(*fs)
        if not syms:
            coef *= abs(g)
        elif isinstance(g, (sp.sign, sp.Heaviside)):
            continue  # a kink's derivative (relu, hard_sigmoid): |.| <= 1 everywhere
        elif all(s.name in ranges for s in syms):
            coef *= _sup_box(g, sorted(syms, key=lambda s: s.name), ranges)
        elif len(syms) == 1 and g.is_polynomial() and sp.degree(g, next(iter(syms))) == 1:
            # c * v: data dependent, reported as max|v|
            (v,) = syms
            coef *= abs(g.coeff(v))
            unbounded.append(v.name)
        else:
            unbounded.append(latex.elementwise(g))
    return coef, unbounded


def _sup_box(g: sp.Expr, syms: list[sp.Symbol], ranges: dict[str, tuple[Any, Any]]) -> sp.Expr:
    """max |g| over a box, from the critical points of every face (each variable at an end or free)."""
    best = sp.Integer(0)
    for choice in itertools.product(("lo", "hi", "free"), repeat=len(syms)):
        fixed = {
            s: ranges[s.name][0 if c == "lo" else 1] for s, c in zip(syms, choice, strict=True) if c != "free"
        }
        free = [s for s, c in zip(syms, choice, strict=True) if c == "free"]
        face = g.subs(fixed)
        points = [{}] if not free else sp.solve([sp.diff(face, s) for s in free], free, dict=True)
        for p in points:
            if any(not (v.is_real and ranges[s.name][0] <= v <= ranges[s.name][1]) for s, v in p.items()):
                continue
            value = face.subs(p)
            if value.free_symbols:
                continue  # a degenerate face (constant along a free variable): its corners are visited anyway
            best = sp.Max(best, abs(value))
    return best
