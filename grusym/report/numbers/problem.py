"""The problems every measurement runs on: the toy text of Russell-Puleri and Puleri's tutorial.

Contract: :func:`report_params` is the generated ``init_params`` with every parameter vector that scales
another value set to 1 (``init_params`` draws vectors zero, which would cut the paths they scale and leave
a section with nothing to show); :func:`toy_tokens` repeats the text 'Math' into (T, n) inputs and
next-character targets (row i starts at character i); :func:`toy_batch` is the tutorial's own first batch
(2 rows, 3 steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.jacobian import factor_vectors
from ..context import Subject
from ..sources import TOY

__all__ = ["TOY_TEXT", "TOY_VOCAB", "report_params", "toy_batch", "toy_tokens"]

TOY_TEXT, TOY_VOCAB = "Math", "hatM"  # tutorial 000: {'h': 0, 'a': 1, 't': 2, 'M': 3}


def toy_tokens(T: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs X (T, n) and next-character targets Y (T, n) of the repeated text 'Math'; row i starts at i."""
    text = TOY_TEXT * ((T + n) // len(TOY_TEXT) + 2)
    ids = np.array([TOY_VOCAB.index(c) for c in text], dtype=np.int64)
    X = np.stack([ids[i : i + T] for i in range(n)], axis=1)
    Y = np.stack([ids[i + 1 : i + T + 1] for i in range(n)], axis=1)
    return X, Y


def toy_batch() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's first batch, time-major: X, Y (3, 2) ids; the text cut into 2 rows, 3 steps each.

    As in the tutorial's batching, the text is trimmed to whole batches of 2 x 3 characters and reshaped
    into 2 rows; targets are the inputs shifted by one character.
    """
    vocab, B, S = TOY["vocab"], TOY["batch"], TOY["steps"]
    ids = np.array([vocab.index(c) for c in TOY["text"]])
    per_row = len(ids) // (B * S) * S
    rows = ids[: B * per_row].reshape(B, per_row)
    nxt = np.roll(ids[: B * per_row], -1).reshape(B, per_row)  # the row's next characters
    return rows[:, :S].T.copy(), nxt[:, :S].T.copy()


def report_input_size(module: Any, d: int, h: int) -> int:
    """d, or h for a module that reads X elementwise (``INPUT_ELEMENTWISE``: d must equal h)."""
    return h if getattr(module, "INPUT_ELEMENTWISE", False) else d


def report_params(sub: Subject, d: int, h: int, q: int, *, seed: int, scale: float) -> dict[str, Any]:
    """``init_params(d, h, q, seed, scale)`` of the subject's module, scaling vectors set to 1.

    A cell that reads X elementwise (SRU) exists only for d == h: its input is h wide, token ids one-hot
    rows of width h of which the problem's d symbols occur."""
    d = report_input_size(sub.module, d, h)
    params: dict[str, Any] = sub.module.init_params(d, h, q, seed=seed, scale=scale)
    for v in factor_vectors(sub.cell):
        params[v] = np.ones_like(params[v])
    return params
