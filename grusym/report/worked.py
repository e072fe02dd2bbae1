"""The worked example: one BPTT run on the toy of tutorials 000/001, every number computed by the build.

Contract: :func:`worked_data` runs the cell on the first batch of the tutorial's toy (text
``MathMathMathMathMath``, vocabulary {h, a, t, M}, batch 2, 3 steps, hidden size 2, output 4): every forward
value, the logits and the loss, every adjoint at every step (``adjoints.bptt_values``, checked against the
generated gradients), the 2x2 Jacobians J_t of both examples, and one gradient entry against a central
difference of the generated ``loss``. :func:`worked_section` renders them as tables and displays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..symbolic.cell import STATE, Cell, h
from .adjoints import bptt_values
from .blocks import Block, Break, Code, Equation, Heading, Math, Para, Table, Text
from .context import Context, Subject
from .escape import state_jacobian_of
from .sources import TOY, TUTORIALS
from .values import initial_state

__all__ = ["SCALE", "toy_batch", "worked_data", "worked_section"]

SCALE = 0.5  # init_params scale: large enough that gates and states move visibly away from 1/2 and 0
SEED = 0
FD_EPS = 1e-6


def toy_batch() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's first batch, time-major: X, Y (3, 2) ids; the text cut into 2 rows, 3 steps each.

    As in the tutorial's batching, the text is trimmed to whole batches of 2 x 3 characters and reshaped
    into 2 rows; targets are the inputs shifted by one character.
    """
    vocab, B, S = TOY["vocab"], TOY["batch"], TOY["steps"]
    ids = np.array([vocab.index(c) for c in TOY["text"]])
    per_row = len(ids) // (B * S) * S
    rows = ids[: B * per_row].reshape(B, per_row)
    nxt = np.roll(ids[: B * per_row], -1).reshape(B, per_row)  # the row's next characters
    return rows[:, :S].T.copy(), nxt[:, :S].T.copy()


def _entry(cell: Cell) -> tuple[str, tuple[int, ...]]:
    """The gradient entry checked in the text: the first recurrent weight's (0, 1) element; for a cell
    without one the first elementwise vector's element 1, else the first input weight's (0, 1)."""
    weights = [p.name for p in cell.params.values() if p.kind == "weight"]
    recurrent = [p.name for p in cell.params.values() if p.kind == "weight" and p.rows == h]
    vectors = [p.name for p in cell.params.values() if p.kind == "vector"]
    if recurrent:
        return recurrent[0], (0, 1)
    if vectors:
        return vectors[0], (1,)
    return weights[0], (0, 1)


def worked_data(sub: Subject) -> dict[str, Any]:
    """The worked example's numbers (JSON-ready; see the module docstring)."""
    m = sub.module
    X, Y = toy_batch()
    nb, hid, v = TOY["batch"], TOY["hidden"], len(TOY["vocab"])
    params = m.init_params(v, hid, v, seed=SEED, scale=SCALE)
    h0 = initial_state(sub.cell, nb, hid)
    run = bptt_values(sub, params, X, Y, h0)
    S = hid * len(sub.cell.states)  # the full state's size
    J = state_jacobian_of(sub.cell).evaluate(
        {k: a.reshape(-1, hid) for k, a in run["values"].items()}, params
    )
    key, idx = _entry(sub.cell)
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


def _num(x: float) -> str:
    return f"{x:.4f}".replace("-0.0000", "0.0000")


def _rows(a: Any) -> Text:
    """A 2-D array as its rows, one per line (math: real minus signs, and a row never breaks)."""
    arr = np.atleast_2d(np.asarray(a))
    out: list[Any] = []
    for i, row in enumerate(arr):
        out += ([Break()] if i else []) + [Math("[" + ", ".join(_num(x) for x in row) + "]")]
    return tuple(out)


def _pmatrix(a: Any) -> str:
    rows = [" & ".join(_num(x) for x in row) for row in np.asarray(a)]
    return r"\begin{pmatrix} " + r" \\ ".join(rows) + r" \end{pmatrix}"


def worked_section(c: Context, w: dict[str, Any]) -> list[Block]:
    """Section "worked example" of the report (the numbers of :func:`worked_data`)."""
    vocab = TOY["vocab"]
    X, Y = np.asarray(w["X"]), np.asarray(w["Y"])
    T = X.shape[0]
    chars = lambda a: ", ".join("".join(vocab[i] for i in col) for col in a.T)  # noqa: E731
    blocks: list[Block] = [
        Heading(2, "5. A worked example on the toy", "worked"),
        Para(
            (
                f"The toy of {TUTORIALS['000']}: the text {TOY['text']}, character ids ",
                Code("{" + ", ".join(f"'{ch}': {i}" for i, ch in enumerate(vocab)) + "}"),
                f", batch n = {TOY['batch']}, T = {TOY['steps']} steps, hidden size ",
                Math("d_{h} = 2"),
                f", output q = 4. Its first batch: the text cut into {TOY['batch']} rows, {TOY['steps']} "
                f"steps each; inputs (example 1, example 2) {chars(X)}, targets {chars(Y)}. Part 2 of the "
                "tutorial stops before backpropagation; here it is, every number computed by this build "
                f"from ",
                Code(f"init_params(4, 2, 4, seed={w['seed']}, scale={w['scale']})"),
                " and ",
                Math(" = ".join(f"{k}_{{0}}" for k in c.cell.states) + " = 0"),
                ". In the tables each line of a cell is one row of the array: for values and adjoints, "
                "example 1 first.",
            )
        ),
        Heading(3, "Parameters"),
        Table(
            ("parameter", "shape", "value"),
            tuple(
                ((Math(_param_tex(c, k)),), (_shape_text(np.asarray(p)),), _rows(p))
                for k, p in w["params"].items()
            ),
        ),
        Heading(3, "Forward"),
    ]
    header = ("equation", "value", *(f"t = {t + 1}" for t in range(T)))
    rows: list[tuple[Text, ...]] = []
    for s in c.cell.steps:
        vals = w["values"][s.name]
        rows.append(
            ((f"({c.num[s.name]})",), (Math(_value_tex(s.name)),), *(_rows(vals[t]) for t in range(T)))
        )
    rows.append(
        (
            (f"({c.num['logits']})",),
            (Math(r"\mathrm{logits}_{t}"),),
            *(_rows(w["logits"][t]) for t in range(T)),
        )
    )
    blocks.append(Table(header, tuple(rows)))
    blocks.append(
        Para(
            (
                f"Loss ({c.num['loss']}), the mean cross-entropy over the T n = {T * X.shape[1]} positions: ",
                Math(f"L = {w['loss']:.6f}"),
                " (uniform guessing gives log 4 = 1.386294).",
            )
        )
    )
    blocks.append(Heading(3, "Backward"))
    blocks.append(
        Para(
            (
                "Every adjoint, computed step by step from section 3's equations for t = 3, 2, 1; ",
                Math(r"\delta^{\mathrm{out}} h_{t}"),
                " is the part that comes from the output of step t, ",
                Math(r"\delta h_{t-1}"),
                " what step t sends back (at t = 1 it is the gradient of ",
                Math("h_{0}"),
                "):",
            )
        )
    )
    arows: list[tuple[Text, ...]] = []
    for key, series in w["adjoints"].items():
        value = key[1:]
        arows.append(((Math(_adjoint_tex(c, value)),), *(_rows(series[t]) for t in range(T))))
    blocks.append(Table(("adjoint", *(f"t = {t + 1}" for t in range(T))), tuple(arows)))
    blocks.append(
        Para(
            (
                "Parameter gradients, the sums over t of section 4 (they agree with the generated ",
                Code("loss_and_grads"),
                f" to {w['agreement']:.0e} relative):",
            )
        )
    )
    blocks.append(
        Table(
            ("gradient", "shape", "value"),
            tuple(
                ((Math(r"\delta " + _param_tex(c, k)),), (_shape_text(np.asarray(g)),), _rows(g))
                for k, g in w["grads"].items()
            ),
        )
    )
    blocks.append(Heading(3, "The Jacobians"))
    blocks.append(
        Para(
            (
                "The closed form (J) of section 4 at these values, for example 1 (superscript "
                "1) and example 2",
                *(
                    (
                        " (the full state: rows and columns of "
                        + ", then ".join(c.cell.states)
                        + ", the blocks of section 4 side by side)",
                    )
                    if len(c.cell.states) > 1
                    else ()
                ),
                ":",
            )
        )
    )
    for t in range(T):
        J = w["J"][t]
        one, two = (rf"J_{{{t + 1}}}^{{({k + 1})}}" for k in range(2))
        if len(c.cell.states) == 1:
            tex = rf"{one} = {_pmatrix(J[0])}, \qquad {two} = {_pmatrix(J[1])}"
        else:  # two full-state matrices side by side are wider than GitHub's column: one per line
            tex = rf"\begin{{aligned}} {one} &= {_pmatrix(J[0])} \\ {two} &= {_pmatrix(J[1])} \end{{aligned}}"
        blocks.append(Equation((tex,), f"W.{t + 1}"))
    chk = w["check"]
    where = ", ".join(str(k + 1) for k in chk["index"])
    blocks.append(
        Para(
            (
                "A check by hand: ",
                Math(rf"\partial L / \partial {_param_tex(c, chk['param'])}[{where}]"),
                f" is {chk['analytic']:.10f} by the backward pass above and "
                f"{chk['numeric']:.10f} by the central "
                "difference (L(w + e) - L(w - e)) / 2e of the generated loss with e = "
                f"{FD_EPS:g}: they agree to "
                f"{chk['relative']:.1e} relative (rows and columns counted from 1).",
            )
        )
    )
    return blocks


def _param_tex(c: Context, key: str) -> str:
    from . import latex

    return latex.name(key, params=c.params)


def _value_tex(value: str) -> str:
    from . import latex

    return latex.name(value)


def _adjoint_tex(c: Context, value: str) -> str:
    from . import latex

    if value == STATE:
        return r"\delta h_{t-1}"
    return latex.adjoint(value, params=c.params)


def _shape_text(a: np.ndarray) -> str:
    return "(" + ", ".join(map(str, a.shape)) + (",)" if a.ndim == 1 else ")")
