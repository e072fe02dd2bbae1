"""Text generation from a trained language model, using only the generated ``forward`` and ``head``.

Contract: ``predict`` warms the state up on the whole primer (one ``forward`` call from zeros), then appends
the most likely next character ``num_chars`` times, feeding each back in (greedy, as d2l's ``predict_ch8``
and seed 000's primer demo): the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .data import Vocab

__all__ = ["predict"]


def predict(
    module: ModuleType, params: Mapping[str, NDArray[Any]], vocab: Vocab, primer: str, num_chars: int
) -> str:
    """The ``num_chars`` characters that follow ``primer`` (greedy decoding). params: a trained LM whose
    head has ``len(vocab)`` outputs."""
    if not primer:
        raise InputError("--primer must hold at least one character")
    if isinstance(num_chars, bool) or not isinstance(num_chars, int) or num_chars < 0:
        raise InputError(f"num_chars must be a non-negative integer, got {num_chars!r}")
    ids = vocab.encode(primer, "--primer")
    dtype = params["W_hq"].dtype
    h0 = np.zeros((1, params["W_hq"].shape[0]), dtype=dtype)
    H, _ = module.forward(params, ids[:, None], h0)
    h = H[-1]
    out = []
    for _ in range(num_chars):
        token = int(np.argmax(module.head(params, h)[0]))
        out.append(token)
        H, _ = module.forward(params, np.array([[token]]), h)
        h = H[-1]
    return vocab.decode(out)
