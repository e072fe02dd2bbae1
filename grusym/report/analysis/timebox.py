"""A time limit on one piece of a report's symbolic work.

Contract: SymPy's suprema (the bound (J.1)) and the expansion at initialisation (J.3) run inside
:func:`time_box`; on a cell where they would run too long, :class:`SymbolicTimeoutError` stops them after
:func:`symbolic_seconds` (default :data:`SYMBOLIC_SECONDS`, or the environment's
``GRUSYM_SYMBOLIC_SECONDS``) and the section says so in one sentence (the rest of the report is unaffected).
The limit uses SIGALRM, so it applies in the main thread of a POSIX process; elsewhere the work runs
unlimited.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...errors import InputError

__all__ = ["SYMBOLIC_SECONDS", "SymbolicTimeoutError", "symbolic_seconds", "time_box"]

SYMBOLIC_SECONDS = 20.0  # the seven GRU variants, the LSTMs and the example cells need well under 1 s


def symbolic_seconds() -> float:
    """The time box of one piece of symbolic work: ``GRUSYM_SYMBOLIC_SECONDS`` if set, else 20 s."""
    text = os.environ.get("GRUSYM_SYMBOLIC_SECONDS", "")
    if not text:
        return SYMBOLIC_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"GRUSYM_SYMBOLIC_SECONDS must be a positive number of seconds, got {text!r}")
    return value


class SymbolicTimeoutError(Exception):
    """The symbolic work did not finish within its time box."""


@contextmanager
def time_box(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`SymbolicTimeoutError` naming ``what`` if the block runs longer than ``seconds``."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:  # no box inside another timer
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise SymbolicTimeoutError(f"{what} did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
