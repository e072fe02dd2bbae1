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

from ..analysis.compile import numeric
from ..analysis.derived import expansion, keep_gate, state_jacobian_of, uniform_terms
from ..analysis.expansion import NotExpandableError
from ..analysis.jacobian import Jacobian, StateJacobian, weight_matrix
from ..context import Subject
from .problem import report_params, toy_tokens
from .values import initial_state, state_grads, step_values

__all__ = ["ESCAPE", "bound_values", "escape_curves", "expansion_errors", "norm_curve", "per_step", "train"]

EXPANSION_SCALES = (0.001, 0.01, 0.1)
ESCAPE: dict[str, Any] = {
    "scale": 0.1,
    "biases": (0.0, 1.0, 3.0),
    "train_steps": 60,
    "lr": 1.0,
    "train_T": 16,
    "train_n": 2,
}


def _problem(cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return toy_tokens(cfg["T"], cfg["n"])


def _rows(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(T, n, h) values as (T n, h) rows: one Jacobian per row."""
    return {k: v.reshape(-1, v.shape[-1]) for k, v in values.items()}


def _J(
    J: Jacobian | StateJacobian, values: dict[str, np.ndarray], params: dict[str, np.ndarray]
) -> np.ndarray:
    return J.evaluate(_rows(values), params)


def _hidden(params: dict[str, np.ndarray]) -> int:
    return int(params["W_hq"].shape[0])


def norm_curve(sub: Subject, params: dict[str, np.ndarray], cfg: dict[str, Any]) -> list[float]:
    """||dL/ds_{T-k}|| for k = 0..T, L = <g, h_T> (g a fixed unit vector), by the generated backward.

    s is the full state (h, or h and c side by side for several states). The adjoint of each earlier state
    is ``grads["h0"]`` (and ``"c0"``, ...) of the backward run on the suffix of the sequence that starts
    from that state (the same trajectory), so no private part of the module is used.
    """
    m = sub.module
    T, n, h = cfg["T"], cfg["n"], _hidden(params)
    X, _ = _problem(cfg)
    g = np.random.default_rng(cfg["seed"]).normal(size=(n, h))
    g /= np.linalg.norm(g)
    s0 = initial_state(sub.cell, n, h)
    H, _ = m.forward(params, X, s0)
    several = len(sub.cell.states) > 1
    norms = [1.0]
    for k in range(1, T + 1):
        start = T - k
        if start == 0:
            state = s0
        elif several:  # the other states are not in H: run the prefix and read its last states
            state = m.final_states(m.forward(params, X[:start], s0)[1])
        else:
            state = H[start - 1]
        _, cache = m.forward(params, X[start:], state)
        dH = np.zeros((k, n, h))
        dH[-1] = g
        norms.append(float(np.linalg.norm(state_grads(sub.cell, m.backward(params, cache, dH)))))
    return norms


def per_step(norms: list[float]) -> float:
    T = len(norms) - 1
    return float((norms[T] / norms[0]) ** (1 / T)) if norms[T] > 0 else 0.0


def expansion_errors(sub: Subject, cfg: dict[str, Any]) -> dict[str, Any]:
    """The first-order expansion at initialisation against the exact J_t (see the module docstring)."""
    J = state_jacobian_of(sub.cell)
    try:
        ex = expansion(sub.cell)
    except NotExpandableError as err:
        return {"scales": list(EXPANSION_SCALES), "rows": [], "not_expandable": str(err)}

    def full(part: Any) -> StateJacobian:
        return StateJacobian(sub.cell, {k: part(e, J.blocks[k]) for k, e in ex.items()})

    # the first-order terms through a weight only, without those in diagonals (e.g. I/2 + W_hh^T/4)
    no_diag = full(
        lambda e, b: Jacobian(
            b.cell,
            e.zeroth.terms + tuple(t for t in e.kept.terms if any(f.weight for f in t)),
            b.target,
            b.source,
        )
    )
    kept, zeroth = full(lambda e, b: e.kept), full(lambda e, b: e.zeroth)
    X, _ = _problem(cfg)
    rows = []
    for s in EXPANSION_SCALES:
        params = report_params(sub, 4, cfg["hidden"], 4, seed=cfg["seed"], scale=s)
        values = step_values(
            sub.cell, params, X, initial_state(sub.cell, cfg["n"], cfg["hidden"]), sub.module
        )
        exact, first, zero, weighted = (_J(j, values, params) for j in (J, kept, zeroth, no_diag))
        norm = lambda a: float(np.max(np.linalg.norm(a, 2, axis=(1, 2))))  # noqa: E731
        rows.append(
            {
                "scale": s,
                "first_order_terms": norm(first - zero),
                "error_zeroth": norm(exact - zero),
                "error_first": norm(exact - first),
                "error_without_diagonal": norm(exact - weighted),
            }
        )
    for a, b in itertools.pairwise(rows):
        if a["error_first"] > 0 and b["error_first"] > 0:  # an exact expansion has no order to measure
            b["observed_order"] = math.log(b["error_first"] / a["error_first"]) / math.log(
                b["scale"] / a["scale"]
            )
    return {"order": min(e.order for e in ex.values()), "rows": rows}


def train(sub: Subject, hidden: int, seed: int) -> dict[str, Any]:
    """Full-batch SGD on the toy text from the initialisation of the escape experiment's first run (scale
    ``ESCAPE["scale"]``, zero biases): ``{"start", "trained": params, "loss": [before, after]}``."""
    X, Y = toy_tokens(ESCAPE["train_T"], ESCAPE["train_n"])
    start = report_params(sub, 4, hidden, 4, seed=seed, scale=ESCAPE["scale"])
    h0 = initial_state(sub.cell, ESCAPE["train_n"], hidden)
    params = dict(start)
    for _ in range(ESCAPE["train_steps"]):
        _, grads, _ = sub.module.loss_and_grads(params, X, Y, h0)
        params = {k: p - ESCAPE["lr"] * grads[k] for k, p in params.items()}
    losses = [float(sub.module.loss(p, X, Y, h0)) for p in (start, params)]
    return {"start": start, "trained": params, "loss": losses}


def _trajectory(sub: Subject, params: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    X, _ = _problem(cfg)
    return step_values(sub.cell, params, X, initial_state(sub.cell, cfg["n"], _hidden(params)), sub.module)


def _spectral(sub: Subject, params: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> dict[str, float]:
    mean = _J(state_jacobian_of(sub.cell), values, params).mean(axis=0)
    return {
        "mean_J_norm": float(np.linalg.norm(mean, 2)),
        "mean_J_radius": float(np.max(np.abs(np.linalg.eigvals(mean)))),
    }


def escape_curves(
    sub: Subject, cfg: dict[str, Any], run: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Gradient norm curves at the escape biases and after training (see the module docstring); ``run``:
    the training run of :func:`train` (done here when not given)."""
    keep = keep_gate(sub.cell)
    run = run or train(sub, cfg["hidden"], cfg["seed"])
    base = run["start"]
    runs: list[tuple[str, float | None, dict[str, np.ndarray]]] = []
    if keep is None:
        runs.append((f"init, scale {ESCAPE['scale']}", None, base))
    else:
        _, bias, sign = keep
        for b in ESCAPE["biases"]:
            p = dict(base)
            for other in _gate_biases(sub, bias):
                p[other] = np.zeros_like(base[other])
            p[bias] = np.full_like(base[bias], sign * b)
            runs.append((f"{bias} = {sign * b if b else 0.0:g}", b, p))
    runs.append(("after training", None, run["trained"]))
    out = []
    for label, b, params in runs:
        norms = norm_curve(sub, params, cfg)
        entry = {"label": label, "bias": b, "norms": norms, "per_step": per_step(norms)}
        values = _trajectory(sub, params, cfg)
        entry |= _spectral(sub, params, values)
        entry |= bound_values(sub, params, cfg, values)
        if b is not None:
            entry["sigmoid_b"] = 1 / (1 + math.exp(-b))
        if label == "after training":
            entry["loss"] = run["loss"]
        out.append(entry)
    return out


def _vector_names(sub: Subject) -> list[str]:
    return [k for k, p in sub.cell.params.items() if p.kind == "vector"]


def _gate_biases(sub: Subject, bias: str) -> tuple[str, ...]:
    """Every bias row of the linear step whose first bias is ``bias``."""
    for step in sub.cell.steps:
        if step.bias == bias:
            return step.biases
    return (bias,)


def bound_values(
    sub: Subject,
    params: dict[str, np.ndarray],
    cfg: dict[str, Any],
    values: dict[str, np.ndarray] | None = None,
) -> dict[str, float | None]:
    """The uniform bound (J.1) at ``params``, and the same bound along the trajectory.

    Along the trajectory each diagonal factor's supremum over the ranges is replaced by its largest
    absolute value on the run's actual values: a bound on ``||J_t||_2`` for these states only.
    """
    terms = uniform_terms(sub.cell)
    uniform = float("nan") if terms is None else sum(t.value(params) for t in terms)
    rows = _rows(values if values is not None else _trajectory(sub, params, cfg))
    n_rows = next(iter(rows.values())).shape[0]
    rows |= {k: np.broadcast_to(params[k], (n_rows, params[k].shape[-1])) for k in _vector_names(sub)}
    measured = 0.0
    for term in (t for J in state_jacobian_of(sub.cell).blocks.values() for t in J.terms):
        value = 1.0
        for f in term:
            if f.weight is not None:
                value *= float(np.linalg.norm(weight_matrix(f.weight, params), 2))
                continue
            names, fn = numeric(f.expr)
            value *= float(np.max(np.abs(np.asarray(fn(*(rows[v] for v in names)), dtype=float))))
        measured += value
    # None (JSON null, not NaN) when the bound is data dependent or was not derived in time
    return {
        "uniform_bound": None if math.isnan(uniform) else float(uniform),
        "measured_range_bound": measured,
    }
