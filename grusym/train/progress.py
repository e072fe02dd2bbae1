"""Run control for the training loop: a progress display and Ctrl-C deferred to a safe point.

Contract: ``Progress`` shows a tqdm bar when tqdm is installed and stderr is a terminal, otherwise a plain
status line on stderr at most every ``STATUS_SECONDS``; its ``write`` prints a line without breaking the bar.
``deferred_sigint()`` turns the first SIGINT into a flag (the loop saves a checkpoint, then stops); a second
SIGINT raises ``KeyboardInterrupt`` at once. The previous handler is restored on exit.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["STATUS_SECONDS", "Progress", "deferred_sigint"]

STATUS_SECONDS = 10.0  # status lines at most this often; the loop logs an epoch line at least this often


@contextmanager
def deferred_sigint() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a flag the loop checks between steps; a second one interrupts at once."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


class Progress:
    """A tqdm bar when tqdm is installed and stderr is a terminal; otherwise a status line now and then."""

    def __init__(self, total: int, initial: int, log: Callable[[str], None]) -> None:
        self.log, self.bar, self.last = log, None, time.perf_counter()
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, initial=initial, unit="step", leave=False, dynamic_ncols=True)
        self.total = total

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif time.perf_counter() - self.last >= STATUS_SECONDS:
            self.last = time.perf_counter()
            print(f"  step {step}/{self.total}  loss {loss:.4f}", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
