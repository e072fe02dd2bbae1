"""Training checkpoints: one ``.npz`` holding everything a run needs to continue bit-for-bit.

Contract: ``save`` writes atomically (:func:`grusym.fileio.atomic_write_bytes`: a reader sees the old file or
the whole new one); ``load`` never unpickles (``allow_pickle=False``) and turns anything that is not a
complete checkpoint of this format (missing, truncated, corrupted, a foreign ``.npz``, a newer version,
parameters that do not fit the variant) into :class:`~grusym.errors.InputError` naming the file. Wherever a
checkpoint is read, a run's folder (what ``grusym train`` prints) stands for its ``checkpoint.npz``
(:func:`locate`).

Layout: ``meta`` is UTF-8 JSON as uint8 (format tag, version, config, vocabulary, position, progress,
history, samples, the primer the samples continue, the absolute path the text was read from); ``param/<name>``
the model; ``optim/<name>`` the optimiser state; ``hidden`` the carried hidden state (n, h), and
``hidden/1``, ... the cell's further states in its ``STATES`` order (an LSTM's c). Every random draw is a
function of ``(seed, epoch, index)``, so the position ``(epoch, batch)`` together with the seed is the RNG
state.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GrusymError, InputError
from ..fileio import atomic_write_bytes
from .config import Config

__all__ = ["FILE", "FORMAT", "VERSION", "Checkpoint", "load", "locate", "save"]

Array = NDArray[Any]

FILE = "checkpoint.npz"  # its name in a run's folder
FORMAT = "grusym-train-checkpoint"
VERSION = 3  # 2 added the held-out fraction (config "valid"), the primer and the text's absolute path;
# 3 the epoch of each trace point (epochs differ in length, so a step count alone misplaces it)
READABLE = (1, 2, 3)  # a version-1 checkpoint held out nothing: its config's missing "valid" means 0


@dataclass
class Checkpoint:
    """The state of a run after ``step`` optimiser steps: epoch ``epoch`` has finished ``batch`` batches."""

    config: Config
    params: dict[str, Array]
    optimizer: dict[str, Array]
    hidden: tuple[Array, ...] | None  # the carried states, in the module's STATES order
    epoch: int = 0
    batch: int = 0
    step: int = 0
    vocab: dict[str, Any] | None = None
    fingerprint: str = ""  # sha256 of the training text: what identifies it, at whatever path
    primer: str = ""  # the primer of the logged samples (the default one when none was given)
    text_path: str = ""  # the absolute path the text was last read from (a hint for resuming elsewhere)
    progress: dict[str, float] = field(default_factory=dict)  # running sums of the unfinished epoch and run
    history: list[dict[str, Any]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    trace: list[list[float]] = field(default_factory=list)  # [step, epoch, mean loss since the last point]


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt.config.to_dict(),
        "epoch": ckpt.epoch,
        "batch": ckpt.batch,
        "step": ckpt.step,
        "vocab": ckpt.vocab,
        "fingerprint": ckpt.fingerprint,
        "primer": ckpt.primer,
        "text_path": ckpt.text_path,
        "progress": ckpt.progress,
        "history": ckpt.history,
        "samples": ckpt.samples,
        "trace": ckpt.trace,
    }
    arrays: dict[str, Array] = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    arrays.update({f"param/{k}": v for k, v in ckpt.params.items()})
    arrays.update({f"optim/{k}": v for k, v in ckpt.optimizer.items()})
    for k, state in enumerate(ckpt.hidden or ()):
        arrays["hidden" if k == 0 else f"hidden/{k}"] = state
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _states(arrays: dict[str, Array]) -> tuple[Array, ...] | None:
    """The carried states ``hidden``, ``hidden/1``, ... (None when the run carries none)."""
    if "hidden" not in arrays:
        return None
    states = [arrays["hidden"]]
    while f"hidden/{len(states)}" in arrays:
        states.append(arrays[f"hidden/{len(states)}"])
    return tuple(states)


def locate(path: str | Path) -> Path:
    """The checkpoint ``path`` names: a file as given, a run's folder as its ``checkpoint.npz``. A folder of
    several runs (``--variant a,b`` trains each into a subfolder) is an InputError listing them."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / FILE).is_file():
        return path / FILE
    runs = sorted(p.parent for p in path.glob(f"*/{FILE}") if p.is_file())
    if runs:
        raise InputError(
            f"checkpoint {path} is a folder of {len(runs)} runs, each in a subfolder (--variant a,b trains "
            "one per variant); give one of them: " + ", ".join(str(run) for run in runs)
        )
    raise InputError(f"checkpoint {path} is a folder without a {FILE}: give a run's folder or its {FILE}")


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save` (or the one in a run's folder); InputError for anything
    else."""
    path = locate(path)
    what = f"checkpoint {path}"
    if not path.is_file():
        raise InputError(f"{what}: no such file" if not path.exists() else f"{what} is not a file")
    # our own handle: np.load leaves a file it opened unclosed when the zip is damaged (a fuzz finding)
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would take anything else for a .npy or a pickle
            raise InputError(f"{what} is not an .npz file (no zip signature); corrupted or not a checkpoint")
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise InputError(
                    f"{what} holds pickled objects; refusing to load it (not a grusym checkpoint)"
                ) from None
            raise InputError(f"{what} is not a readable .npz file ({exc})") from None
        except Exception as exc:  # untrusted bytes: zipfile and numpy raise many kinds on damaged input
            raise InputError(
                f"{what} is corrupted or not an .npz file ({type(exc).__name__}: {exc})"
            ) from None
    meta_bytes = arrays.pop("meta", None)
    if meta_bytes is None or meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
        raise InputError(f"{what} is not a grusym training checkpoint (no grusym metadata)")
    try:
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{what} has unreadable metadata (corrupted)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{what} is not a grusym training checkpoint (format tag missing)")
    if meta.get("version") not in READABLE:
        raise InputError(
            f"{what} has format version {meta.get('version')!r}; this grusym {_version()} reads versions "
            f"{', '.join(map(str, READABLE))} (written by another grusym release)"
        )
    try:
        ckpt = Checkpoint(
            config=Config.from_dict(meta["config"]),
            params={k[6:]: v for k, v in arrays.items() if k.startswith("param/")},
            optimizer={k[6:]: v for k, v in arrays.items() if k.startswith("optim/")},
            hidden=_states(arrays),
            epoch=_count(meta["epoch"]),
            batch=_count(meta["batch"]),
            step=_count(meta["step"]),
            vocab=meta["vocab"],
            fingerprint=str(meta["fingerprint"]),
            primer=_text(meta.get("primer", "")),
            text_path=_text(meta.get("text_path", "")),
            progress=_numbers(meta["progress"]),
            history=[_record(r) for r in meta["history"]],
            samples=[s if isinstance(s, str) else str(s) for s in meta["samples"]],
            trace=[_point(p) for p in meta["trace"]],
        )
        _check_params(ckpt)
    except GrusymError as exc:
        raise InputError(f"{what} is inconsistent: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{what} has incomplete metadata ({type(exc).__name__}: {exc})") from None
    return ckpt


def _version() -> str:
    from .. import __version__

    return __version__


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"expected text, got {value!r:.80}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"expected a non-negative integer, got {value!r}")
    return value


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise InputError(f"progress must map names to numbers, got {value!r:.80}")
    return {str(k): float(v) for k, v in value.items()}


def _record(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or "epoch" not in value:
        raise InputError(f"a history record must be a dict with an epoch, got {value!r:.80}")
    _count(value["epoch"])
    _numbers({k: v for k, v in value.items() if k != "epoch"})
    return value


def _point(value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise InputError(f"a trace point must be [step, epoch, loss] (or [step, loss]), got {value!r:.80}")
    _count(value[0])
    _numbers(dict(enumerate(value[1:])))
    return value


def _check_params(ckpt: Checkpoint) -> None:
    from .. import load as load_variant
    from ..validate import check_params

    module = load_variant(ckpt.config.variant)
    _, dims, dtype = check_params(module.PARAMS, ckpt.params, allow_complex=False)
    if dtype != np.dtype(ckpt.config.dtype):
        raise InputError(f"parameters are {dtype} but the config says {ckpt.config.dtype}")
    if ckpt.config.task == "lm":
        from .data import Vocab

        size = len(Vocab.from_json(ckpt.vocab))
        if not dims["d"] == dims["q"] == size:
            raise InputError(
                f"a vocabulary of {size} does not fit parameters with d = {dims['d']}, q = {dims['q']}"
            )
    if dims["h"] != ckpt.config.hidden:
        raise InputError(f"parameters have hidden size {dims['h']} but the config says {ckpt.config.hidden}")
    shape, states = (ckpt.config.batch, dims["h"]), len(module.STATES)
    if ckpt.hidden is not None and len(ckpt.hidden) != states:
        raise InputError(
            f"{ckpt.config.variant} carries {states} state(s), the checkpoint holds {len(ckpt.hidden)}"
        )
    for hidden in ckpt.hidden or ():
        if hidden.shape != shape or hidden.dtype != dtype or not np.isfinite(hidden).all():
            raise InputError(
                f"carried hidden state must be finite {dtype} of shape {shape}, "
                f"got {hidden.dtype} {hidden.shape}"
            )
