"""The ``grusym`` command line: one subcommand per module in :mod:`grusym.commands`.

Contract: each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and imports anything heavy (SymPy, matplotlib) inside ``run``. A :class:`~grusym.errors.GrusymError` or an
``OSError`` becomes a one-line message and exit code 2 (``--debug`` shows the traceback); a failed check
is exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from .errors import GrusymError

__all__ = ["COMMANDS", "main"]

ORDER = ("train", "derive", "gradcheck", "report", "bench")  # help lists these first, in this order


def _commands() -> list[str]:
    from . import commands

    found = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))


COMMANDS = _commands()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grusym",
        description="Symbolically derived, generated and verified BPTT for GRU variants in plain NumPy.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"grusym.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback on errors",
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``grusym`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("grusym: interrupted", file=sys.stderr)
        return 130
    except (GrusymError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc) if isinstance(exc, GrusymError) else f"{exc.strerror or exc}: {exc.filename or ''}"
        print(f"grusym {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
