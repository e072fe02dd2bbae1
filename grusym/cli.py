"""The ``grusym`` command line: one subcommand per module in :mod:`grusym.commands`.

Contract: each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and imports anything heavy (SymPy, matplotlib) inside ``run``. Exit codes: 0 success, 1 a failed check,
2 bad input (a bad option value, a :class:`~grusym.errors.GrusymError`, an ``OSError`` such as a missing
file or an unwritable folder, undecodable text, too little memory), 3 an unexpected exception (a bug),
130 interrupted, 141 output pipe closed. Every error is ONE line on stderr, ``grusym <command>: error:
...``; ``--debug`` (before or after the command) also prints the traceback. :func:`main` returns the code
instead of exiting, so tests can call it in-process. The option types below (``positive_int`` ...) give
commands one-line messages for bad option values.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .errors import GrusymError

__all__ = [
    "COMMANDS",
    "execute",
    "finite_float",
    "main",
    "non_negative_float",
    "non_negative_int",
    "positive_int",
]

ORDER = ("train", "sample", "derive", "gradcheck", "report", "bench")  # help lists these first, in this order


def _commands() -> list[str]:
    from . import commands

    found = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))


COMMANDS = _commands()


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


# ---- option types: argparse turns their ArgumentTypeError into "argument --x: <message>", exit 2


def _number(convert: Callable[[str], Any], kind: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
        return value

    parse.__name__ = kind
    return parse


positive_int = _number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
finite_float = _number(float, "a finite number", math.isfinite)
# + 0.0 turns "-0" into 0.0: NumPy's samplers refuse a scale of -0.0 (a fuzz finding)
non_negative_float = _number(
    lambda t: float(t) + 0.0, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see: {self.prog} --help)\n")


class _CommandParser(_Parser):
    """A command's parser: an unknown option is its own error (argparse hands the leftovers to the top-level
    parser, whose message would say ``grusym: error:`` and point at the top-level help)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[Any, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="grusym",
        description="Symbolically derived, generated and verified BPTT for GRU variants in plain NumPy.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"grusym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    for name in COMMANDS:
        module = importlib.import_module(f"grusym.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        # SUPPRESS: an absent sub-level flag must not reset a --debug given before the command
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback on errors"
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, GrusymError):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.filename is None:
            return exc.strerror or str(exc)
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{where}: {exc.strerror or exc}"
    if isinstance(exc, UnicodeError):
        return f"text is not valid UTF-8: {exc}"
    if isinstance(exc, MemoryError):
        return f"not enough memory: {exc}" if str(exc) else "not enough memory"
    return f"internal error: {type(exc).__name__}: {exc} (a bug in grusym; --debug shows the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``grusym`` console script; returns the exit code (see the module docstring)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    return execute(args)


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command (``args._run``); turn what it raises into one stderr line and an exit code."""
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("grusym: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `grusym ... | head`: the reader left; stop quietly, as SIGPIPE would
        with contextlib.suppress(OSError, ValueError):  # no flush error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"grusym {args.command}: error: {_one_line(_message(exc))}", file=sys.stderr)
        expected = (GrusymError, OSError, UnicodeError, MemoryError)
        return 2 if isinstance(exc, expected) else 3


if __name__ == "__main__":
    sys.exit(main())
