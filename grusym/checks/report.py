"""The result type of every check: one :class:`Entry` per checked array, in a :class:`GradientReport`.

Contract: an entry names its worst element (or, for a passing projected check, the directions it probed and
the resolution they had), the analytic value, the reference value and which reference it was
(``reference``: "numeric" or "oracle"), the printed relative error ``|a - n| / max(|a|, |n|)`` (no
tolerance in it) and the verdict: ok, FAIL or inconclusive (a check that could not decide; never ok, never
FAIL). For recurrent code a failing element carries ``time_step``: the step t, counted from 1 as in the
reports' mathematics (t = 1 is the first step, computed from X[0] and the initial state h_0), printed as
"first wrong at t = 1 (X[0])". This module imports nothing from the checks themselves, so the symbolic
oracle can build reports too.
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
    time_step: int | None = None  # recurrent code: the first wrong step t, from 1 (its input is X[t - 1])
    rate: float | None = None  # the Taylor rate the verdict used (2 for a right gradient, 1 for a wrong one)
    projected: bool = False  # analytic = <g, v> and numeric = its directional difference, no single element
    reference: str = "numeric"  # what the analytic value is compared with
    bound: float | None = None  # the largest |analytic - numeric| the tolerance rule accepted here
    inconclusive: str = ""  # why the check could not decide (then ok is False)
    output: str | None = None  # for check_vjp: the output whose cotangent exposes the failure
    # projected checks: the smallest relative error in one element of average size the verdict would see
    resolution: float | None = None
    kinks: int = 0  # elements (directions) judged one-sided: a kink (relu, max) lies within the step

    @property
    def step_index(self) -> int | None:
        """The index of the first wrong step on the time axis (``time_step - 1``), or None."""
        return None if self.time_step is None else self.time_step - 1

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else ("inconclusive" if self.inconclusive else "FAIL")

    @property
    def where(self) -> str:
        if self.projected:
            many = f"{self.checked} random directions" if self.checked > 1 else "a random direction"
            return f"{self.name} along {many}"
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
        if self.resolution is not None and (self.projected or self.ok):
            text += f", resolves relative errors above {self.resolution:.1e} in one element"
        if self.kinks:
            text += f", {self.kinks} judged one-sided (a kink within the step)"
        if self.time_step is not None:
            text += f", first wrong at t = {self.time_step} (X[{self.time_step - 1}])"
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
        # projected methods always state what they resolve; element-wise ones when the noise dominates
        resolves = self.method in ("directional", "taylor") or any(
            e.resolution is not None and e.resolution > 2 * self.rtol for e in self.entries
        )
        reference = self.entries[0].reference if self.entries else "numeric"
        head = ["parameter", "worst rel. error", "where", "analytic", reference]
        head += ["rate"] if rates else []
        head += ["resolves"] if resolves else []
        rows = [(*head, "verdict")]
        for e in self.entries:
            where = str(list(e.index))
            if e.projected:
                where = f"{e.checked} directions" if e.checked > 1 else "1 direction"
            if e.output is not None:
                where += f" via {e.output}"
            if e.time_step is not None:
                where += f" t={e.time_step}"
            row = [e.name, f"{e.error:.2e}", where, f"{e.analytic:.6g}", f"{e.numeric:.6g}"]
            if rates:
                row.append("-" if e.rate is None or math.isinf(e.rate) else f"{e.rate:.2f}")
            if resolves:
                row.append("-" if e.resolution is None else f"{e.resolution:.1e}")
            verdict = e.verdict + (" (one-sided)" if e.kinks and e.ok else "")
            rows.append((*row, verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        if self.method == "taylor":
            tol = "fitted error of <g, v> within 5 sd"
            if self.rtol or self.atol:
                tol += f" + rtol {self.rtol:.0e}, atol {self.atol or 0:.0e}"
        else:
            tol = f"rtol {self.rtol:.0e}" + ("" if self.atol is None else f", atol {self.atol:.0e}")
        lines = [f"gradient check ({self.method}, {tol})" + (f"; {self.note}" if self.note else "")]
        lines += ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip() for r in rows]
        if resolves:
            lines.append(
                "resolves: the smallest relative error in one element (of average size) each row would see"
            )
        if any(e.kinks for e in self.entries):
            lines.append("one-sided: a kink (relu, abs, max) within the step: judged on the point's side")
        if any(e.time_step is not None for e in self.entries):
            lines.append("t: the first wrong time step, from 1 (t = 1 reads X[0] and the initial state)")
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
            decided = any(not e.inconclusive for e in self.failures)
            what = "failed" if decided else "could not decide"  # inconclusive is never reported as a FAIL
            raise GradientCheckError(f"gradient check ({self.method}) {what}: {failing}")
