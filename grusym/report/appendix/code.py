"""Appendix D of a report: the optimised generated code, with a table from equation numbers to its lines.

Contract: reads the generated module's text (equation numbers in its comments, via ``codemap``) and quotes
every function that cites an equation. Line numbers link into the module only when the report is written
where the module is (``module``: its path relative to the report's folder); elsewhere they are plain text
and the module is named, so the report links nothing that is not there.
"""

from __future__ import annotations

from typing import Any

from ..context import Context
from ..render import latex
from ..render.blocks import Block, Code, CodeBlock, Heading, Link, Math, Para, Table, Text
from . import codemap

__all__ = ["code_appendix"]


def code_appendix(c: Context, module: str | None) -> list[Block]:
    """Appendix D; ``module``: the link to the generated module from the report's folder, or None."""
    heading = Heading(2, "Appendix D. The optimised generated code", "code")
    source = c.subject.source
    if source is None:
        return [heading, Para(("No generated module text was given for this cell.",))]
    marks = codemap.markers(source)
    labels = {c.num[s.name]: s for s in c.cell.steps}

    def lines(ms: list[codemap.Marker]) -> Text:
        out: list[Any] = []
        for i, m in enumerate(ms):
            text = f"L{m.line}"
            out += ([", "] if i else []) + [Link(text, f"{module}#L{m.line}") if module else text]
        return tuple(out) or ("-",)

    rows: list[tuple[Text, ...]] = []
    for number in sorted(set(c.num.values())):
        fwd = [m for m in marks if number in m.numbers and not m.backward]
        bwd = [m for m in marks if number in m.numbers and m.backward]
        eq = (
            c.eq(labels[number])
            if number in labels
            else (latex.step_equation(c.head_step, c.params) if number == c.num["logits"] else "L")
        )
        rows.append(((f"({number})",), (Math(eq),), lines(fwd), lines(bwd)))
    where = c.subject.module_file or f"{c.name}.py"
    named: Text = (Link(where, module),) if module else (Code(where),)
    blocks: list[Block] = [
        heading,
        Para(
            (
                "The module ",
                *named,
                " is generated from the same derivation by ",
                Code(c.subject.derive_command or "grusym derive"),
                ". It computes what section 5's loop computes, fast: matrix products of several steps "
                "fused into one, buffers reused, and every parameter sum (B.4) as one matrix product over "
                "all T n rows. Its comments cite the equation numbers: ",
                Code("# (N) ..."),
                " above the forward lines of (N) and ",
                Code("# (N) grad of: ..."),
                " above the backward block of section 3's (N.k); fused blocks cite several. Lines in the "
                "module:",
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
