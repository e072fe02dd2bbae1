"""Sections 6-8 of a report: the generated code with a map to PyTorch's and Keras' weights, the measured
verification, and the figures.

Contract: the code section reads the generated module's text (equation numbers in its comments, via
``codemap``); the framework box is read off ``grusym.interop``'s converters by probing them with labelled
parameters (which slice of which framework array each parameter lands in), so it cannot disagree with them;
the verification block is the build's :class:`~grusym.report.verify.Measurement`; the figure sections read
``figures.json`` data, and say so when a figure could not be drawn.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..context import Context
from ..numbers.verify import Measurement
from ..render import latex
from ..render.blocks import Block, Code, CodeBlock, Figure, Heading, Link, Math, Measured, Para, Table, Text
from ..render.plots import INSTALL_HINT
from . import codemap

__all__ = ["code_section", "figure", "figures_section", "frameworks_box", "verification_section"]

CODE_DIR = "../../grusym/generated"  # from derivations/<variant>/
_m = Math


def code_section(c: Context) -> list[Block]:
    path = f"grusym/generated/{c.name}.py"
    source = c.subject.source
    if source is None:
        return [
            Heading(2, "6. The generated code", "code"),
            Para(("No generated module text was given for this cell.",)),
        ]
    marks = codemap.markers(source)
    rows: list[tuple[tuple[Any, ...], ...]] = []
    labels = {c.num[s.name]: s for s in c.cell.steps}
    for number in sorted(set(c.num.values())):
        fwd = [m for m in marks if number in m.numbers and not m.backward]
        bwd = [m for m in marks if number in m.numbers and m.backward]
        eq = (
            c.eq(labels[number])
            if number in labels
            else (latex.step_equation(c.head_step, c.params) if number == c.num["logits"] else "L")
        )

        def links(ms: list[codemap.Marker]) -> Text:
            out: list[Any] = []
            for i, m in enumerate(ms):
                out += ([", "] if i else []) + [Link(f"L{m.line}", f"{CODE_DIR}/{c.name}.py#L{m.line}")]
            return tuple(out) or ("-",)

        rows.append(((f"({number})",), (_m(eq),), links(fwd), links(bwd)))
    blocks: list[Block] = [
        Heading(2, "6. The generated code", "code"),
        Para(
            (
                "The module ",
                Link(Code(path).text, f"{CODE_DIR}/{c.name}.py"),
                " is generated from the same derivation by ",
                Code("grusym derive"),
                ". Its comments cite the equation numbers above: ",
                Code("# (N) ..."),
                " above the forward lines of (N) and ",
                Code("# (N) grad of: ..."),
                " above the backward block of section 3's (N.k); fused blocks cite several. Lines in "
                "the module:",
            )
        ),
        Table(("equation", "", "forward", "backward"), tuple(rows)),
    ]
    # every function that cites an equation, in file order: robust to how the generator splits its code
    for fn in dict.fromkeys(m.function for m in marks):
        text, first = codemap.function_source(source, fn)
        cited = sorted({k for m in marks if m.function == fn for k in m.numbers})
        blocks += [
            Para((Code(fn), f" (line {first}) implements ", ", ".join(f"({k})" for k in cited), ":")),
            CodeBlock(text, "python", first),
        ]
    return blocks


def verification_section(c: Context, measured: Measurement | None) -> list[Block]:
    head: list[Block] = [
        Heading(2, "7. Verification", "verification"),
        Para(
            (
                "Measured when this report was built (the only part of the report that changes between "
                "builds): every gradient-check method of ",
                Code("grusym.gradcheck"),
                " on the cell's default random float64 problem (T=3, n=2, d=3, d_h=4, q=5, seed 0; "
                "the symbolic oracle unrolls a smaller one, d_h = q = 3), the "
                "closed-form Jacobian of section 4 against central differences of the generated step, and "
                "(for grusym's own variants) the committed module against the generator.",
            )
        ),
        Para(
            (
                "How to read the table: each row is one method; elements is how many gradient entries it "
                "compared, worst at the entry with the largest error (array[index]), and the "
                "verdict compares "
                "that error with the tolerance.",
            )
        ),
    ]
    if measured is None:
        return [*head, Measured((Para(("Not measured in this build.",)),))]
    rows: list[tuple[tuple[Any, ...], ...]] = []
    for k in measured.checks:
        err = "-" if math.isnan(k.error) else f"{k.error:.2e}"
        elements = str(k.elements) if k.elements else "-"
        rows.append(
            (
                (Code(k.method),),
                (k.what,),
                (f"{k.rtol:.0e}" if k.rtol else "exact",),
                (elements,),
                (Code(k.worst),),
                (err,),
                (k.verdict,),
            )
        )
    versions = ", ".join(f"{name} {ver}" for name, ver in measured.versions)
    body: tuple[Block, ...] = (
        Table(
            ("check", "compares", "tolerance", "elements", "worst at", "worst error", "verdict"), tuple(rows)
        ),
        Para(
            (
                f"Built {measured.date} with {versions}. ",
                "All checks pass." if measured.ok else "SOME CHECKS FAILED.",
            )
        ),
    )
    return [*head, Measured(body)]


def _sig(x: float) -> str:
    return f"{x:.3g}"


def norm_text(x: float | None) -> str:
    """A measured norm, or '-' where the cell has no such matrix."""
    return "-" if x is None else _sig(x)


def _recurrent(gn: dict[str, Any]) -> str:
    """W_hh, or the report's own recurrent weights side by side (the LSTM's four); rnn_tanh's is W_hh."""
    mine = next(iter(gn.get("recurrent_weights", {}).values()), ["W_hh"])  # the report's cell comes first
    if mine == ["W_hh"]:
        return "W_hh"
    return "[" + " ".join(mine) + "] (W_hh for rnn_tanh)" if mine else "W_hh (none in this cell)"


def figures_section(c: Context, data: dict[str, Any], missing: frozenset[str] = frozenset()) -> list[Block]:
    gn = data["gradient_norms"]
    cfg = gn["config"]
    T = cfg["T"]
    names = list(gn["norms"])
    show = sorted({1, 5, 10, 20, T})
    rows: list[tuple[tuple[Any, ...], ...]] = []
    for v in names:
        for scale, norms in gn["norms"][v].items():
            rate = (norms[T] / norms[0]) ** (1 / T) if norms[T] > 0 else 0.0
            rows.append(
                (
                    (Code(v),),
                    (scale,),
                    (norm_text(gn["W_hh_spectral_norm"][v][scale]),),
                    *((_sig(norms[k]),) for k in show),
                    (_sig(rate),),
                )
            )
    act = data["activations"]
    acfg = act["config"]
    arows = []
    for step, entry in act["steps"].items():
        arows.append(
            (
                (Code(step),),
                (entry["kind"],),
                *((f"{_sig(entry[p]['mean'])} / {_sig(entry[p]['std'])}",) for p in ("init", "trained")),
                *((f"{entry[p]['saturated']:.0%}",) for p in ("init", "trained")),
            )
        )
    return [
        Heading(2, "8. Figures", "figures"),
        Para(
            (
                "The figures come from the generated code with fixed seeds (",
                Code("grusym.report.figures"),
                "); their numbers are in ",
                Link("figures.json", "figures.json"),
                ". Gradient norms: the loss is ",
                _m(r"\langle g, h_{T} \rangle"),
                " for a fixed unit vector g on the last step only; the adjoint of each earlier state is the ",
                Code(", ".join(f'grads["{k}0"]' for k in c.cell.states)),
                " of the generated backward run on the suffix of the sequence that starts from that state"
                + (" (its norm: of the states side by side). " if len(c.cell.states) > 1 else ". "),
                f"Toy text 'Math...', T = {T}, n = {cfg['n']}, d_h = {cfg['hidden']}, weights N(0, scale^2) "
                f"from init_params (seed {cfg['seed']}), zero biases.",
            )
        ),
        figure(
            "gradient_norms.png",
            f"Gradient norm against distance to the loss: {' vs '.join(names)}.",
            missing,
        ),
        Table(
            (
                "variant",
                "weight scale",
                "spectral norm of " + _recurrent(gn),
                *(f"k = {k}" for k in show),
                "per-step factor",
            ),
            tuple(rows),
        ),
        Para(
            (
                "The per-step factor is ",
                _m(r"(\lVert \delta h_{0} \rVert / \lVert \delta h_{T} \rVert)^{1/T}"),
                "; at the smallest scale compare it with (J.3), and at every scale with the condition (J.2) "
                "in section 4; the escape figure is there too.",
            )
        ),
        Para(
            (
                f"Activations: {acfg['steps']} full-batch SGD steps (learning rate {acfg['lr']}) of the "
                "generated ",
                Code("loss_and_grads"),
                f" on the toy text (T = {acfg['T']}, n = {acfg['n']}, d_h = {acfg['hidden']}, init scale "
                f"{acfg['scale']}); the loss goes from {act['loss']['init']:.4f} to "
                f"{act['loss']['trained']:.4f} (uniform guessing: log 4 = 1.3863). Histograms of every "
                "sigmoid and tanh step over all T n h values, before and after.",
            )
        ),
        *_activation_blocks(arows, missing),
    ]


def _activation_blocks(arows: list[Any], missing: frozenset[str]) -> list[Block]:
    """The activations figure and its table, or one sentence for a cell without sigmoid or tanh steps."""
    if not arows:
        return [Para(("This cell has no sigmoid or tanh step, so there is no activation histogram.",))]
    return [
        figure(
            "activations.png",
            "Activations of every sigmoid/tanh step at initialisation and after training.",
            missing,
        ),
        Table(
            (
                "step",
                "kind",
                "mean / std (init)",
                "mean / std (trained)",
                "saturated (init)",
                "saturated (trained)",
            ),
            tuple(arows),
        ),
        Para(("Saturated: within 5% of the range's ends (0 or 1 for gates, -1 or 1 for tanh).",)),
    ]


def figure(path: str, caption: str, missing: frozenset[str]) -> Block:
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


_GRU_BLOCKS = (
    "the test suite loads the PyTorch column into torch.nn.GRU and checks its output; the Keras layouts are "
    "checked against Keras' cell equations). With h the hidden size, 0:h, h:2h and 2h:3h are the three "
    "blocks of rows (PyTorch: r, z, n) or columns (Keras: z, r, h)"
)
_LSTM_BLOCKS = (
    "the test suite loads the PyTorch column into torch.nn.LSTM and checks its output). With h the hidden "
    "size, 0:h, h:2h, 2h:3h and 3h:4h are the four blocks of rows (PyTorch: i, f, g, o)"
)


def _layouts() -> tuple[tuple[str, str, Any, str], ...]:
    """(framework, the built-in cell its layout holds, params -> framework arrays, what the blocks are)."""
    from ...interop import to_keras_gru, to_torch_gru, to_torch_lstm

    return (
        ("PyTorch nn.GRU", "gru_reset_after", lambda p: to_torch_gru(p)[0], _GRU_BLOCKS),
        (
            "Keras GRU(reset_after=True)",
            "gru_reset_after",
            lambda p: _keras(to_keras_gru(p, reset_after=True)[0]),
            _GRU_BLOCKS,
        ),
        (
            "Keras GRU(reset_after=False)",
            "gru",
            lambda p: _keras(to_keras_gru(p, reset_after=False)[0]),
            _GRU_BLOCKS,
        ),
        ("PyTorch nn.LSTM", "lstm", lambda p: to_torch_lstm(p)[0], _LSTM_BLOCKS),
    )


def _declaration(cell: Any) -> tuple[Any, ...]:
    """What makes two cells the same function with the same parameter names (not their names)."""
    return tuple((s.name, str(s.expr)) for s in cell.steps), tuple(cell.params)


def frameworks_box(c: Context) -> list[Block]:
    """Where each parameter of the cell sits in the framework layouts ``grusym.interop`` converts to: those
    whose built-in cell has the same declaration as this one (a user's copy of a built-in included)."""
    from ...symbolic.variants import CELLS

    names = list(c.cell.params)
    mine = _declaration(c.cell)
    targets = [
        (f, convert, text)
        for f, cell, convert, text in _layouts()
        if _declaration(CELLS[cell].cell()) == mine
    ]
    if not targets:
        return [
            Heading(3, "In PyTorch and Keras"),
            Para(
                (
                    "grusym.interop converts no framework's layout for this cell, so there is no map of its "
                    "parameters to framework weights.",
                )
            ),
        ]
    dh, d = 3, 2
    probe = {}
    for i, k in enumerate(names):
        shape = c.cell.params[k]
        size = (dh,) if shape.kind != "weight" else ((d if latex.dim(shape.rows) == "d" else dh), dh)
        probe[k] = (i + 1) * 1000.0 + np.arange(math.prod(size), dtype=np.float64).reshape(size)
    rows: list[tuple[Text, ...]] = []
    for framework, convert, _ in targets:
        arrays = convert(probe)
        for k in names:
            where = _where(probe[k], arrays, dh)
            # a gate bias the converter puts whole into the input bias: the framework adds the recurrent one
            for single, pair in (("bias_ih_l0[", "bias_hh_l0["), ("bias[0, ", "bias[1, ")):
                if where.startswith(single) and c.cell.params[k].kind == "bias":
                    block = where[len(single) : -1]
                    other = (
                        arrays["bias_hh_l0"] if pair.startswith("bias_hh") else np.asarray(arrays["bias"])[1]
                    )
                    lo = _BLOCKS.index(block) * dh
                    if not np.any(np.asarray(other)[lo : lo + dh]):
                        where += f" + {pair}{block}]"
            rows.append(((framework,), (Math(latex.name(k, params=c.params)),), (Code(where),)))
    return [
        Heading(3, "In PyTorch and Keras"),
        Para(
            (
                "The same parameters in the frameworks that implement this cell, read off ",
                Code("grusym.interop"),
                f"'s converters ({targets[0][2]}; grusym multiplies from the right (",
                Math("X_{t} W"),
                "), PyTorch from the left, hence the transposes. Where the framework keeps two biases for a "
                "gate, only their sum enters the function.",
            )
        ),
        Table(("framework", "parameter", "where"), tuple(rows)),
    ]


def _keras(weights: list[Any]) -> dict[str, Any]:
    return dict(zip(("kernel", "recurrent_kernel", "bias"), weights, strict=True))


_BLOCKS = ("0:h", "h:2h", "2h:3h", "3h:4h")


def _where(value: np.ndarray, arrays: dict[str, Any], dh: int) -> str:
    """Which slice of which framework array holds ``value`` (transposed or not)."""
    for key, a in arrays.items():
        a = np.asarray(a)
        for axis in range(a.ndim):
            gates = a.shape[axis] // dh  # 3 for a GRU's stacked gates, 4 for an LSTM's
            for j, sl in enumerate(_BLOCKS[:gates] if gates in (3, 4) and a.shape[axis] % dh == 0 else ()):
                part = np.take(a, range(j * dh, (j + 1) * dh), axis=axis)
                index = ", ".join(sl if ax == axis else ":" for ax in range(a.ndim))
                if value.ndim == 1 and part.ndim == 2:
                    for r in range(part.shape[0]):
                        if np.array_equal(part[r], value):
                            index = ", ".join([str(r), sl] if axis == 1 else [sl, str(r)])
                            return f"{key}[{index}]"
                    continue
                if part.shape == value.shape and np.array_equal(part, value):
                    return f"{key}[{index}]"
                if part.shape == value.T.shape and np.array_equal(part, value.T):
                    return f"{key}[{index}].T"
    return "(no single slice: see grusym.interop)"
