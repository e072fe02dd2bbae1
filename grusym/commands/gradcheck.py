"""``grusym gradcheck``: check the generated gradients of one or every variant, one table per method."""

from __future__ import annotations

import argparse

from ..cli import non_negative_float, non_negative_int

HELP = "check the generated gradients against numeric ones and a symbolic oracle (exit 1 on any failure)"
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
    failed = False
    for name in names:
        # fused: the fused module is checked with its own loss (the complex step runs its kernels); the
        # oracle reads the built-in's declaration and checks the fused gradients against it
        fused = grusym.load(name, backend="fused") if args.backend == "fused" else None
        label = name if fused is None else f"{name}, fused"
        for method in methods:
            if fused is not None and method != "oracle":
                report = check_variant(fused, method=method, seed=args.seed, scale=args.scale)
            else:
                lag = None if fused is None else fused.loss_and_grads
                report = check_variant(
                    name, method=method, seed=args.seed, scale=args.scale, loss_and_grads=lag
                )
            print(f"[{label}] {report}\n")
            failed |= not report.ok
    return 1 if failed else 0


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
    failed = False
    for method in methods:
        if method == "oracle":
            report = check_oracle(m, cell=cell, seed=seed, scale=scale)
        else:
            report = check_variant(m, method=method, seed=seed, scale=scale)
        print(f"[{cell.name}] {report}\n")
        failed |= not report.ok
    return 1 if failed else 0
