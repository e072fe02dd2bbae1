"""The worked example's numbers: one BPTT run on the toy of tutorials 000/001, computed by the build.

Contract: :func:`worked_data` runs the cell on the first batch of the tutorial's toy (text
``MathMathMathMathMath``, vocabulary {h, a, t, M}, batch 2, 3 steps, hidden size 2, output 4): every forward
value, the logits and the loss, every adjoint at every step (``adjoints.bptt_values``, checked against the
generated gradients), the Jacobians J_t of both examples, and one gradient entry against a central
difference of the generated ``loss``. ``core.worked`` renders them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...symbolic.cell import Cell, h
from ..analysis.derived import state_jacobian_of
from ..context import Subject
from ..sources import TOY
from .adjoints import bptt_values
from .problem import report_params, toy_batch
from .values import initial_state

__all__ = ["FD_EPS", "SCALE", "SEED", "worked_data"]

SCALE = 0.5  # init_params scale: large enough that gates and states move visibly away from 1/2 and 0
SEED = 0
FD_EPS = 1e-6


def _entry(cell: Cell, grads: dict[str, np.ndarray]) -> tuple[str, tuple[int, ...]]:
    """The gradient entry checked in the text: the first recurrent weight's (0, 1) element; for a cell
    without one the first elementwise vector's element 1, else the first input weight's (0, 1). An entry
    the loss does not depend on here (a relu at rest) would check nothing: then the largest entry of the
    first of those parameters whose gradient is not zero."""
    weights = [p.name for p in cell.params.values() if p.kind == "weight"]
    recurrent = [p.name for p in cell.params.values() if p.kind == "weight" and p.rows == h]
    vectors = [p.name for p in cell.params.values() if p.kind == "vector"]
    order = [(k, (0, 1)) for k in recurrent] + [(k, (1,)) for k in vectors] + [(k, (0, 1)) for k in weights]
    key, idx = order[0]
    if abs(grads[key][idx]) >= 1e-12:
        return key, idx
    for key, _ in order:
        if np.max(np.abs(grads[key])) >= 1e-12:
            return key, tuple(
                int(i) for i in np.unravel_index(np.argmax(np.abs(grads[key])), grads[key].shape)
            )
    return order[0]


def worked_data(sub: Subject) -> dict[str, Any]:
    """The worked example's numbers (JSON-ready; see the module docstring)."""
    m = sub.module
    X, Y = toy_batch()
    nb, hid, v = TOY["batch"], TOY["hidden"], len(TOY["vocab"])
    if getattr(m, "INPUT_ELEMENTWISE", False):
        hid = v  # X read elementwise: the hidden size is the one-hot rows' width (d == h)
    params = report_params(sub, v, hid, v, seed=SEED, scale=SCALE)
    h0 = initial_state(sub.cell, nb, hid)
    run = bptt_values(sub, params, X, Y, h0)
    S = hid * len(sub.cell.states)  # the full state's size
    J = state_jacobian_of(sub.cell).evaluate(
        {k: a.reshape(-1, hid) for k, a in run["values"].items()}, params
    )
    key, idx = _entry(sub.cell, run["grads"])
    plus, minus = dict(params), dict(params)
    plus[key], minus[key] = params[key].copy(), params[key].copy()
    plus[key][idx] += FD_EPS
    minus[key][idx] -= FD_EPS
    numeric = (m.loss(plus, X, Y, h0) - m.loss(minus, X, Y, h0)) / (2 * FD_EPS)
    analytic = float(run["grads"][key][idx])
    return {
        "X": X.tolist(),
        "Y": Y.tolist(),
        "scale": SCALE,
        "seed": SEED,
        **({"hidden": hid} if hid != TOY["hidden"] else {}),  # the built-ins' data stays as it was
        "params": {k: p.tolist() for k, p in params.items()},
        "values": {k: a.tolist() for k, a in run["values"].items()},
        "logits": run["logits"].tolist(),
        "loss": run["loss"],
        "adjoints": {k: a.tolist() for k, a in run["adjoints"].items()},
        "grads": {k: g.tolist() for k, g in run["grads"].items()},
        "J": J.reshape(X.shape[0], nb, S, S).tolist(),
        "check": {
            "param": key,
            "index": list(idx),
            "analytic": analytic,
            "numeric": float(numeric),
            "relative": float(abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-300)),
        },
        "agreement": run["agreement"],
    }
