"""What one benchmark run measured: the training-step run's :class:`Result` and the inference run's
:class:`InferenceResult` (seconds, bytes; the printed report with them)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .floor import Floor
from .memory import Memory
from .problems import Config

__all__ = ["InferenceResult", "Result"]


@dataclass
class Result:
    """Everything one :func:`grusym.bench.run` measured (seconds, bytes); ``report`` is the printed text."""

    config: Config
    dtype: str
    times: dict[str, list[float]]
    flops: dict[str, int]
    notes: list[str] = field(default_factory=list)
    floors: dict[str, Floor] = field(default_factory=dict)
    pause: float = 0.0
    codegen: dict[str, Any] | None = None
    imports: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    report: str = ""
    inputs: str = "ids"
    elementwise_calls: int = 0  # ufunc calls the elementwise bound replays (with phases)
    machine: str = ""  # the machine line of the report (CPUs, load, BLAS kernel and threads)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])


@dataclass
class InferenceResult:
    """Everything one :func:`grusym.bench.run_inference` measured: per case (a model and its sizes), each
    contender's seconds per call; ``errors`` the largest |H - torch's H| of each contender, ``entry`` the
    grusym function timed (``predict`` or ``forward``)."""

    times: dict[str, dict[str, list[float]]]
    errors: dict[str, dict[str, float]]
    threads: int
    pause: float
    entry: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    machine: str = ""
    report: str = ""

    def median(self, case: str, contender: str) -> float:
        return statistics.median(self.times[case][contender])

    def ratio(
        self, case: str, contender: str, against: str, of: Callable[[list[float]], float] = statistics.median
    ) -> float | None:
        """``of`` (median or min) of the contender's times over ``against``'s; None if one is absent."""
        row = self.times[case]
        if contender not in row or against not in row:
            return None
        return of(row[contender]) / of(row[against])
