"""Peak memory of one training step versus T (tracemalloc), its straight-line fit, and what forward keeps."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import load, runtime
from .problems import Config, initial, problem

__all__ = ["Memory", "memory_vs_T", "model_memory_vs_T"]


@dataclass(frozen=True)
class Memory:
    """Peak traced memory of one cold ``loss_and_grads`` call for each T, and its straight-line fit."""

    Ts: tuple[int, ...]
    peaks: tuple[int, ...]
    slope: float  # bytes per time step
    intercept: float
    worst_residual: float  # largest |peak - fit| / peak
    kept_per_step: float  # bytes per time step of the arrays forward's cache keeps for BPTT
    workspace_per_step: dict[str, float]  # workspace buffers that grow with T, bytes per time step


def _fit(Ts: Sequence[int], peaks: Sequence[int]) -> tuple[float, float, float]:
    slope, intercept = np.polyfit(np.array(Ts, float), np.array(peaks, float), 1)
    fit = slope * np.array(Ts) + intercept
    return float(slope), float(intercept), float(np.max(np.abs(np.array(peaks) - fit) / np.array(peaks)))


def memory_vs_T(variant: str, cfg: Config, dtype: Any, Ts: Sequence[int] | None = None) -> Memory:
    """tracemalloc peak of one step after dropping every workspace buffer, for several T (inputs excluded)."""
    m = load(variant)
    Ts = tuple(Ts or cfg.Ts)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=0, dtype=dtype)
    peaks, kept, held = [], [], []
    for T in Ts:
        X, Y, h0 = problem(Config(cfg.name, T, cfg.n, cfg.V, cfg.h, 1, ()), dtype)
        runtime.clear_workspaces()
        gc.collect()
        tracemalloc.start()
        try:
            m.loss_and_grads(params, X, Y, initial(m, h0))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        held.append(m._WORKSPACE.buffers())
        _, cache = m.forward(params, X, initial(m, h0))
        kept.append(sum(a.nbytes for k, a in cache.items() if isinstance(a, np.ndarray) and k != "X") / T)
    span = Ts[-1] - Ts[0]
    per_step = {k: (b - held[0].get(k, 0)) / span for k, b in held[-1].items() if b != held[0].get(k, 0)}
    return Memory(Ts, tuple(peaks), *_fit(Ts, peaks), float(np.mean(kept)), per_step)


def model_memory_vs_T(variant: str, cfg: Config, dtype: Any, num_layers: int, bidirectional: bool) -> Memory:
    """tracemalloc peak of one step of a whole model for several T, as :func:`memory_vs_T` (no workspaces)."""
    m = load(variant, num_layers, bidirectional)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=0, dtype=dtype)
    peaks, kept = [], []
    for T in cfg.Ts:
        X, Y, _ = problem(Config(cfg.name, T, cfg.n, cfg.V, cfg.h, 1, ()), dtype)
        gc.collect()
        tracemalloc.start()
        try:
            m.loss_and_grads(params, X, Y)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        _, cache = m.forward(params, X)
        arrays = [a for c in cache["cells"] for k, a in c.items() if isinstance(a, np.ndarray) and k != "X"]
        kept.append(sum(a.nbytes for a in arrays) / T)
    return Memory(tuple(cfg.Ts), tuple(peaks), *_fit(cfg.Ts, peaks), float(np.mean(kept)), {})
