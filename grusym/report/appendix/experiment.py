"""Appendix B of a report: the vanishing gradient measured, the escape from it, and the activations.

Contract: reads ``figures.json`` data only (``gradient_norms``, ``escape``, ``activations``) and says in
words only what those numbers show: the factor per step against sigma(b) as numbers, how far the training
run trained (its loss before and after, from the same initialisation as the run it is compared with). A
figure that was not drawn is named, never linked (:func:`figure`).
"""

from __future__ import annotations

from typing import Any

from ..analysis.derived import keep_gate
from ..analysis.jacobian import factor_vectors
from ..context import Context
from ..render import latex
from ..render.blocks import Block, Code, Figure, Heading, Math, Para, Table, Text
from ..render.plots import INSTALL_HINT
from .jtex import LABELS

__all__ = ["experiment_appendix", "figure", "norm_text", "weights_tex"]

_m = Math
BARELY = 0.9  # a training run whose loss ends above this fraction of its start "barely trained"


def _sig(x: float) -> str:
    return f"{x:.3g}"


def norm_text(x: float | None) -> str:
    """A measured norm, or '-' where the cell has no such matrix (or the bound is data dependent: nan)."""
    return "-" if x is None or x != x else _sig(x)


def weights_tex(names: list[str]) -> str:
    """The norm of the recurrent weights in TeX: one matrix, or several side by side in brackets."""
    if not names:
        return r"\lVert W_{hh} \rVert_{2}"
    inner = ", ".join(latex.name(w, params=set(names)) for w in names)
    return rf"\lVert {inner if len(names) == 1 else '[' + inner + ']'} \rVert_{{2}}"


def figure(path: str, caption: Text, missing: frozenset[str]) -> Block:
    """The figure, or a note saying it was not drawn and how to draw it."""
    if path in missing:
        return Para(
            (
                f"Figure {path} was not drawn in this build: matplotlib is not installed (",
                Code(INSTALL_HINT),
                " installs it; then rerun ",
                Code("grusym report"),
                "). Its numbers are in the table and in figures.json.",
            )
        )
    return Figure(path, caption)


def experiment_appendix(c: Context, data: dict[str, Any], missing: frozenset[str]) -> list[Block]:
    gn = data["gradient_norms"]
    cfg = gn["config"]
    T = cfg["T"]
    names = list(gn["norms"])
    show = sorted({1, 5, 10, 20, T})
    rows: list[tuple[Text, ...]] = []
    for v in names:
        for scale, norms in gn["norms"][v].items():
            rate = (norms[T] / norms[0]) ** (1 / T) if norms[T] > 0 else 0.0
            w = gn["W_hh_spectral_norm"][v][scale]
            rows.append(
                (
                    (Code(v),),
                    (scale,),
                    (norm_text(w),),
                    *((_sig(norms[k]),) for k in show),
                    (_sig(rate),),
                )
            )
    scaled = list(factor_vectors(c.cell))
    blocks: list[Block] = [
        Heading(2, "Appendix B. The vanishing gradient, measured", "experiment"),
        Para(
            (
                "The loss here is ",
                _m(r"\ell_{T} = \langle g, h_{T} \rangle"),
                " for a fixed unit vector g, the loss of the last step alone, so the norms are those of ",
                _m(r"\partial \ell_{T} / \partial s_{T-k}"),
                f" that ({LABELS['condition']}) bounds (s the full state",
                (", the states side by side" if len(c.cell.states) > 1 else ", here h"),
                "). The adjoint of each earlier state is the ",
                Code(", ".join(f'grads["{k}0"]' for k in c.cell.states)),
                " of the generated backward run on the suffix of the sequence that starts from that state. "
                f"Toy text ‘Math…’, T = {T}, n = {cfg['n']}, d_h = {cfg['hidden']}; weights from ",
                Code("init_params"),
                f" (seed {cfg['seed']}), drawn from ",
                _m(r"N(0, s^{2})"),
                " at the weight scales s below, zero biases",
                *(
                    (
                        "; the parameter vectors that scale another value (",
                        *_join([Code(k) for k in scaled]),
                        ") set to 1, where ",
                        Code("init_params"),
                        " draws them 0 and would cut the paths they scale",
                    )
                    if scaled
                    else ()
                ),
                ". The cell is drawn next to the plain RNN, ",
                Code("rnn_tanh"),
                ". The per-step factor is ",
                _m(r"(\lVert \delta s_{0} \rVert / \lVert \delta s_{T} \rVert)^{1/T}"),
                ", the geometric mean of the decay per step.",
            )
        ),
        figure(
            "gradient_norms.png",
            (f"Gradient norm against distance to the loss: {' vs '.join(names)}.",),
            missing,
        ),
        Table(
            (
                "cell",
                ("weight scale ", _m("s")),
                "spectral norm",
                *(f"k = {k}" for k in show),
                "per-step factor",
            ),
            tuple(rows),
        ),
        Para(
            (
                "Spectral norm: ",
                *_join(
                    [
                        (Code(v), " ", _m(weights_tex(gn.get("recurrent_weights", {}).get(v, ["W_hh"]))))
                        for v in names
                        if gn.get("recurrent_weights", {}).get(v, ["W_hh"])
                    ],
                    flat=True,
                ),
                ". ",
                f"At the smallest scale compare the factor with the expansion ({LABELS['expansion']}), and "
                f"at every scale with the condition ({LABELS['condition']}), both in Appendix A.",
            )
        ),
    ]
    blocks += _escape(c, data, missing)
    blocks += _activations(data, missing)
    return blocks


def _join(spans: list[Any], flat: bool = False) -> list[Any]:
    """Spans separated by commas (``flat``: each item is a tuple of spans)."""
    out: list[Any] = []
    for i, s in enumerate(spans):
        out += ([", "] if i else []) + (list(s) if flat else [s])
    return out


def _escape(c: Context, data: dict[str, Any], missing: frozenset[str]) -> list[Block]:
    curves = data["escape"]["curves"]
    cfg = data["escape"]["config"]
    rows: list[tuple[Text, ...]] = []
    for v, entries in curves.items():
        for e in entries:
            rows.append(
                (
                    (Code(v),),
                    (e["label"],),
                    (_sig(e["sigmoid_b"]) if "sigmoid_b" in e else "-",),
                    (_sig(e["per_step"]),),
                    (_sig(e["mean_J_radius"]),),
                    (_sig(e["mean_J_norm"]),),
                    (_sig(e["measured_range_bound"]),),
                )
            )
    keep = keep_gate(c.cell)
    mine = curves[c.name]
    trained = next(e for e in mine if e["label"] == "after training")
    start = mine[0]  # the training run starts from the first run's parameters
    what: list[Any]
    direct = [t for (a, b), J in c.blocks.items() if a == b for t in J.terms if not any(f.weight for f in t)]
    if keep is None and direct:
        what = [
            "The weight-free path of this cell is not a single gate with a bias of its own, so there is no "
            "bias to set: the figure shows the initialisation and the trained run only."
        ]
    elif keep is None:
        what = [
            "This cell has no weight-free path, so no gate can hold the gradient: its per-step factor is set "
            "by the weights, as for the plain RNN."
        ]
    else:
        gate, bias, sign = keep
        set_runs = [e for e in mine if e.get("bias") is not None]
        gaps = [e["per_step"] - e["sigmoid_b"] for e in set_runs]
        where = (
            f"above each by at most {max(gaps):.2g}, the paths through the weights adding to it"
            if min(gaps) > 0
            else f"within {max(abs(g) for g in gaps):.2g} of it"
        )
        what = [
            "The weight-free path of J carries ",
            _m(latex.name(gate) if sign > 0 else f"1 - {latex.name(gate)}"),
            " (Appendix A); setting ",
            Code(bias),
            f" = {'' if sign > 0 else '-'}b makes it carry about ",
            _m(r"\sigma(b)"),
            " at initialisation, and the measured per-step factor follows: ",
            ", ".join(_sig(e["per_step"]) for e in set_runs),
            " for ",
            _m(r"\sigma(b)"),
            " = " + ", ".join(_sig(e["sigmoid_b"]) for e in set_runs) + f", {where}. With b = "
            f"{set_runs[-1]['bias']:g} the gradient decays like ",
            _m(f"{_sig(set_runs[-1]['per_step'])}^{{k}}"),
            " instead of ",
            _m(f"{_sig(set_runs[0]['per_step'])}^{{k}}"),
            ": the escape from vanishing that the weight-free path allows.",
        ]
    before, after = trained["loss"]
    how = (
        f"takes the loss from {before:.4f} to {after:.4f}"
        if after < BARELY * before
        else f"barely trained: its loss went from {before:.4f} to {after:.4f} only, so its row says little"
    )
    what += [
        f" The training run ({cfg['train_steps']} full-batch SGD steps, learning rate {cfg['lr']:g}, on the "
        f"toy text with T = {cfg['train_T']}, n = {cfg['train_n']}, from the parameters of the run ‘"
        f"{start['label']}’) {how}; after it the factor is {_sig(trained['per_step'])}, against "
        f"{_sig(start['per_step'])} at its start."
    ]
    return [
        Heading(3, "The escape from vanishing"),
        Para(tuple(what)),
        Para(
            (
                f"Gradient norms at weight scale s = {cfg['scale']} (d_h = 16, T = 40). Dotted lines: ",
                _m(r"\rho(\bar{J})^{k}"),
                ", with ",
                _m(r"\bar{J}"),
                " the mean of ",
                _m("J_{t}"),
                " over the run's T n rows and ",
                _m(r"\rho"),
                " its spectral radius (its largest eigenvalue in modulus):",
            )
        ),
        figure("escape.png", ("The escape from vanishing: gradient norm against distance.",), missing),
        Table(
            (
                "cell",
                "run",
                (_m(r"\sigma(b)"),),
                "measured factor",
                (_m(r"\rho(\bar{J})"),),
                (_m(r"\lVert \bar{J} \rVert_{2}"),),
                "bound along the trajectory",
            ),
            tuple(rows),
        ),
    ]


def _activations(data: dict[str, Any], missing: frozenset[str]) -> list[Block]:
    act = data["activations"]
    cfg = data["escape"]["config"]
    head = Heading(3, "Activations")
    if not act["steps"]:
        return [head, Para(("This cell has no sigmoid or tanh step, so there is no activation histogram.",))]
    rows = []
    for step, entry in act["steps"].items():
        rows.append(
            (
                (Code(step),),
                (entry["kind"],),
                *((f"{_sig(entry[p]['mean'])} / {_sig(entry[p]['std'])}",) for p in ("init", "trained")),
                *((f"{entry[p]['saturated']:.0%}",) for p in ("init", "trained")),
            )
        )
    return [
        head,
        Para(
            (
                "Every sigmoid and tanh step of the training run, all its T n d_h values, at its start and "
                f"after its {cfg['train_steps']} steps (loss {act['loss']['init']:.4f} to "
                f"{act['loss']['trained']:.4f}; uniform guessing gives log 4 = 1.3863):",
            )
        ),
        figure(
            "activations.png",
            ("Activations of every sigmoid and tanh step at the start of training and after it.",),
            missing,
        ),
        Table(
            (
                "step",
                "kind",
                "mean / std (start)",
                "mean / std (trained)",
                "saturated (start)",
                "saturated (trained)",
            ),
            tuple(rows),
        ),
        Para(("Saturated: within 5% of the range's ends (0 or 1 for gates, -1 or 1 for tanh).",)),
    ]
