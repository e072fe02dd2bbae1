"""Text data for the char-level language model: reading, the vocabulary, and batches.

Contract: ``read_text`` returns the contents of a UTF-8 text file or raises :class:`~grusym.errors.InputError`
saying what is wrong with it (missing, a folder, empty, binary, not UTF-8). ``SAMPLE_TEXT`` is the path of the
text shipped with the package (chapters 1-11 of *Pride and Prejudice*, public domain; see
``grusym/data/README.md``). A :class:`Vocab` maps characters to ids; in a text the characters it does not know
map to its unknown token, while a primer must consist of known characters (``check_primer``).
``split_held_out`` keeps the tail of a text apart for validation. Batches are pairs ``(X, Y)`` of time-major
token ids, ``X, Y: (T, n)`` int64 with ``Y`` the next character of ``X``:

* ``sequential_batches``: the corpus is cut into ``n`` contiguous rows, and batch ``k + 1`` continues each row
  exactly where batch ``k`` ended, so the last hidden state of one batch is the right first state of the next
  (truncated BPTT, d2l's ``seq_data_iter_sequential``);
* ``random_batches``: subsequences in random order, unrelated from batch to batch (start from zeros).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import fileio
from ..errors import InputError

__all__ = [
    "SAMPLE_TEXT",
    "TOY_TEXT",
    "TOY_VOCAB",
    "UNK",
    "Vocab",
    "batches_for_epoch",
    "default_primer",
    "min_length",
    "one_hot",
    "random_batches",
    "read_text",
    "sequential_batches",
    "split_held_out",
]

Ids = NDArray[np.int64]
Batch = tuple[Ids, Ids]

TOY_TEXT = "Math" * 5  # the toy of "GRUs explained using matrices": "MathMathMathMathMath"
TOY_VOCAB = ("h", "a", "t", "M")  # that tutorial's character dictionary, in its order
UNK = "<unk>"  # longer than one character, so it never collides with a character of the text
SAMPLE_TEXT = Path(__file__).resolve().parent.parent / "data" / "pride_and_prejudice_1-11.txt"
PRIMER_CHARS = 16  # a default primer holds whole words up to about this many characters


def read_text(path: str | Path) -> str:
    """The contents of the UTF-8 text file ``path`` (checked by :func:`grusym.fileio.read_text`)."""
    return fileio.read_text(path, what="--text")


class Vocab:
    """Characters <-> ids. ``tokens[i]`` is the character of id ``i``; ``unk`` (id 0) stands for unknown ones.

    ``Vocab.from_text(text)`` puts the unknown token first and then the characters by falling frequency
    (ties in code-point order), as d2l does; ``Vocab(TOY_VOCAB, unk=False)`` is the toy tutorial's exact
    dictionary.
    """

    def __init__(self, tokens: Sequence[str], *, unk: bool = True) -> None:
        tokens = list(tokens)
        if unk and (not tokens or tokens[0] != UNK):
            tokens.insert(0, UNK)
        if not tokens:
            raise InputError("a vocabulary needs at least one token")
        bad = [t for t in tokens if not isinstance(t, str) or (len(t) != 1 and not (unk and t == UNK))]
        if bad or len(set(tokens)) != len(tokens):
            raise InputError(f"vocabulary tokens must be distinct single characters, got {tokens!r}")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.unk = unk
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        counts = Counter(text)
        return cls([c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))], unk=True)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.tokens, self.unk) == (other.tokens, other.unk)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, unk={self.unk})"

    def encode(self, text: Iterable[str], what: str = "text") -> Ids:
        """Ids (len(text),) int64 of the characters of ``text``; unknown ones become ``unk`` (id 0)."""
        ids = self._ids
        if self.unk:
            return np.fromiter((ids.get(c, 0) for c in text), dtype=np.int64)
        try:
            return np.fromiter((ids[c] for c in text), dtype=np.int64)
        except KeyError as exc:
            raise InputError(
                f"{what}: character {exc.args[0]!r} is not in the vocabulary {''.join(self.tokens)!r}"
            ) from None

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary, in order of appearance."""
        return [c for c in dict.fromkeys(text) if c not in self._ids or c == UNK]

    def check_primer(self, primer: str, what: str = "--primer") -> Ids:
        """Ids of ``primer``; InputError naming every character the model has never seen (even with an
        unknown token: a primer of unknowns would condition the model on a token it never read)."""
        if not isinstance(primer, str) or not primer:
            raise InputError(f"{what} must hold at least one character")
        missing = self.unknown(primer)
        if missing:
            known = "".join(t for t in self.tokens if t != UNK)
            raise InputError(
                f"{what}: {', '.join(map(repr, missing))} {'is' if len(missing) == 1 else 'are'} not in the "
                f"model's vocabulary of {len(known)} characters {known!r}"
            )
        return self.encode(primer, what)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def to_json(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "unk": self.unk}

    @classmethod
    def from_json(cls, data: Any) -> Vocab:
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise InputError(
                f"a stored vocabulary must be {{'tokens': [...], 'unk': bool}}, got {data!r:.80}"
            )
        return cls(data["tokens"], unk=bool(data.get("unk")))


def default_primer(text: str) -> str:
    """A readable primer from ``text``: the whole words (up to about 16 characters) that open its first
    line holding a letter or digit, followed by the space after them when there is one."""
    for line in text.splitlines():
        words = line.split()
        if not any(ch.isalnum() for ch in line):
            continue
        if len(words[0]) >= PRIMER_CHARS:
            return words[0][:PRIMER_CHARS]
        used = 1
        while used < len(words) and len(" ".join(words[: used + 1])) <= PRIMER_CHARS:
            used += 1
        return " ".join(words[:used]) + (" " if used < len(words) else "")
    return text[: min(PRIMER_CHARS, len(text))]


def split_held_out(ids: Ids, fraction: float) -> tuple[Ids, Ids]:
    """(training ids, held-out ids): the last ``round(fraction * len(ids))`` ids are held out."""
    held = round(fraction * len(ids))
    return ids[: len(ids) - held], ids[len(ids) - held :]


def one_hot(X: Ids, size: int, dtype: Any = np.float64) -> NDArray[Any]:
    """One-hot rows (T, n, size) of token ids X (T, n): the generated functions' float input form."""
    out = np.zeros((*X.shape, size), dtype=dtype)
    np.put_along_axis(out, X[..., None], 1, axis=-1)
    return out


def min_length(batch: int, steps: int) -> int:
    """The fewest tokens that give at least one batch for every starting offset in [0, steps)."""
    return (batch + 1) * steps


def sequential_batches(ids: Ids, batch: int, steps: int, offset: int = 0) -> list[Batch]:
    """Contiguous partitioning: ``n = batch`` rows of the corpus from ``offset``; batch k holds columns
    [k*steps, (k+1)*steps) of every row. Returns a list of ``(X, Y)``, each (steps, batch)."""
    usable = (len(ids) - offset - 1) // batch * batch
    rows_x = ids[offset : offset + usable].reshape(batch, -1)
    rows_y = ids[offset + 1 : offset + 1 + usable].reshape(batch, -1)
    count = rows_x.shape[1] // steps
    return [
        (
            np.ascontiguousarray(rows_x[:, k * steps : (k + 1) * steps].T),
            np.ascontiguousarray(rows_y[:, k * steps : (k + 1) * steps].T),
        )
        for k in range(count)
    ]


def random_batches(ids: Ids, batch: int, steps: int, rng: np.random.Generator) -> list[Batch]:
    """Random partitioning: subsequences of length ``steps`` from a random offset, in random order."""
    offset = int(rng.integers(0, steps))
    starts = np.arange(offset, len(ids) - steps, steps)  # each start needs steps + 1 tokens
    starts = starts[rng.permutation(len(starts))]
    out = []
    for k in range(len(starts) // batch):
        s = starts[k * batch : (k + 1) * batch]
        cols = s[None, :] + np.arange(steps)[:, None]  # (steps, batch)
        out.append((ids[cols], ids[cols + 1]))
    return out


def batches_for_epoch(ids: Ids, batch: int, steps: int, sampling: str, seed: int, epoch: int) -> list[Batch]:
    """The batches of epoch ``epoch``: a pure function of its arguments (what makes resuming bit-exact).

    Sequential partitioning starts at a random offset in [0, steps) each epoch, as d2l does.
    """
    rng = np.random.default_rng([seed, epoch])
    if sampling == "sequential":
        return sequential_batches(ids, batch, steps, int(rng.integers(0, steps)))
    return random_batches(ids, batch, steps, rng)
