"""The numbers every report shows: seeded runs of the generated code, returned as plain JSON data.

Contract: :func:`figure_data` is deterministic (fixed seeds, the fixed sizes below) and returns the data
that ``figures.json`` holds and that the text and :mod:`grusym.report.render.plots` read (a test recomputes
it and compares numbers, not PNG bytes):

* ``gradient_norms``: the loss is ``<g, h_T>`` for a fixed unit ``g``; the norm of the adjoint of every
  earlier state at several weight scales, for the cell and the plain RNN (``escape.norm_curve``), with
  ``||W_hh||_2`` and the bound (J.1) at each scale;
* ``escape``, ``expansion``: see :mod:`grusym.report.numbers.escape`; the escape experiment's training run
  (full-batch SGD of the generated ``loss_and_grads`` on the toy text) is done once, here;
* ``activations``: every sigmoid/tanh step of that training run, at its start and after it;
* ``worked``: the worked example of :mod:`grusym.report.numbers.worked`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..analysis.jacobian import primitive_outputs, recurrent_weights
from ..context import Subject, subject
from .escape import ESCAPE, bound_values, escape_curves, expansion_errors, norm_curve, per_step, train
from .problem import TOY_VOCAB, report_params, toy_tokens
from .values import initial_state, step_values
from .worked import worked_data

__all__ = ["ACTIVATIONS", "GRADIENT_NORMS", "REFERENCE", "figure_data"]

GRADIENT_NORMS: dict[str, Any] = {"hidden": 16, "T": 40, "n": 4, "scales": (0.01, 0.1, 0.3, 1.0), "seed": 0}
ACTIVATIONS: dict[str, Any] = {"bins": 25}  # histograms of the training run of the escape experiment
REFERENCE = "rnn_tanh"


def _scales(sub: Subject) -> dict[str, Any]:
    cfg = GRADIENT_NORMS
    out: dict[str, Any] = {"norms": {}, "W_hh_spectral_norm": {}, "per_step": {}, "bounds": {}}
    recurrent = recurrent_weights(sub.cell)
    out["recurrent_weights"] = list(recurrent)
    out["states"] = list(sub.cell.states)  # the norms are of all of them side by side
    for s in cfg["scales"]:
        v = len(TOY_VOCAB)
        params = report_params(sub, v, cfg["hidden"], v, seed=cfg["seed"], scale=s)
        norms = norm_curve(sub, params, cfg)
        out["norms"][str(s)] = norms
        # None for a cell whose recurrence is elementwise only (minGRU, IndRNN)
        stacked = np.concatenate([params[w] for w in recurrent], axis=1) if recurrent else None
        out["W_hh_spectral_norm"][str(s)] = None if stacked is None else float(np.linalg.norm(stacked, 2))
        out["per_step"][str(s)] = per_step(norms)
        out["bounds"][str(s)] = bound_values(sub, params, cfg)
    return out


@lru_cache(maxsize=4)
def _reference() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The plain RNN's curves, drawn next to every variant's (computed once per process)."""
    ref = subject(REFERENCE)
    return _scales(ref), escape_curves(ref, GRADIENT_NORMS)


def _activations(sub: Subject, run: dict[str, Any]) -> dict[str, Any]:
    """Every sigmoid and tanh step of the training run, at its start and after it."""
    X, _ = toy_tokens(ESCAPE["train_T"], ESCAPE["train_n"])
    h = GRADIENT_NORMS["hidden"]
    h0 = initial_state(sub.cell, ESCAPE["train_n"], h)
    phases = {
        phase: step_values(sub.cell, run[key], X, h0, sub.module)
        for phase, key in (("init", "start"), ("trained", "trained"))
    }
    steps: dict[str, Any] = {}
    for step, kind in primitive_outputs(sub.cell).items():
        lo = 0.0 if kind.__name__ == "Sigmoid" else -1.0
        edges = np.linspace(lo, 1.0, ACTIVATIONS["bins"] + 1)
        entry: dict[str, Any] = {"kind": kind.__name__.lower(), "edges": edges.tolist()}
        for phase, vals in phases.items():
            a = vals[step].reshape(-1)
            near = np.minimum(np.abs(a - lo), np.abs(1.0 - a))  # distance to the nearest end of the range
            entry[phase] = {
                "counts": np.histogram(a, edges)[0].tolist(),
                "mean": float(a.mean()),
                "std": float(a.std()),
                "saturated": float(np.mean(near < 0.05 * (1.0 - lo))),
            }
        steps[step] = entry
    return {"loss": dict(zip(("init", "trained"), run["loss"], strict=True)), "steps": steps}


def figure_data(which: str | Subject) -> dict[str, Any]:
    """The numbers of the report on ``which`` (a variant name or a Subject); JSON-ready, deterministic."""
    sub = subject(which) if isinstance(which, str) else which
    run = train(sub, GRADIENT_NORMS["hidden"], GRADIENT_NORMS["seed"])
    scales = {sub.name: _scales(sub)}
    curves = {sub.name: escape_curves(sub, GRADIENT_NORMS, run)}
    if sub.name != REFERENCE:
        ref_scales, ref_curves = _reference()
        scales[REFERENCE], curves[REFERENCE] = ref_scales, ref_curves
    config = {k: list(c) if isinstance(c, tuple) else c for k, c in GRADIENT_NORMS.items()}
    return {
        "variant": sub.name,
        "gradient_norms": {
            "config": config,
            "norms": {v: s["norms"] for v, s in scales.items()},
            "W_hh_spectral_norm": {v: s["W_hh_spectral_norm"] for v, s in scales.items()},
            "recurrent_weights": {v: s["recurrent_weights"] for v, s in scales.items()},
            "states": {v: s["states"] for v, s in scales.items()},
            "per_step": {v: s["per_step"] for v, s in scales.items()},
            "bounds": {v: s["bounds"] for v, s in scales.items()},
        },
        "escape": {
            "config": {k: list(c) if isinstance(c, tuple) else c for k, c in ESCAPE.items()},
            "curves": curves,
        },
        "expansion": expansion_errors(sub, GRADIENT_NORMS),
        "activations": {"config": dict(ACTIVATIONS), **_activations(sub, run)},
        "worked": worked_data(sub),
    }
