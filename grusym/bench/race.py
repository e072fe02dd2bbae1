"""Training throughput: ``grusym train`` against the same model trained in PyTorch, by perplexity over time.

Contract: :func:`race` trains ``gru_reset_after`` (the cell ``torch.nn.GRU`` computes) on a text with the
d2l hyperparameters (the ``lm`` task's defaults: hidden 256, 35 steps, batch 32, SGD lr 1, clipping at
global norm 1, sequential batches carrying the hidden state within an epoch) twice, one after the other in
this process:

* ``grusym.train.train`` itself, stopped by ``max_seconds``;
* the same model in torch: the same initial parameters (``init_params`` through
  :func:`~grusym.interop.to_torch_gru`), the same batches in the same order, ``nn.GRU`` + ``nn.Linear`` +
  ``cross_entropy`` with autograd, the same clipping (``clip_grad_norm_``) and plain SGD, for its own
  number of seconds.

The verdict compares held-out perplexities: the text's tail (``config.valid``, 10 % by the ``lm`` defaults)
is never trained on by either side, and each side's final model (after its budget) is scored on it by the
same evaluator (the task's ``valid_metrics``, the generated ``loss``; torch's weights are converted back with
:func:`~grusym.interop.from_torch_gru`). Both sides also report the training perplexity of every finished
epoch (exp of the mean batch loss over the epoch) with the wall time at its end. Nothing here asserts a time.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import InputError
from .options import TORCH_HINT
from .timing import Progress

__all__ = ["Race", "race"]

VARIANT = "gru_reset_after"


@dataclass(frozen=True)
class Race:
    """(seconds at the end of the epoch, training perplexity of the epoch) of each side, and the held-out
    perplexity of each side's final model."""

    grusym: list[tuple[float, float]]
    torch: list[tuple[float, float]]
    seconds: tuple[float, float]  # (grusym's budget, torch's budget)
    held_out: tuple[float, float]  # (grusym's, torch's) held-out perplexity after its budget
    backend: str = "numpy"  # the generated modules grusym trained with

    def best(self, side: str) -> float:
        points = getattr(self, side)
        return min((p for _, p in points), default=math.inf)

    def report(self) -> str:
        g, t = self.held_out
        verdict = "reaches" if g <= t * (1 + 1e-6) else "does not reach"  # equal up to rounding: reached
        lines = [
            f"## grusym train (backend {self.backend}) vs torch, {VARIANT}, d2l hyperparameters",
            "",
            "| epoch | grusym s | grusym perplexity | torch s | torch perplexity |",
            "|---|---|---|---|---|",
        ]
        for k in range(max(len(self.grusym), len(self.torch))):
            a = self.grusym[k] if k < len(self.grusym) else None
            b = self.torch[k] if k < len(self.torch) else None
            cells = [
                f"{a[0]:.1f} | {a[1]:.3f}" if a else "- | -",
                f"{b[0]:.1f} | {b[1]:.3f}" if b else "- | -",
            ]
            lines.append(f"| {k + 1} | {cells[0]} | {cells[1]} |")
        lines += [
            "",
            f"Held-out perplexity (never trained on) of the final model: grusym after {self.seconds[0]:g} s "
            f"{g:.3f} ({len(self.grusym)} epochs, best training perplexity {self.best('grusym'):.3f}); "
            f"torch after {self.seconds[1]:g} s {t:.3f} ({len(self.torch)} epochs, best training perplexity "
            f"{self.best('torch'):.3f}). grusym {verdict} torch's held-out perplexity in its shorter budget.",
        ]
        unfinished = [side for side in ("grusym", "torch") if not getattr(self, side)]
        if unfinished:  # a loaded machine: the figures are of barely trained models, not of the race's goal
            lines.append(
                f"No epoch finished within the budget for {' and '.join(unfinished)}: the held-out figures "
                "are of models trained for part of one epoch, which says little about the perplexity the "
                "race is about (rerun on a quieter machine)."
            )
        return "\n".join(lines)


def _torch_run(
    torch: ModuleType, task: Any, seconds: float, threads: int, say: Progress
) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """The per-epoch points and the final parameters (grusym's names) of the torch side, on the batches
    of ``task`` (the one grusym's side trained on)."""
    from .. import load
    from ..interop import from_torch_gru, to_torch_gru

    config = task.config
    torch.manual_seed(config.seed)
    torch.set_num_threads(threads)
    V, nh, _ = task.sizes
    dt = np.dtype(config.dtype)
    tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dt]
    params = load(VARIANT).init_params(*task.sizes, seed=config.seed, dtype=dt, scale=config.scale)
    gru_state, head = to_torch_gru(params)
    assert head is not None
    gru, linear = torch.nn.GRU(V, nh).to(tdt), torch.nn.Linear(nh, V).to(tdt)
    gru.load_state_dict({k: torch.from_numpy(v) for k, v in gru_state.items()})
    linear.load_state_dict({k: torch.from_numpy(v) for k, v in head.items()})
    weights = [*gru.parameters(), *linear.parameters()]
    eye = torch.eye(V, dtype=tdt)
    points: list[tuple[float, float]] = []

    def final() -> dict[str, Any]:
        with torch.no_grad():
            state = {k: v.numpy().copy() for k, v in gru.state_dict().items()}
            return from_torch_gru(state, {k: v.numpy().copy() for k, v in linear.state_dict().items()})

    started = time.perf_counter()
    for epoch in range(config.epochs):
        h = torch.zeros(1, config.batch, nh, dtype=tdt)
        total, count = 0.0, 0
        for X, Y in task.batches(epoch):
            for p in weights:
                p.grad = None
            out, h = gru(eye[torch.as_tensor(X)], h)
            loss = torch.nn.functional.cross_entropy(
                linear(out).reshape(-1, V), torch.as_tensor(Y).reshape(-1)
            )
            loss.backward()
            h = h.detach()
            if config.clip > 0:
                torch.nn.utils.clip_grad_norm_(weights, config.clip)
            with torch.no_grad():
                for p in weights:
                    p -= config.lr * p.grad
            total, count = total + loss.item(), count + 1
            if time.perf_counter() - started > seconds:
                return points, final()
        points.append((time.perf_counter() - started, math.exp(total / count)))
        say(f"torch: epoch {epoch + 1} ended at {points[-1][0]:.1f} s of {seconds:g}")
    return points, final()


def race(
    text: str | Path,
    grusym_seconds: float = 40.0,
    torch_seconds: float = 60.0,
    dtype: str = "float32",
    torch: ModuleType | None = None,
    threads: int = 2,
    epochs: int = 1000,
    out: Callable[[str], object] = print,
    backend: str = "numpy",
    progress: Progress | None = None,
) -> Race:
    """Train on ``text`` for ``grusym_seconds`` with ``grusym.train.train`` and ``torch_seconds`` in torch
    (see the module docstring); print and return the per-epoch perplexities. ``torch``: the torch module
    (default: import it); backend: the generated modules grusym trains with (``grusym.load``'s); progress:
    told of every epoch's end on either side."""
    from ..train import make_config, train

    if torch is None:
        try:
            import torch as imported
        except ImportError as exc:
            raise InputError(f"the training race needs torch: {TORCH_HINT}") from exc
        torch = imported
    from .. import load
    from ..train.tasks import make_task

    config = make_config(task="lm", text=str(text), variant=VARIANT, dtype=dtype, epochs=epochs)
    task = make_task(config)
    per_epoch = len(task.batches(0))
    ends: dict[int, float] = {}  # wall seconds since train() was called, at the end of each epoch

    def on_step(step: int) -> None:
        if step % per_epoch == 0:
            ends[step // per_epoch] = time.perf_counter() - started
            epoch = step // per_epoch
            say(f"grusym: epoch {epoch} ended at {ends[epoch]:.1f} s of {grusym_seconds:g}")

    say = progress or Progress(None)
    say(f"grusym ({backend}): training for {grusym_seconds:g} s")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = train(config, tmp, max_seconds=grusym_seconds, on_step=on_step, log=lambda _: None,
                       write_plots=False, backend=backend)  # fmt: skip
    ours = [(ends[r["epoch"]], r["perplexity"]) for r in result.metrics["history"] if r["epoch"] in ends]
    say(f"torch: training for {torch_seconds:g} s")
    theirs, torch_params = _torch_run(torch, task, torch_seconds, threads, say)
    say.done()
    module = load(VARIANT)
    held_out = tuple(task.valid_metrics(module, p).get("valid_perplexity", math.nan)
                     for p in (result.params, torch_params))  # fmt: skip
    result_race = Race(ours, theirs, (grusym_seconds, torch_seconds), (held_out[0], held_out[1]), backend)
    out(result_race.report())
    return result_race
