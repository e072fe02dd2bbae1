"""The timing harness: contenders timed in turn, round by round, in one process, and the progress lines the
command prints while it runs (to stderr, so the report on stdout keeps its shape)."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

__all__ = ["Progress", "interleaved"]


class Progress:
    """``progress("message")`` writes "[12.3 s] message" to ``stream`` (seconds since creation).
    ``transient`` messages (round counters) are rewritten in place on a terminal, and elsewhere written at
    most every ``every`` seconds. ``Progress(None)`` says nothing."""

    def __init__(self, stream: TextIO | None = sys.stderr, prefix: str = "grusym bench", every: float = 5.0):
        self.stream, self.prefix, self.every = stream, prefix, every
        self.started = self.last = time.perf_counter()
        self._open = False  # a line rewritten in place is waiting for its newline

    def __call__(self, message: str, transient: bool = False) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        tty = self.stream.isatty()
        if transient and not tty and now - self.last < self.every:
            return
        self.last = now
        line = f"{self.prefix} [{now - self.started:5.1f} s] {message}"
        if transient and tty:
            self.stream.write("\r\x1b[K" + line)
            self._open = True
        else:
            self.stream.write(("\r\x1b[K" if self._open else "") + line + "\n")
            self._open = False
        self.stream.flush()

    def done(self) -> None:
        if self._open and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def interleaved(
    steps: Mapping[str, Callable[[], object]],
    repeat: int,
    pause: float = 0.01,
    progress: Progress | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each step, ``repeat`` rounds; within a round every step runs in turn.

    Each timed call follows ``pause`` seconds of sleep and one untimed call; the garbage collector is off
    while timing (as in ``timeit``). ``progress`` hears of every finished round.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for k in range(repeat):
        for name, step in steps.items():
            time.sleep(pause)
            step()
            gc.disable()
            try:
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
            finally:
                gc.enable()
        if progress is not None:
            progress(f"round {k + 1}/{repeat} of {len(steps)} contenders", transient=k + 1 < repeat)
    return times
