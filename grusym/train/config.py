"""The configuration of a training run: one frozen record, its per-task defaults, and its validation.

Contract: ``Config`` holds everything that determines a run's result (a checkpoint stores it, and a resumed
run must agree with it); ``make_config(**options)`` fills options left as ``None`` from the task's defaults
and raises :class:`~grusym.errors.InputError` naming the option (``--hidden``, ...) for any bad value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import InputError

__all__ = ["DEFAULTS", "Config", "make_config"]

TASKS = ("lm", "adding")
OPTIMIZERS = ("sgd", "adam")
SAMPLINGS = ("sequential", "random")
DTYPES = ("float64", "float32")

# the char-LM hyperparameters of Dive into Deep Learning (d2l) are the base; the toy is that of
# "GRUs explained using matrices" (batch 2, sequence 3, hidden 2), its 20 characters too few to hold out any
DEFAULTS: dict[str, dict[str, Any]] = {
    "toy": {"hidden": 2, "steps": 3, "batch": 2, "epochs": 200, "primer": "Ma", "valid": 0.0},
    "lm": {
        "hidden": 256,
        "steps": 35,
        "batch": 32,
        "epochs": 20,
        "optimizer": "sgd",
        "clip": 1.0,
        "sampling": "sequential",
        "valid": 0.1,
    },
    "adding": {"hidden": 32, "length": 100, "batch": 64, "epochs": 10, "optimizer": "adam"},
}
# float32: what frameworks train in, and faster at the text's size; the gradient checks stay in float64
_COMMON = {"variant": "gru", "seed": 0, "scale": 0.01, "clip": 1.0, "dtype": "float32"}
LEARNING_RATES = {"sgd": 1.0, "adam": 0.01}  # the default follows the optimiser: d2l's SGD, Adam's usual
# options that mean nothing for the other task: refused rather than silently stored in the checkpoint
ONLY_FOR = {"lm": ("text", "steps", "sampling", "primer", "valid"), "adding": ("length",)}
MAX_VALID = 0.5  # hold out at most half of a text: the rest is what the model learns from


@dataclass(frozen=True)
class Config:
    """Everything that decides the result of a run (``--max-seconds`` and ``--out`` do not)."""

    task: str = "lm"
    variant: str = "gru"
    text: str | None = None  # None: the built-in toy text "MathMath..."
    hidden: int = 2
    steps: int = 3  # sequence length of a language-model batch (d2l's num_steps)
    length: int = 0  # sequence length of the adding problem
    batch: int = 2
    epochs: int = 200
    lr: float = 1.0
    optimizer: str = "sgd"
    clip: float = 1.0  # global gradient-norm threshold; 0 turns clipping off
    sampling: str = "sequential"
    seed: int = 0
    scale: float = 0.01  # standard deviation of the initial weights (d2l)
    dtype: str = "float32"
    primer: str = ""
    valid: float = 0.0  # fraction of the text held out (its tail), never trained on; 0: none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Rebuild (and re-validate) a config stored by :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"config has unknown fields {unknown}")
        return _validate(cls(**data))


def make_config(**options: Any) -> Config:
    """A validated :class:`Config` from options; ``None`` (or absent) takes the task's default.

    Task ``"lm"`` without ``text`` is the toy ("MathMath..."). Numbers may be given as strings (the CLI's
    values).
    """
    task = options.get("task") or "lm"
    if task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    preset = dict(_COMMON)
    preset.update(DEFAULTS["lm"] if task == "lm" else DEFAULTS["adding"])
    if task == "lm" and options.get("text") is None:
        preset.update(DEFAULTS["toy"])
    unknown = sorted(set(options) - {f.name for f in fields(Config)})
    if unknown:
        raise InputError(f"unknown options {unknown}")
    given = {k: v for k, v in options.items() if v is not None}
    unset = {f.name: f.default for f in fields(Config)}  # a stored config carries these for the other task
    for other, names in ONLY_FOR.items():
        stray = [f"--{n}" for n in names if n in given and given[n] != unset[n] and other != task]
        if stray:
            raise InputError(f"{', '.join(stray)} only applies to --task {other}, not {task}")
    values = {**preset, **given, "task": task}
    if "lr" not in values:
        values["lr"] = LEARNING_RATES.get(str(values.get("optimizer")), 1.0)  # a bad optimizer is named below
    converted = {f.name: _convert(f.name, values[f.name], f.type) for f in fields(Config) if f.name in values}
    return _validate(Config(**converted))


def _convert(name: str, value: Any, kind: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        expected = "an integer" if kind == "int" else "a number"
        raise InputError(f"--{name} must be {expected}, got {value!r}") from None
    return value


def _validate(c: Config) -> Config:
    def positive(name: str, minimum: int = 1) -> None:
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise InputError(f"--{name} must be an integer >= {minimum}, got {v!r}")

    for name in ("hidden", "batch", "epochs"):
        positive(name)
    positive("seed", 0)
    if c.task == "lm":
        positive("steps")
    else:
        positive("length", 2)  # one marker in each half needs two positions
    for name, allowed in (
        ("task", TASKS),
        ("optimizer", OPTIMIZERS),
        ("sampling", SAMPLINGS),
        ("dtype", DTYPES),
    ):
        if getattr(c, name) not in allowed:
            raise InputError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(c, name)!r}")
    v = c.valid
    if not isinstance(v, float) or not math.isfinite(v) or not 0 <= v <= MAX_VALID:
        raise InputError(f"--valid must be a fraction in [0, {MAX_VALID:g}], got {v!r}")
    for name, low in (("lr", "> 0"), ("scale", "> 0"), ("clip", ">= 0")):
        v = getattr(c, name)
        if not isinstance(v, float) or not math.isfinite(v) or (v < 0 if low == ">= 0" else v <= 0):
            raise InputError(f"--{name} must be a finite number {low}, got {v!r}")
    if not isinstance(c.variant, str):
        raise InputError(f"--variant must be a variant name, got {c.variant!r}")
    from ..generated import CELLS  # every built-in cell: the GRU variants and lstm

    if c.variant not in CELLS:
        raise InputError(f"--variant: unknown variant {c.variant!r}; known variants: {', '.join(CELLS)}")
    if c.text is not None and (not isinstance(c.text, str) or not c.text.strip()):
        raise InputError(f"--text must name a file, got {c.text!r}")
    if c.task == "lm" and not isinstance(c.primer, str):
        raise InputError(f"--primer must be text, got {c.primer!r}")
    return c
