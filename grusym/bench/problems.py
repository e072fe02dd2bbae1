"""The sizes the training-step benchmark runs at, and the problem each contender gets: token ids, targets and
zero initial states drawn from one seed, so every contender computes on the same data."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["CONFIGS", "INPUTS", "Config", "as_inputs", "initial", "problem"]


@dataclass(frozen=True)
class Config:
    """A benchmark size: T steps, batch n, vocabulary V (one-hot inputs / token ids and classes), hidden h."""

    name: str
    T: int
    n: int
    V: int
    h: int
    repeat: int  # default number of interleaved timed calls per contender
    Ts: tuple[int, ...]  # sequence lengths of the memory-versus-T measurement
    pause: float = 0.15  # seconds of sleep before each timed call: OpenBLAS workers spin ~0.1 s after a call

    def describe(self) -> str:
        return f"{self.name} (T={self.T}, n={self.n}, V={self.V}, h={self.h})"


CONFIGS = {
    c.name: c
    for c in (
        # the seed's toy task; no sleep: OpenBLAS does not thread matmuls this small, and a sleep only adds
        # thread wake-ups to torch's step (0.7 ms instead of its 0.28 ms in a loop)
        Config("toy", T=3, n=2, V=4, h=2, repeat=200, Ts=(3, 6, 12, 24), pause=0.0),
        Config("d2l", T=35, n=32, V=28, h=256, repeat=15, Ts=(9, 18, 35, 70)),  # d2l chapter 9 GRU
        Config("big", T=64, n=64, V=96, h=512, repeat=5, Ts=(16, 32, 64)),
    )
}

INPUTS = ("ids", "onehot")  # token ids, or the same tokens as one-hot float rows (T, n, V)


def problem(cfg: Config, dtype: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids X (T, n) and targets Y (T, n) in [0, V), and h0 = 0 (n, h) of ``dtype``."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, cfg.V, (cfg.T, cfg.n))
    Y = rng.integers(0, cfg.V, (cfg.T, cfg.n))
    return X, Y, np.zeros((cfg.n, cfg.h), dtype=dtype)


def as_inputs(X: np.ndarray, V: int, dtype: Any, inputs: str) -> np.ndarray:
    """X as the step receives it: the ids themselves, or one-hot float rows built once, outside the timing."""
    return X if inputs == "ids" else np.eye(V, dtype=dtype)[X]


def initial(m: ModuleType, h0: np.ndarray) -> Any:
    """h0 for a one-state cell, the tuple of zero states (h0, c0, ...) for a cell with several."""
    return h0 if len(m.STATES) == 1 else tuple(np.zeros_like(h0) for _ in m.STATES)
