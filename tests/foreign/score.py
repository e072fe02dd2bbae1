"""Score the corpus against whichever grusym is on the path: per method, how many cases get the right verdict.

Run: ``PYTHONPATH=<checkout>:<this worktree> python -m tests.foreign.score`` (the first grusym on the path
is scored; the corpus is read from this worktree). Prints one line per case and method, then the totals.
"""

from __future__ import annotations

import sys
import time

import grusym
from grusym import gradcheck

from .cases import CASES, right, run

METHODS = ("fd", "directional", "complex", "taylor")


def main() -> int:
    print(f"grusym from {grusym.__file__}")
    totals = {m: [0, 0] for m in METHODS}  # right, wrong
    for case in CASES:
        for method in METHODS:
            start = time.perf_counter()
            outcome = run(case, method, gradcheck)
            good, why = right(case, method, outcome)
            totals[method][0 if good else 1] += 1
            seconds = time.perf_counter() - start
            print(f"{case.id:32s} {method:12s} {'right' if good else 'WRONG'} {seconds:5.2f}s {why[:110]}")
    print(f"\n{len(CASES)} cases")
    for method, (good, bad) in totals.items():
        print(f"{method:12s} right {good:3d}  wrong {bad:3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
