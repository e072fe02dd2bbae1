"""``grusym gradcheck``: check the generated gradients of one or every variant, one table per method.

Every requested method runs, in order; a method that refuses the code (the complex step through code that is
not complex-analytic) prints "refused: ..." in place of its table, and the methods after it still run. Exit
status: 1 if any table has a FAIL or an inconclusive row, else 2 if a cell got no verdict at all (every
method refused it), else 0.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from ..cli import non_negative_float, non_negative_int

HELP = (
    "check the generated gradients against numeric ones and a symbolic oracle (exit 1 on a FAIL or "
    "inconclusive row; a method that refuses the code is reported and the others still run)"
)
CHOICES = ("fd", "directional", "complex", "taylor", "oracle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--variant", default="gru", help="variant to check (default: gru)")
    which.add_argument("--all", action="store_true", help="check every built-in cell (GRU variants, lstm)")
    which.add_argument(
        "--cell",
        metavar="FILE.py:NAME",
        default=None,
        help="check the cell NAME declared in your own FILE.py",
    )
    p.add_argument(
        "--method",
        default="fd",
        help=f"comma-separated checks out of {','.join(CHOICES)} (default: fd)",
    )
    p.add_argument(
        "--backend",
        choices=("numpy", "fused"),
        default="numpy",
        help="check the plain NumPy modules or the fused (Numba) ones (default: numpy)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random problem (default: 0)")
    p.add_argument(
        "--scale",
        type=non_negative_float,
        default=1.0,
        help="standard deviation of the weights; 3 saturates the gates (default: 1)",
    )


def run(args: argparse.Namespace) -> int:
    import grusym
    from grusym.errors import InputError
    from grusym.gradcheck import check_variant

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CHOICES]
    if unknown or not methods:
        raise InputError(f"--method: unknown {unknown or 'empty list'}; choose from {','.join(CHOICES)}")
    if args.cell is not None:
        if args.backend != "numpy":
            raise InputError(
                "--backend fused checks the built-ins; for your cell: grusym derive --cell ... --fused"
            )
        return _check_cell(args.cell, methods, args.seed, args.scale)
    from grusym.generated import CELLS

    names = list(CELLS) if args.all else [_variant(args.variant)]
    outcome = _Outcome()
    for name in names:
        # fused: the fused module is checked with its own loss (the complex step runs its kernels); the
        # oracle reads the built-in's declaration and checks the fused gradients against it
        fused = grusym.load(name, backend="fused") if args.backend == "fused" else None
        label = name if fused is None else f"{name}, fused"
        for method in methods:
            if fused is not None and method != "oracle":
                check = functools.partial(
                    check_variant, fused, method=method, seed=args.seed, scale=args.scale
                )
            else:
                lag = None if fused is None else fused.loss_and_grads
                check = functools.partial(
                    check_variant, name, method=method, seed=args.seed, scale=args.scale, loss_and_grads=lag
                )
            outcome.add(label, method, check)
    return outcome.status()


class _Outcome:
    """Every method runs; a refusal is reported and the next method runs. The exit status: 1 if any row
    is FAIL or inconclusive, else 2 if some cell got no verdict at all (every method refused), else 0."""

    def __init__(self) -> None:
        self.unverified = False
        self.judged: dict[str, bool] = {}

    def add(self, label: str, method: str, check: Callable[[], Any]) -> None:
        from grusym.errors import InputError

        try:
            report = check()
        except InputError as exc:  # the method cannot run on this code; the others still can
            print(f"[{label}] {method}: refused: {exc}\n")
            self.judged.setdefault(label, False)
            return
        print(f"[{label}] {report}\n")
        self.judged[label] = True
        self.unverified |= not report.ok

    def status(self) -> int:
        if self.unverified:
            return 1
        refused = [label for label, judged in self.judged.items() if not judged]
        if refused:
            print(
                f"grusym gradcheck: every method refused {', '.join(refused)}: nothing was checked",
                file=sys.stderr,
            )
            return 2
        return 0


def _variant(name: str) -> str:
    import grusym
    from grusym.errors import UnknownVariantError

    try:
        return str(grusym.load(name).VARIANT)
    except UnknownVariantError as exc:  # the option's name first, as train says it
        raise UnknownVariantError(f"--variant: {exc}") from None


def _check_cell(spec: str, methods: list[str], seed: int, scale: float) -> int:
    """A user's cell: derived in memory, then checked like a built-in (the oracle reads its declaration)."""
    from grusym.gradcheck import check_variant
    from grusym.oracle import check_oracle
    from grusym.symbolic.usercell import derive_module, load_cell

    cell = load_cell(spec)
    m = derive_module(cell)
    outcome = _Outcome()
    for method in methods:
        if method == "oracle":
            check = functools.partial(check_oracle, m, cell=cell, seed=seed, scale=scale)
        else:
            check = functools.partial(check_variant, m, method=method, seed=seed, scale=scale)
        outcome.add(cell.name, method, check)
    return outcome.status()
