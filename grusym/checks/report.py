"""The result type of every check: one :class:`Entry` per checked array, in a :class:`GradientReport`.

Contract: an entry names its worst element (or, for a passing projected check, the projection), the analytic
value, the reference value and which reference it was (``reference``: "numeric" or "oracle"), the printed
relative error ``|a - n| / max(|a|, |n|)`` (no tolerance in it) and the verdict: ok, FAIL or
inconclusive (a check that could not resolve the tolerance; never ok). This module imports nothing from
the checks themselves, so the symbolic oracle can build reports too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import GradientCheckError

__all__ = ["Entry", "GradientReport"]


@dataclass(frozen=True)
class Entry:
    """The verdict on one array: its worst element (or, for a passing directional check, the projection)."""

    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    error: float
    ok: bool
    checked: int  # elements compared (directions probed for "directional" and "taylor")
    time_step: int | None = None
    rate: float | None = None  # the Taylor rate the verdict used (2 for a right gradient, 1 for a wrong one)
    projected: bool = False  # analytic = <g, v> and numeric = its directional difference, no single element
    reference: str = "numeric"  # what the analytic value is compared with
    bound: float | None = None  # the largest |analytic - numeric| the tolerance rule accepted here
    inconclusive: str = ""  # why the check could not decide (then ok is False)
    output: str | None = None  # for check_vjp: the output whose cotangent exposes the failure

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else ("inconclusive" if self.inconclusive else "FAIL")

    @property
    def where(self) -> str:
        if self.projected:
            return f"{self.name} along a random direction"
        return f"{self.name}[{', '.join(map(str, self.index))}]" if self.index else self.name

    def describe(self) -> str:
        text = (
            f"{self.where}: analytic {self.analytic:.10g} vs {self.reference} {self.numeric:.10g} "
            f"(relative error {self.error:.2e}"
        )
        if self.bound is not None:
            text += f", |difference| {abs(self.analytic - self.numeric):.2e} allowed {self.bound:.2e}"
        text += ")"
        if self.rate is not None and not math.isinf(self.rate):
            text += f", Taylor rate {self.rate:.2f} (expected 2)"
        if self.output is not None:
            text += f", through output {self.output}"
        if self.time_step is not None:
            text += f", first wrong at t = {self.time_step}"
        if self.inconclusive:
            text += f", inconclusive: {self.inconclusive}"
        return text


@dataclass
class GradientReport:
    """The result of a gradient check: ``ok``, the ``worst`` entry and a table (``str(report)``)."""

    method: str
    rtol: float
    entries: list[Entry] = field(default_factory=list)
    note: str = ""
    atol: float | None = None

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    @property
    def worst(self) -> Entry:
        failing = [e for e in self.entries if not e.ok]
        return max(failing or self.entries, key=lambda e: e.error)

    @property
    def failures(self) -> list[Entry]:
        """Entries that are not ok: FAIL or inconclusive."""
        return [e for e in self.entries if not e.ok]

    def __str__(self) -> str:
        rates = any(e.rate is not None for e in self.entries)
        reference = self.entries[0].reference if self.entries else "numeric"
        head = ["parameter", "worst rel. error", "where", "analytic", reference]
        rows = [(*head, "rate", "verdict") if rates else (*head, "verdict")]
        for e in self.entries:
            where = "along v" if e.projected else str(list(e.index))
            if e.output is not None:
                where += f" via {e.output}"
            if e.time_step is not None:
                where += f" t={e.time_step}"
            row = [e.name, f"{e.error:.2e}", where, f"{e.analytic:.6g}", f"{e.numeric:.6g}"]
            if rates:
                row.append("-" if e.rate is None or math.isinf(e.rate) else f"{e.rate:.2f}")
            rows.append((*row, e.verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        if self.method == "taylor":
            tol = f"rate >= {2 - self.rtol:.2f}"
        else:
            tol = f"rtol {self.rtol:.0e}" + ("" if self.atol is None else f", atol {self.atol:.0e}")
        lines = [f"gradient check ({self.method}, {tol})" + (f"; {self.note}" if self.note else "")]
        lines += ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip() for r in rows]
        if self.ok:
            lines.append("all gradients agree")
        else:
            failed = [e for e in self.failures if not e.inconclusive]
            open_ = len(self.failures) - len(failed)
            parts = ([f"{len(failed)} of {len(self.entries)} FAILED"] if failed else []) + (
                [f"{open_} of {len(self.entries)} inconclusive"] if open_ else []
            )
            lines.append(", ".join(parts))
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` naming each failing parameter and element, worst first."""
        if not self.ok:
            failing = "; ".join(e.describe() for e in sorted(self.failures, key=lambda e: -e.error))
            raise GradientCheckError(f"gradient check ({self.method}) failed: {failing}")
