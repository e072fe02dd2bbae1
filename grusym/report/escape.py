"""The numbers behind section 4's claims: the expansion's error, the bounds, and the escape from vanishing.

Contract: everything here is measured on the generated module with fixed seeds, on the toy text, at the
sizes of :data:`~grusym.report.figures.GRADIENT_NORMS` (h = 16, T = 40, n = 4), and returned as JSON data:

* :func:`expansion_errors`: at weight scales s, the largest ``||J_t - J^(0)||_2`` and ``||J_t - J^(1)||_2``
  over the trajectory (J_t the closed form, checked against finite differences by ``verify``), the size of
  the first-order terms, and the order the errors fall with as s shrinks;
* :func:`escape_curves`: gradient norm against distance with the bias of the gate on the weight-free path
  of J set so that that path carries sigma(b) for b = 0, 1, 3, and after training; each curve with its
  measured per-step factor and the spectral norm and radius of the mean J_t along its trajectory;
* :func:`bound_values`: the uniform bound on ``||J_t||_2`` and the same bound over the value ranges
  measured along the trajectory, for given parameters.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import sympy as sp

from ..symbolic.cell import scalar_form
from .context import Subject
from .expansion import expand
from .jacobian import Jacobian, numeric
from .jacobian import jacobian as _jacobian
from .values import step_values

__all__ = [
    "bound_values",
    "escape_curves",
    "expansion",
    "expansion_errors",
    "jacobian",
    "keep_gate",
    "norm_curve",
    "train",
    "uniform_bound",
]

EXPANSION_SCALES = (0.001, 0.01, 0.1)
ESCAPE: dict[str, Any] = {
    "scale": 0.1,
    "biases": (0.0, 1.0, 3.0),
    "train_steps": 60,
    "lr": 1.0,
    "train_T": 16,
}


def _problem(cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from .figures import toy_tokens

    return toy_tokens(cfg["T"], cfg["n"])


def _rows(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(T, n, h) values as (T n, h) rows: one Jacobian per row."""
    return {k: v.reshape(-1, v.shape[-1]) for k, v in values.items()}


def _J(J: Jacobian, values: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> np.ndarray:
    return J.evaluate(_rows(values), params)


def norm_curve(sub: Subject, params: dict[str, np.ndarray], cfg: dict[str, Any]) -> list[float]:
    """||dL/dh_{T-k}|| for k = 0..T, L = <g, h_T> (g a fixed unit vector), by the generated backward.

    The adjoint of each earlier state is ``grads["h0"]`` of the backward run on the suffix of the sequence
    that starts from that state (the same trajectory), so no private part of the module is used.
    """
    m = sub.module
    T, n, h = cfg["T"], cfg["n"], params["W_hh"].shape[0] if "W_hh" in params else cfg["hidden"]
    X, _ = _problem(cfg)
    g = np.random.default_rng(cfg["seed"]).normal(size=(n, h))
    g /= np.linalg.norm(g)
    h0 = np.zeros((n, h))
    H, _ = m.forward(params, X, h0)
    states = [h0, *H]
    norms = [1.0]
    for k in range(1, T + 1):
        start = T - k
        _, cache = m.forward(params, X[start:], states[start])
        dH = np.zeros((k, n, h))
        dH[-1] = g
        norms.append(float(np.linalg.norm(m.backward(params, cache, dH)["h0"])))
    return norms


def per_step(norms: list[float]) -> float:
    T = len(norms) - 1
    return float((norms[T] / norms[0]) ** (1 / T)) if norms[T] > 0 else 0.0


def expansion_errors(sub: Subject, cfg: dict[str, Any]) -> dict[str, Any]:
    """The first-order expansion at initialisation against the exact J_t (see the module docstring)."""
    J = jacobian(sub.cell)
    ex = expansion(sub)
    # the first-order terms through a weight only, without those in diagonals (e.g. I/2 + W_hh^T/4)
    no_diag = Jacobian(J.cell, ex.zeroth.terms + tuple(t for t in ex.kept.terms if any(f.weight for f in t)))
    X, _ = _problem(cfg)
    rows = []
    for s in EXPANSION_SCALES:
        params = sub.module.init_params(4, cfg["hidden"], 4, seed=cfg["seed"], scale=s)
        values = step_values(sub.cell, params, X, np.zeros((cfg["n"], cfg["hidden"])), sub.module)
        exact, first, zeroth, weighted = (_J(j, values, params) for j in (J, ex.kept, ex.zeroth, no_diag))
        norm = lambda a: float(np.max(np.linalg.norm(a, 2, axis=(1, 2))))  # noqa: E731
        rows.append(
            {
                "scale": s,
                "first_order_terms": norm(first - zeroth),
                "error_zeroth": norm(exact - zeroth),
                "error_first": norm(exact - first),
                "error_without_diagonal": norm(exact - weighted),
            }
        )
    for a, b in itertools.pairwise(rows):
        b["observed_order"] = math.log(b["error_first"] / a["error_first"]) / math.log(
            b["scale"] / a["scale"]
        )
    return {"order": ex.order, "rows": rows}


def keep_gate(sub: Subject, J: Jacobian | None = None) -> tuple[str, str, int] | None:
    """(gate, its bias parameter, +1 or -1) for the gate on J's weight-free path, or None.

    The weight-free term is ``diag(g)`` or ``diag(1 - g)``: a bias b (sign +1) or -b (sign -1) makes the
    path carry sigma(b) at zero pre-activation.
    """
    J = J or jacobian(sub.cell)
    direct = [t for t in J.terms if not any(f.weight for f in t)]
    if len(direct) != 1 or len(direct[0]) != 1:
        return None
    coef = direct[0][0].expr
    if len(coef.free_symbols) != 1:
        return None
    (g,) = coef.free_symbols
    steps = {s.name: s for s in sub.cell.steps}
    gate = steps.get(g.name)
    if gate is None or gate.kind != "elementwise":
        return None
    (pre,) = scalar_form(gate.expr).free_symbols or (None,)
    linear = steps.get(getattr(pre, "name", ""))
    if linear is None or linear.bias is None:
        return None
    slope = sp.diff(coef, g)
    return g.name, linear.bias, 1 if slope > 0 else -1


def train(sub: Subject, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """Full-batch SGD on the toy text from init_params at scale 0.01 (the d2l default)."""
    from .figures import toy_tokens

    X, Y = toy_tokens(ESCAPE["train_T"], 2)
    params = sub.module.init_params(4, hidden, 4, seed=seed, scale=0.01)
    h0 = np.zeros((2, hidden))
    for _ in range(ESCAPE["train_steps"]):
        _, grads, _ = sub.module.loss_and_grads(params, X, Y, h0)
        params = {k: p - ESCAPE["lr"] * grads[k] for k, p in params.items()}
    return params


def _trajectory(sub: Subject, params: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    X, _ = _problem(cfg)
    return step_values(sub.cell, params, X, np.zeros((cfg["n"], params["W_hh"].shape[0])), sub.module)


def _spectral(sub: Subject, params: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> dict[str, float]:
    mean = _J(jacobian(sub.cell), values, params).mean(axis=0)
    return {
        "mean_J_norm": float(np.linalg.norm(mean, 2)),
        "mean_J_radius": float(np.max(np.abs(np.linalg.eigvals(mean)))),
    }


def escape_curves(sub: Subject, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Gradient norm curves at the escape biases and after training (see the module docstring)."""
    keep = keep_gate(sub)
    base = sub.module.init_params(4, cfg["hidden"], 4, seed=cfg["seed"], scale=ESCAPE["scale"])
    runs: list[tuple[str, float | None, dict[str, np.ndarray]]] = []
    if keep is None:
        runs.append((f"init, scale {ESCAPE['scale']}", None, base))
    else:
        _, bias, sign = keep
        for b in ESCAPE["biases"]:
            p = dict(base)
            p[bias] = np.full_like(base[bias], sign * b)
            runs.append((f"{bias} = {sign * b if b else 0.0:g}", b, p))
    runs.append(("after training", None, train(sub, cfg["hidden"], cfg["seed"])))
    out = []
    for label, b, params in runs:
        norms = norm_curve(sub, params, cfg)
        entry = {"label": label, "bias": b, "norms": norms, "per_step": per_step(norms)}
        values = _trajectory(sub, params, cfg)
        entry |= _spectral(sub, params, values)
        entry |= bound_values(sub, params, cfg, values)
        if b is not None:
            entry["sigmoid_b"] = 1 / (1 + math.exp(-b))
        out.append(entry)
    return out


def bound_values(
    sub: Subject,
    params: dict[str, np.ndarray],
    cfg: dict[str, Any],
    values: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """The uniform bound (J.1) at ``params``, and the same bound along the trajectory.

    Along the trajectory each diagonal factor's supremum over the ranges is replaced by its largest
    absolute value on the run's actual values: a bound on ``||J_t||_2`` for these states only.
    """
    J = jacobian(sub.cell)
    uniform = sum(t.value(params) for t in _uniform(sub))
    rows = _rows(values if values is not None else _trajectory(sub, params, cfg))
    measured = 0.0
    for term in J.terms:
        value = 1.0
        for f in term:
            if f.weight is not None:
                value *= float(np.linalg.norm(params[f.weight], 2))
                continue
            names, fn = numeric(f.expr)
            value *= float(np.max(np.abs(np.asarray(fn(*(rows[v] for v in names)), dtype=float))))
        measured += value
    return {"uniform_bound": float(uniform), "measured_range_bound": measured}


_CACHE: dict[tuple[str, str], Any] = {}


def _key(cell: Any) -> str:
    return cell.name + "|" + "|".join(str(s.expr) for s in cell.steps)


def jacobian(cell: Any) -> Jacobian:
    """The closed-form J of ``cell``, derived once per declaration (derive and SymPy are slow)."""
    key = ("J", _key(cell))
    if key not in _CACHE:
        _CACHE[key] = _jacobian(cell)
    return _CACHE[key]  # type: ignore[no-any-return]


def _uniform(sub: Subject) -> list[Any]:
    """The symbolic uniform bound of the cell, derived once per cell (SymPy's suprema are slow)."""
    key = ("bound", _key(sub.cell))
    if key not in _CACHE:
        _CACHE[key] = jacobian(sub.cell).uniform_bound()
    return _CACHE[key]  # type: ignore[no-any-return]


def expansion(sub: Subject) -> Any:
    """:func:`~grusym.report.expansion.expand` of the subject's J (cached)."""
    key = ("expansion", _key(sub.cell))
    if key not in _CACHE:
        _CACHE[key] = expand(jacobian(sub.cell))
    return _CACHE[key]


def uniform_bound(sub: Subject) -> list[Any]:
    """:meth:`Jacobian.uniform_bound` of the subject's cell (cached)."""
    return _uniform(sub)
