"""Text from a trained character-level language model: greedy or sampled continuations of a primer.

Contract: ``generate`` works on any ``model`` that exposes ``head(params, H)`` -> logits (..., q) and either
``step(params, x_t, state) -> state`` (streaming, one time step; ``state=None`` is zeros; what the generated
modules and unidirectional ``grusym.load(name, num_layers=...)`` models expose, whatever their states: the
top layer's ``OUTPUT`` state feeds the head) or only ``forward(params, X, h0) -> (H, cache)`` with X (T, n)
token ids and H (T, n, h) whose last row is the state to continue from. It reads the primer from a zero
state, then appends one character at a time, feeding each back in:

* ``temperature == 0``: the most likely character (greedy, deterministic, what the training log shows);
* ``temperature > 0``: a draw from ``softmax(logits / temperature)``, restricted to the ``top_k`` most likely
  characters when given; the draws come from ``numpy.random.default_rng(seed)``, so a seed repeats a sample.
  ``top_k`` at temperature 0 is an InputError naming both (greedy would ignore it).

The unknown token ``<unk>`` is never produced (no training target is unknown). A primer must consist of
characters of the model's vocabulary; any others are an :class:`~grusym.errors.InputError` naming them all.
``load_trained(checkpoint)`` (a checkpoint or its run's folder) gives a :class:`Trained` model whose
``sample(...)`` needs no training text and never retrains: the primer and length are free to change. It
returns the primer followed by the continuation, the text ``grusym sample`` prints; ``generate`` returns the
continuation alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .config import Config
from .data import UNK, Vocab

__all__ = ["Trained", "generate", "load_trained"]

Array = NDArray[Any]
DEFAULT_LENGTH = 200


def generate(
    model: Any,
    params: Mapping[str, Array],
    vocab: Vocab,
    primer: str,
    length: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
) -> str:
    """The ``length`` characters that follow ``primer``. params: a language model whose head has
    ``len(vocab)`` outputs; see the module docstring for temperature, top_k and seed."""
    _check_options(length, temperature, top_k, seed)
    ids = vocab.check_primer(primer)
    rng = np.random.default_rng(seed)
    banned = [vocab.tokens.index(UNK)] if UNK in vocab.tokens else []
    state, h = _advance(model, params, ids, None)
    out: list[int] = []
    for _ in range(length):
        logits = np.asarray(model.head(params, h)[0], dtype=np.float64)
        token = _choose(logits, temperature, top_k, rng, banned)
        out.append(token)
        state, h = _advance(model, params, np.array([token]), state)
    return vocab.decode(out)


def _advance(model: Any, params: Mapping[str, Array], ids: Array, state: Any) -> tuple[Any, Array]:
    """(state, output (1, h)) after reading ``ids`` from ``state`` (None: zeros): the one place that runs
    the recurrence, by ``step`` when the model streams, else by ``forward`` from the last output."""
    step = getattr(model, "step", None)
    if step is None:
        if state is None:
            state = np.zeros((1, params["W_hq"].shape[0]), dtype=params["W_hq"].dtype)
        H, _ = model.forward(params, ids[:, None], state)
        return H[-1], H[-1]
    for token in ids:
        state = step(params, np.array([token]), state)
    return state, _output(model, state)


def _output(model: Any, state: Any) -> Array:
    """The state the head reads: the ``OUTPUT`` one of several (an LSTM's h), of the top layer of a stack."""
    names = tuple(getattr(model, "STATES", ("h",)))
    out = state[names.index(getattr(model, "OUTPUT", names[0]))] if len(names) > 1 else state
    out = np.asarray(out)
    return out[-1] if out.ndim == 3 else out  # (layers, 1, h): the top layer's


def _choose(
    logits: Array, temperature: float, top_k: int | None, rng: np.random.Generator, banned: list[int]
) -> int:
    logits = logits.copy()
    logits[banned] = -np.inf
    if temperature == 0:
        return int(np.argmax(logits))
    if top_k is not None and top_k < logits.size:
        cut = np.partition(logits, -top_k)[-top_k]
        logits[logits < cut] = -np.inf
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        scaled = (logits - logits.max()) / temperature  # <= 0, so exp cannot overflow
        weights = np.exp(scaled)
    weights[~np.isfinite(weights)] = 0.0
    return int(rng.choice(logits.size, p=weights / weights.sum()))


def _check_options(length: Any, temperature: Any, top_k: Any, seed: Any) -> None:
    def integer(value: Any, name: str, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")

    integer(length, "--length", 0)
    integer(seed, "--seed", 0)
    if top_k is not None:
        integer(top_k, "--top-k", 1)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not np.isfinite(temperature)
        or temperature < 0
    ):
        raise InputError(f"--temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and temperature == 0:
        raise InputError(
            f"--top-k {top_k} needs --temperature T > 0: at temperature 0 (the default) the most likely "
            "character is always taken, so top-k would change nothing"
        )


@dataclass
class Trained:
    """A trained language model read from a checkpoint: the generated module, its parameters, the
    vocabulary and the primer its training log used."""

    module: Any
    params: dict[str, Array]
    vocab: Vocab
    primer: str
    config: Config

    def sample(
        self,
        primer: str | None = None,
        length: int = DEFAULT_LENGTH,
        *,
        temperature: float = 0.0,
        top_k: int | None = None,
        seed: int = 0,
    ) -> str:
        """``primer`` (default: the training log's primer) followed by ``length`` generated characters: what
        ``grusym sample`` prints. See :func:`generate` for the options (it returns the continuation alone)."""
        primer = self.primer if primer is None else primer
        return primer + generate(
            self.module,
            self.params,
            self.vocab,
            primer,
            length,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
        )


def load_trained(path: str | Path) -> Trained:
    """The language model saved in checkpoint ``path``, or in the run folder ``path`` (InputError for anything
    else)."""
    from .. import load
    from . import checkpoint

    ckpt = checkpoint.load(path)
    if ckpt.config.task != "lm":
        raise InputError(
            f"checkpoint {path} is a --task {ckpt.config.task} run; only a language model (--task lm) "
            "generates text"
        )
    vocab = Vocab.from_json(ckpt.vocab)
    primer = ckpt.primer or ckpt.config.primer or _most_frequent(vocab)
    return Trained(load(ckpt.config.variant), ckpt.params, vocab, primer, ckpt.config)


def _most_frequent(vocab: Vocab) -> str:
    # a checkpoint written before primers were stored: the text's most frequent character
    return next(t for t in vocab.tokens if t != UNK)
