"""Appendix E of a report: the gradient checks measured when the report was built.

Contract: renders the build's :class:`~grusym.report.numbers.verify.Measurement` inside the only
:class:`~grusym.report.render.blocks.Measured` block of a report (what differs between two builds: the date,
and the last digits of a timing-free error where the platform's BLAS differs). Element positions are
counted from 1, as everywhere in the text; for X the first position is the step t.
"""

from __future__ import annotations

import math
from typing import Any

from ..context import Context
from ..numbers.verify import Measurement
from ..render.blocks import Block, Bullets, Code, Heading, Measured, Para, Table

__all__ = ["verification_appendix"]


def verification_appendix(c: Context, measured: Measurement | None) -> list[Block]:
    head: list[Block] = [
        Heading(2, "Appendix E. Verification", "verification"),
        Para(
            (
                "Measured when this report was built (the only part of the report that changes between "
                "builds): every gradient-check method of ",
                Code("grusym.gradcheck"),
                " on the cell's default random float64 problem (T = 3, n = 2, d = 3, d_h = 4, q = 5, seed "
                "0; the symbolic oracle unrolls a smaller one, d_h = q = 3), the closed-form Jacobian of "
                "Appendix A against central differences of the generated step, and (for grusym's own "
                "cells) the committed module against the generator.",
            )
        ),
        Para(
            (
                "How to read the table: each row is one method; elements is how many gradient entries it "
                "compared (the oracle compares the loss too, not counted), worst at the entry with the "
                "largest error (array[position], counted from 1; for X the first position is the step t), "
                "and the verdict compares that error with the tolerance. What each method compares:",
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
                (f"{k.rtol:.0e}" if k.rtol else "exact",),
                (elements,),
                (Code(k.worst),),
                (err,),
                (k.verdict,),
            )
        )
    versions = ", ".join(f"{name} {ver}" for name, ver in measured.versions)
    body: tuple[Block, ...] = (
        Bullets(tuple((Code(k.method), ": ", k.what) for k in measured.checks)),
        Table(("check", "tolerance", "elements", "worst at", "worst error", "verdict"), tuple(rows)),
        Para(
            (
                f"Built {measured.date} with {versions}. ",
                "All checks pass." if measured.ok else "SOME CHECKS FAILED.",
            )
        ),
    )
    return [*head, Measured(body)]
