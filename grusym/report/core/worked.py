"""Section 6 of a report: the worked example on the toy, rendered from ``numbers.worked``'s data.

Contract: :func:`worked_section` renders every forward value, the loss, every adjoint at every step, the
Jacobians and the one gradient entry checked against a central difference, as tables and displays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...symbolic.cell import OUTPUT, prev_name
from ..context import Context
from ..numbers.worked import FD_EPS
from ..render import latex
from ..render.blocks import Block, Break, Code, Equation, Heading, Math, Para, Table, Text
from ..sources import TOY, TUTORIALS

__all__ = ["worked_section"]


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
        Heading(2, "6. A worked example on the toy", "worked"),
        Para(
            (
                f"The toy of {TUTORIALS['000']}: the text {TOY['text']}, character ids ",
                Code("{" + ", ".join(f"'{ch}': {i}" for i, ch in enumerate(vocab)) + "}"),
                f", batch n = {TOY['batch']}, T = {TOY['steps']} steps, hidden size ",
                Math(f"d_{{h}} = {w.get('hidden', 2)}"),
                f", output q = 4. Its first batch: the text cut into {TOY['batch']} rows, {TOY['steps']} "
                f"steps each; inputs (example 1, example 2) {chars(X)}, targets {chars(Y)}: step t reads "
                "character t of each row. Part 2 of the "
                "tutorial stops before backpropagation; here it is, every number computed by this build "
                f"from ",
                Code(f"init_params(4, {w.get('hidden', 2)}, 4, seed={w['seed']}, scale={w['scale']})"),
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
    columns = tuple(f"t = {t + 1}" for t in range(T))
    rows: list[tuple[Text, ...]] = []
    for s in c.cell.steps:
        vals = w["values"][s.name]
        rows.append(
            ((f"({c.num[s.name]})",), (Math(latex.name(s.name)),), *(_rows(vals[t]) for t in range(T)))
        )
    blocks.append(Table(("equation", "value", *columns), tuple(rows)))
    n = X.shape[1]
    blocks.append(
        Para(
            (
                f"The head ({c.num['logits']}) and the gradient of the loss ({c.num['loss']}.1), one row of "
                f"q = {np.asarray(w['logits']).shape[-1]} numbers per example:",
            )
        )
    )
    dlogits = w["adjoints"]["dlogits"]
    blocks.append(
        Table(
            ("t", (Math(r"\mathrm{logits}_{t}"),), (Math(r"\delta \mathrm{logits}_{t}"),)),
            tuple(((str(t + 1),), _rows(w["logits"][t]), _rows(dlogits[t])) for t in range(T)),
        )
    )
    blocks.append(
        Para(
            (
                f"Loss ({c.num['loss']}), the mean cross-entropy over the T n = {T * n} positions: ",
                Math(f"L = {w['loss']:.6f}"),
                " (uniform guessing gives log 4 = 1.386294).",
            )
        )
    )
    blocks.append(Heading(3, "Backward"))
    blocks.append(
        Para(
            (
                "Every adjoint, computed step by step from section 3's equations for t = 3, 2, 1. In the "
                "column of step t, ",
                Math(latex.message(OUTPUT)),
                " is what step t+1 sent back (0 at t = 3), so by (B.1) each ",
                Math(r"\delta h_{t}"),
                " is the sum of the two rows above it",
                *(
                    x
                    for k in c.cell.states
                    if k != OUTPUT
                    for x in (
                        ", and each ",
                        Math(r"\delta " + latex.name(k)),
                        f" adds what reaches it inside step t, (B.1.{k}), to the row above it",
                    )
                ),
                ":",
            )
        )
    )
    adj = {k: np.asarray(v) for k, v in w["adjoints"].items()}
    zero = np.zeros_like(adj["dH"][0])

    def message(state: str) -> list[Any]:
        sent = adj.get(f"d{prev_name(state)}")
        return [sent[t + 1] if sent is not None and t + 1 < T else zero for t in range(T)]

    arows: list[tuple[Text, ...]] = [
        ((Math(r"\delta^{\mathrm{out}} h_{t}"),), *(_rows(adj["dH"][t]) for t in range(T)))
    ]
    shown = {"dH", "dlogits"} | {f"d{prev_name(k)}" for k in c.cell.states}
    for k in c.cell.states:
        arows.append(((Math(latex.message(k)),), *(_rows(x) for x in message(k))))
        arows.append(((Math(r"\delta " + latex.name(k)),), *(_rows(adj[f"d{k}"][t]) for t in range(T))))
        shown.add(f"d{k}")
    for key, series in adj.items():
        if key not in shown:
            arows.append(
                ((Math(latex.adjoint(key[1:], params=c.params)),), *(_rows(series[t]) for t in range(T)))
            )
    blocks.append(Table(("adjoint", *columns), tuple(arows)))
    initial: list[Any] = ["The gradients of the initial states, (B.3), what step 1 sends back: "]
    for i, k in enumerate(c.cell.states):
        sent = adj.get(f"d{prev_name(k)}")
        value = sent[0] if sent is not None else zero
        per_example = ["[" + ", ".join(_num(x) for x in row) + "]" for row in value]
        # one formula per example's row: a line may break between them (one formula cannot)
        initial += ([", "] if i else []) + [Math(rf"\delta {k}_{{0}} = {per_example[0]}")]
        initial += [part for text in per_example[1:] for part in (", ", Math(text))]
    blocks.append(Para((*initial, " (example 1, then 2).")))
    blocks.append(
        Para(
            (
                "Parameter gradients, the sums (B.4) (they agree with the generated ",
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
                "The closed form of J (Appendix A) at these values, for example 1 (superscript 1) and "
                "example 2",
                *(
                    (
                        " (the full state: rows and columns of "
                        + ", then ".join(c.cell.states)
                        + ", the blocks of Appendix A side by side)",
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
    return latex.name(key, params=c.params)


def _shape_text(a: np.ndarray) -> str:
    return "(" + ", ".join(map(str, a.shape)) + (",)" if a.ndim == 1 else ")")
