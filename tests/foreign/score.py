"""Score the corpus against whichever grusym is on the path: per method, how many cases get the right verdict.

Run from a directory holding this package: ``PYTHONPATH=<checkout> python -m foreign.score`` scores the
grusym of <checkout>; one line per case and method, then the totals. ``--timing`` times check_recurrent
with localisation on a T=20 LSTM where every entry fails.
"""

from __future__ import annotations

import sys
import time

import grusym
from grusym import gradcheck

from .cases import CASES, run
from .judge import right

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


def worst_localisation(T: int = 20, n: int = 4, H: int = 8) -> None:
    """Time check_recurrent with localisation where it costs most: every entry fails (the LSTM's carried
    cell gradient never updated), so each one is located over all T prefixes."""
    import functools

    from grusym.checks import check_recurrent

    from . import lstm

    p, X, Y, h0, c0 = lstm.init(T=T, n=n, d=3, H=H, V=5, seed=4)
    for bug in (None, "carry"):
        lag = functools.partial(lstm.loss_and_grads, bug=bug)
        for method in METHODS:
            start = time.perf_counter()
            report = check_recurrent(lstm.loss, lag, p, X, Y, (h0, c0), method=method)
            seconds = time.perf_counter() - start
            located = sum(e.time_step is not None for e in report.entries)
            print(
                f"lstm T={T} n={n} H={H} {bug or 'correct':8s} {method:12s} {seconds:6.2f}s "
                f"({located} of {len(report.entries)} entries located, ok={report.ok})"
            )


if __name__ == "__main__":
    if "--timing" in sys.argv:
        worst_localisation()
    else:
        sys.exit(main())
