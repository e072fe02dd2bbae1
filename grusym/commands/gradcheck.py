"""``grusym gradcheck``: check the generated gradients of one or every variant and print a table each."""

from __future__ import annotations

import argparse

HELP = "check the generated gradients against numeric ones (exit 1 on any failure)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--variant", default="gru", help="variant to check (default: gru)")
    which.add_argument("--all", action="store_true", help="check every variant")
    p.add_argument("--method", default="fd", help="comma-separated checks to run (default: fd)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random problem (default: 0)")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="standard deviation of the weights; 3 saturates the gates (default: 1)",
    )


def run(args: argparse.Namespace) -> int:
    import grusym
    from grusym.gradcheck import check_variant

    names = grusym.variants() if args.all else [grusym.load(args.variant).VARIANT]
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    failed = False
    for name in names:
        for method in methods:
            report = check_variant(name, method=method, seed=args.seed, scale=args.scale)
            print(f"[{name}] {report}\n")
            failed |= not report.ok
    return 1 if failed else 0
