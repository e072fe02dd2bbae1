"""The two training tasks: a char-level language model and the adding problem.

Contract: a task knows its sizes ``(d, h, q)`` for ``init_params``, produces the batches of an epoch as a
pure function of ``(seed, epoch, index)`` (what makes resuming bit-exact), and turns one batch into
``(loss, grads, h_T)`` using only a generated module:

* :class:`LanguageModel`: ``loss_and_grads`` (softmax cross-entropy head of size ``len(vocab)``) on token ids;
  with sequential sampling ``h_T`` of one batch is the ``h0`` of the next (``carries_state``).
* :class:`Adding`: ``forward``, then the mean squared error of a linear readout ``y = h_T @ W_hq + b_q``
  (the module's ``head`` with q = 1), then ``backward`` with dH zero except at the last step. The readout's
  own gradient is the textbook linear rule (``adding_loss_and_grads``); the recurrence's is generated.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from . import data
from .config import Config
from .sample import generate

__all__ = ["Adding", "LanguageModel", "adding_batch", "adding_loss_and_grads", "fingerprint", "make_task"]

Array = NDArray[Any]

ADDING_BATCHES_PER_EPOCH = 100
ADDING_TEST_SIZE = 1000
ADDING_BASELINE = 1 / 6  # MSE of always predicting 1: Var(u1 + u2) = 2/12 for u ~ U(0, 1)
VALID_ROW = 1000  # held-out rows are at most this long
_TEST_STREAM = 2**32 - 1  # seeds the held-out set apart from every training epoch


class LanguageModel:
    """Next-character prediction on a text (the toy "MathMath..." when ``config.text`` is None).

    The last ``config.valid`` of the text is held out: never trained on, its perplexity is the validation
    figure (``valid_metrics``). The vocabulary comes from the whole text, so held-out characters are known.
    """

    metric = "perplexity"

    def __init__(self, config: Config, text: str | None = None, vocab: data.Vocab | None = None) -> None:
        self.config = config
        if config.text is None:
            self.text = data.TOY_TEXT
            self.vocab = vocab or data.Vocab(data.TOY_VOCAB, unk=False)
        else:
            self.text = data.read_text(config.text) if text is None else text
            self.vocab = vocab or data.Vocab.from_text(self.text)
        self.ids, self.held_out = data.split_held_out(self.vocab.encode(self.text), config.valid)
        need = data.min_length(config.batch, config.steps)
        if len(self.ids) < need:
            kept = f" (after holding out {len(self.held_out)} with --valid)" if len(self.held_out) else ""
            raise InputError(
                f"--text: {len(self.ids)} characters{kept} are too few for --batch {config.batch} x --steps "
                f"{config.steps}; need at least {need} (lower --batch or --steps)"
            )
        if config.valid > 0 and len(self.held_out) < 2:
            raise InputError(
                f"--valid {config.valid:g} holds out {len(self.held_out)} of {len(self.text)} characters; "
                "need at least 2 (raise --valid, or --valid 0 for none)"
            )
        self.primer = config.primer or data.default_primer(self.text)
        self.vocab.check_primer(self.primer)  # fails early if the primer cannot be encoded
        self.carries_state = config.sampling == "sequential"
        self.sizes = (len(self.vocab), config.hidden, len(self.vocab))
        self.tokens_per_batch = config.steps * config.batch

    @property
    def fingerprint(self) -> str:
        """sha256 of the training text: a resumed run must train on the same one (at any path)."""
        return fingerprint(self.text)

    def batches(self, epoch: int) -> list[tuple[Array, Array]]:
        c = self.config
        return data.batches_for_epoch(self.ids, c.batch, c.steps, c.sampling, c.seed, epoch)

    def step(
        self, module: ModuleType, params: Mapping[str, Array], batch: tuple[Array, Array], h0: Array
    ) -> tuple[float, dict[str, Array], Array]:
        X, Y = batch
        return module.loss_and_grads(params, X, Y, h0)

    def epoch_metrics(self, module: ModuleType, params: Mapping[str, Array], mean_loss: float) -> dict:
        return {"loss": mean_loss, "perplexity": _exp(mean_loss)}

    def valid_metrics(self, module: ModuleType, params: Mapping[str, Array]) -> dict:
        """Loss and perplexity on the held-out tail ({} without one): contiguous rows of it (``batch`` rows,
        more when a row would exceed ``VALID_ROW`` characters), each read from a zero state, every next
        character predicted (the generated ``loss``)."""
        if len(self.held_out) < 2:
            return {}
        X, Y = self.held_out[:-1], self.held_out[1:]
        # at least `batch` rows, at most VALID_ROW characters each (one long row would be a slow loop)
        wanted = max(self.config.batch, -(-len(X) // VALID_ROW))
        rows = max(1, min(wanted, len(X) // self.config.steps))
        T = len(X) // rows
        X, Y = (a[: rows * T].reshape(rows, T).T for a in (X, Y))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            loss = float(module.loss(params, X, Y))  # from zeros (every state, for several)
        return {"valid_loss": loss, "valid_perplexity": _exp(loss)}

    def sample(self, module: ModuleType, params: Mapping[str, Array], chars: int | None = None) -> str:
        """Greedy continuation of the primer, ``primer -> continuation`` (toy: 16 characters, else 50)."""
        chars = chars or (16 if self.config.text is None else 50)
        return f"{self.primer!r} -> {generate(module, params, self.vocab, self.primer, chars)!r}"


def fingerprint(text: str) -> str:
    """sha256 of a text, the identity of a run's data whatever path it is read from."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _exp(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def adding_batch(
    rng: np.random.Generator, length: int, n: int, dtype: Any = np.float64
) -> tuple[Array, Array]:
    """n sequences of the adding problem: X (length, n, 2) = (value, marker) and targets y (n,).

    Values are U(0, 1); the marker is 1 at one position in the first half and one in the second half;
    the target is the sum of the two marked values.
    """
    values = rng.uniform(0.0, 1.0, (length, n))
    cols = np.arange(n)
    first = rng.integers(0, length // 2, n)
    second = rng.integers(length // 2, length, n)
    marker = np.zeros((length, n))
    marker[first, cols] = 1.0
    marker[second, cols] = 1.0
    y = values[first, cols] + values[second, cols]
    return np.stack([values, marker], axis=-1).astype(dtype), y.astype(dtype)


def adding_loss_and_grads(
    module: ModuleType, params: Mapping[str, Array], X: Array, y: Array, h0: Array
) -> tuple[float, dict[str, Array], Array]:
    """MSE of the readout ``head(h_T)[:, 0]`` against y (n,), its gradients (every param key, ``h0``, ``X``)
    and h_T (n, h). The recurrence's gradients come from the generated ``backward``."""
    H, cache = module.forward(params, X, h0)
    h_T = H[-1]
    n = h_T.shape[0]
    residual = module.head(params, h_T)[:, 0] - y
    value = float(np.mean(residual * residual))
    dy = (2.0 / n) * residual  # (n,): d mean(r**2) / d y_hat
    dH = np.zeros_like(H)
    dH[-1] = np.outer(dy, params["W_hq"][:, 0])
    grads = module.backward(params, cache, dH)
    # linear readout y_hat = h_T @ W_hq + b_q: dW_hq = h_T^T dy, db_q = sum(dy)
    grads["W_hq"] = h_T.T @ dy[:, None]
    grads["b_q"] = np.array([dy.sum()], dtype=h_T.dtype)
    return value, grads, h_T.copy()


class Adding:
    """The adding problem of length ``config.length`` (Hochreiter & Schmidhuber 1997; Le et al. 2015)."""

    metric = "test_mse"
    carries_state = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sizes = (2, config.hidden, 1)
        self.tokens_per_batch = config.length * config.batch
        self.fingerprint = ""
        self.dtype = np.dtype(config.dtype)
        self.test = adding_batch(
            np.random.default_rng([config.seed, _TEST_STREAM]), config.length, ADDING_TEST_SIZE, self.dtype
        )

    def batches(self, epoch: int) -> Sequence[tuple[Array, Array]]:
        c = self.config
        # one generator per batch: fresh data every step, reproducible from (seed, epoch, index)
        return _LazyBatches(c.seed, epoch, c.length, c.batch, self.dtype)

    def step(
        self, module: ModuleType, params: Mapping[str, Array], batch: tuple[Array, Array], h0: Array
    ) -> tuple[float, dict[str, Array], Array]:
        X, y = batch
        return adding_loss_and_grads(module, params, X, y, h0)

    def predictions(self, module: ModuleType, params: Mapping[str, Array], X: Array) -> Array:
        H, _ = module.forward(params, X)  # from zeros
        return module.head(params, H[-1])[:, 0]

    def epoch_metrics(self, module: ModuleType, params: Mapping[str, Array], mean_loss: float) -> dict:
        X, y = self.test
        test = float(np.mean((self.predictions(module, params, X) - y) ** 2))
        return {"loss": mean_loss, "test_mse": test}

    def valid_metrics(self, module: ModuleType, params: Mapping[str, Array]) -> dict:
        return {}  # the test set of epoch_metrics is already held out

    def sample(self, module: ModuleType, params: Mapping[str, Array], chars: int = 3) -> str:
        """The first ``chars`` test sequences, ``target -> prediction: 1.277 -> 0.887, ...``."""
        X, y = self.test
        got = self.predictions(module, params, X[:, :chars])
        pairs = ", ".join(f"{t:.3f} -> {p:.3f}" for t, p in zip(y[:chars], got, strict=True))
        return f"target -> prediction: {pairs}"


class _LazyBatches(Sequence[tuple[Array, Array]]):
    """The batches of one adding-problem epoch, generated on access (a list would hold the whole epoch)."""

    def __init__(self, seed: int, epoch: int, length: int, batch: int, dtype: Any) -> None:
        self.key, self.length, self.batch, self.dtype = (seed, epoch), length, batch, dtype

    def __len__(self) -> int:
        return ADDING_BATCHES_PER_EPOCH

    def __getitem__(self, index: int) -> tuple[Array, Array]:  # type: ignore[override]
        if not isinstance(index, int) or not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([*self.key, index])
        return adding_batch(rng, self.length, self.batch, self.dtype)


def make_task(
    config: Config, vocab: data.Vocab | None = None, text: str | None = None
) -> LanguageModel | Adding:
    """The task of ``config``; ``vocab``: a language model's stored vocabulary (when resuming); ``text``: the
    contents of ``config.text`` when already read."""
    return LanguageModel(config, text, vocab) if config.task == "lm" else Adding(config)
