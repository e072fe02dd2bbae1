"""The training loop: epochs of batches, the generated gradients, an optimiser, checkpoints and outputs.

Contract: ``train(config, out)`` trains a model of ``config.variant`` on ``config.task`` using only the
generated module's functions and writes to folder ``out``: ``checkpoint.npz``, ``metrics.json``,
``samples.txt`` and PNG curves (with matplotlib). The folder is created only once the inputs have been
checked, just before the first checkpoint, so a run refused for its input leaves nothing behind. A language
model's held-out tail (``config.valid``) is evaluated at every logged epoch (``valid_perplexity``). It returns
a :class:`Result` whose ``status`` is

* ``"finished"``: every epoch ran; the checkpoint holds the final state;
* ``"time limit"``: ``max_seconds`` ran out before the last epoch; the checkpoint holds the state after the
  last step;
* ``"diverged"``: a loss, gradient or parameter stopped being finite; nothing after the last finite state
  is saved, so the checkpoint on disk is the last good one;
* ``"already finished"``: ``resume`` named a run that has done all of ``config.epochs``; nothing is trained
  and nothing is written (only ``json_path``, when given), so the checkpoint stays as it was.

Ctrl-C (SIGINT) is deferred to the end of the current step: the checkpoint is saved there, then
``KeyboardInterrupt`` propagates. ``train(config, out, resume=path)`` continues from a checkpoint so that
the parameters equal those of an uninterrupted run bit for bit (the batches of an epoch are a function of
``(seed, epoch)``, and the position, optimiser state and carried hidden state are all stored). The text is
identified by its sha256, not its path: a resumed run accepts the same text at any path, and finds it by
itself at the path it was given or the absolute path it was read from.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, NonFiniteError
from ..fileio import atomic_write_text
from . import checkpoint, plots
from .checkpoint import Checkpoint
from .config import Config
from .data import UNK, Vocab, read_text
from .optim import clip_grads, make_optimizer
from .progress import STATUS_SECONDS, Progress, deferred_sigint
from .tasks import LanguageModel, fingerprint, make_task

__all__ = ["CHECKPOINT", "RESUMABLE", "Result", "merge_resume", "train"]

CHECKPOINT = checkpoint.FILE
CHECKPOINT_SECONDS = 30.0  # also save at an epoch's end once this long has passed since the last save
RESUMABLE = ("epochs", "primer", "text")  # what a resumed run may change (the text only its path: sha256)
LOG_LINES = 10  # epochs logged (with a sample) per run, besides the last
TRACE_POINTS = 10  # points per epoch on the loss trace (mean loss of the last 1/10 epoch)
TRACE_COLUMNS = ("step", "epoch", "loss")  # a trace point; epoch: fractional, the end of epoch e is e


@dataclass
class Result:
    """What a run ended with: ``status``, the metrics written to metrics.json, and where things are."""

    status: str
    metrics: dict[str, Any]
    out: Path
    checkpoint: Path
    params: dict[str, Any] = field(repr=False, default_factory=dict)
    message: str = ""


def merge_resume(stored: Config, options: Mapping[str, Any]) -> Config:
    """The stored config with the ``RESUMABLE`` options replaced from ``options`` (``None`` = keep).

    Any other option given must equal the stored value: a resumed run is the same run, continued. A new
    ``text`` path is allowed here; ``train`` checks that it holds the same text (sha256).
    """
    from .config import make_config

    given = {k: v for k, v in options.items() if v is not None}
    if stored.text is None and given.get("text") is not None:
        raise InputError(
            "--text: the checkpoint was trained on the built-in toy text; omit --text when resuming"
        )
    merged = make_config(**{**stored.to_dict(), **given})
    for name, value in merged.to_dict().items():
        if name not in RESUMABLE and value != getattr(stored, name):
            raise InputError(
                f"--{name} {value!r} disagrees with the checkpoint's {getattr(stored, name)!r}; "
                "omit it when resuming (only --epochs and --primer may change, and --text may name the "
                "same text at another path)"
            )
    return merged


def train(
    config: Config | None,
    out: str | Path,
    *,
    resume: str | Path | None = None,
    max_seconds: float | None = None,
    json_path: str | Path | None = None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
    write_plots: bool = True,
    backend: str = "numpy",
) -> Result:
    """Train and write outputs to ``out``; see the module docstring for the statuses.

    config: None only when resuming (the checkpoint's config is then used). max_seconds: stop (and
    checkpoint) once this much training time has passed. json_path: a second copy of metrics.json.
    on_step(step): called after every optimiser step (progress hooks, tests). write_plots=False: no PNGs.
    backend: the generated modules to train with (``grusym.load``'s; "fused" gives the same numbers faster),
    so it is not part of the config: a run may resume on either.
    """
    started = time.perf_counter()
    ckpt = checkpoint.load(resume) if resume is not None else None
    if ckpt is not None:  # a given config must be the stored one, except for epochs
        config = merge_resume(ckpt.config, {} if config is None else config.to_dict())
    if config is None:
        raise InputError("train needs a config, or a checkpoint to resume from")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise InputError(f"--max-seconds must be a positive number, got {max_seconds!r}")
    out = _check_out(Path(out), json_path)

    from .. import load

    module = load(config.variant, backend=backend)
    vocab = Vocab.from_json(ckpt.vocab) if ckpt is not None and ckpt.vocab else None
    text = None
    if ckpt is not None and config.text is not None:  # the same text, identified by its sha256
        path = _find_text(config.text, ckpt)
        config, text = replace(config, text=path), read_text(path)
        if fingerprint(text) != ckpt.fingerprint:
            raise InputError(
                f"--text {path} is not the text the checkpoint was trained on (sha256 "
                f"{fingerprint(text)[:12]}... vs {ckpt.fingerprint[:12]}...)"
            )
    task = make_task(config, vocab, text)
    if ckpt is not None and ckpt.fingerprint != task.fingerprint:  # the toy: only if damaged
        raise InputError(f"checkpoint {resume} was trained on other data than its config describes")
    if ckpt is not None and ckpt.epoch > config.epochs:
        raise InputError(f"--epochs {config.epochs} is fewer than the {ckpt.epoch} the checkpoint has done")
    dtype = np.dtype(config.dtype)
    if ckpt is None:
        params = module.init_params(*task.sizes, seed=config.seed, dtype=dtype, scale=config.scale)
        vocab_json = task.vocab.to_json() if isinstance(task, LanguageModel) else None
        ckpt = Checkpoint(config, params, {}, None, vocab=vocab_json, fingerprint=task.fingerprint)
    params = {k: v.copy() for k, v in ckpt.params.items()}
    optimizer = make_optimizer(config.optimizer, params, config.lr)
    if resume is not None:
        try:
            optimizer.load_state(ckpt.optimizer)
        except InputError as exc:
            raise InputError(f"checkpoint {resume} is inconsistent: {exc}") from None
    ckpt.config = config
    ckpt.primer = task.primer if isinstance(task, LanguageModel) else ""
    ckpt.text_path = str(Path(config.text).resolve()) if config.text is not None else ""

    run = _Run(config, task, module, params, optimizer, ckpt, out, log, write_plots)
    if resume is not None and ckpt.epoch == config.epochs:  # nothing left: the run stays as it is
        run.progress.close()
        metrics = run.metrics("finished", 0.0)
        if json_path is not None:
            atomic_write_text(json_path, _json(metrics))
        message = (
            f"{checkpoint.locate(resume)} is a finished run ({config.epochs} of {config.epochs} epochs): "
            f"nothing trained, nothing written; to train on, resume with --epochs N above {config.epochs}"
        )
        return Result("already finished", metrics, out, out / CHECKPOINT, run.params, message)
    _make_out(out)
    run.save()  # fails early, before any training, if out cannot be written
    try:
        with deferred_sigint() as stop:
            status, message = run.loop(stop, started, max_seconds, on_step)
    finally:
        run.progress.close()
    wall = time.perf_counter() - started
    metrics = run.write_outputs(status, wall, json_path)
    result = Result(status, metrics, out, out / CHECKPOINT, run.params, message)
    if status == "interrupted":
        log(message)
        raise KeyboardInterrupt
    return result


class _Run:
    """The mutable state of one run and the steps that change it."""

    def __init__(
        self,
        config: Config,
        task: Any,
        module: Any,
        params: dict[str, Any],
        optimizer: Any,
        ckpt: Checkpoint,
        out: Path,
        log: Callable[[str], None],
        write_plots: bool,
    ) -> None:
        self.config, self.task, self.module, self.out = config, task, module, out
        self.params, self.optimizer, self.ckpt = params, optimizer, ckpt
        self.write_plots = write_plots
        self.epoch, self.batch, self.step = ckpt.epoch, ckpt.batch, ckpt.step
        self.hidden = None if ckpt.hidden is None else tuple(s.copy() for s in ckpt.hidden)
        self.progress_sums = {
            "loss": 0.0,
            "seconds": 0.0,
            "tokens": 0.0,
            "train_seconds": 0.0,
            "train_tokens": 0.0,
            "wall_seconds": 0.0,
            "window_loss": 0.0,
            "window_count": 0.0,
            **ckpt.progress,
        }
        self.history = list(ckpt.history)
        self.samples = list(ckpt.samples)
        self.batches_per_epoch = self.epoch_len = len(task.batches(0))
        # a version-2 checkpoint's points are [step, loss]: their epoch as the old curves drew it
        self.trace = [
            list(p) if len(p) == len(TRACE_COLUMNS) else [p[0], p[0] / self.batches_per_epoch, p[1]]
            for p in ckpt.trace
        ]
        self.window = max(1, self.batches_per_epoch // TRACE_POINTS)
        self.progress = Progress(config.epochs * self.batches_per_epoch, self.step, log)
        self.log = self.progress.write
        self.last_save = self.started = self.last_log = time.perf_counter()
        self.prior_wall = self.progress_sums["wall_seconds"]

    def loop(
        self,
        stop: dict[str, bool],
        started: float,
        max_seconds: float | None,
        on_step: Callable[[int], None] | None,
    ) -> tuple[str, str]:
        c, task = self.config, self.task
        if self.epoch == 0 and self.batch == 0:
            self.log(_header(c, task, self.out))
        zeros = tuple(np.zeros((c.batch, c.hidden), dtype=np.dtype(c.dtype)) for _ in self.module.STATES)
        while self.epoch < c.epochs:
            batches = task.batches(self.epoch)
            epoch, self.epoch_len = self.epoch, len(batches)
            while self.epoch == epoch:
                states = self.hidden if task.carries_state and self.batch > 0 and self.hidden else zeros
                h0 = states[0] if len(states) == 1 else states  # a tuple for several, as the modules take it
                tick = time.perf_counter()
                problem = self._train_step(batches[self.batch], h0)
                if problem:
                    return "diverged", self._diverged(problem)
                seconds = time.perf_counter() - tick
                sums = self.progress_sums
                sums["seconds"] += seconds
                sums["train_seconds"] += seconds
                sums["tokens"] += task.tokens_per_batch
                sums["train_tokens"] += task.tokens_per_batch
                self.batch += 1
                self.step += 1
                self._trace()
                self.progress.update(self.step, sums["loss"] / self.batch)
                if on_step is not None:
                    on_step(self.step)
                if self.batch == len(batches):
                    problem = self._end_epoch()
                    if problem:
                        return "diverged", self._diverged(problem)
                if stop["stop"]:
                    self.save()
                    path = self.out / CHECKPOINT
                    return "interrupted", (
                        f"interrupted after step {self.step}: checkpoint saved to {path}; "
                        f"continue with --resume {path}"
                    )
                out_of_time = max_seconds is not None and time.perf_counter() - started > max_seconds
                if out_of_time and self.epoch < c.epochs:  # all epochs done in time: finished
                    self.save()
                    return (
                        "time limit",
                        f"stopped after {max_seconds:g} s (--max-seconds) at step {self.step}",
                    )
        self.save()
        return "finished", ""

    def _train_step(self, batch: Any, h0: Any) -> str:
        """One optimiser step; returns what went non-finite ('' when all is well)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            try:
                loss, grads, h_T = self.task.step(self.module, self.params, batch, h0)
            except NonFiniteError as exc:
                return str(exc)
            if not math.isfinite(loss):
                return f"loss is {loss}"
            grads = {k: grads[k] for k in self.params}
            norm = clip_grads(grads, self.config.clip)
            if not math.isfinite(norm):
                return f"gradient norm is {norm}"
            self.optimizer.step(self.params, grads)
        self.progress_sums["loss"] += loss
        self.progress_sums["window_loss"] += loss
        self.hidden = h_T if isinstance(h_T, tuple) else (h_T,)
        return ""

    def _trace(self) -> None:
        sums = self.progress_sums
        sums["window_count"] += 1
        if sums["window_count"] >= self.window:
            position = self.epoch + self.batch / self.epoch_len  # epochs differ in length by a batch
            self.trace.append([self.step, position, sums["window_loss"] / sums["window_count"]])
            sums.update(window_loss=0.0, window_count=0.0)

    def _end_epoch(self) -> str:
        c, sums = self.config, self.progress_sums
        bad = [k for k, v in self.params.items() if not np.isfinite(v).all()]
        if bad:
            return f"parameters {bad} hold NaN or infinity"
        record = {
            "epoch": self.epoch + 1,
            **self.task.epoch_metrics(self.module, self.params, sums["loss"] / self.batch),
        }
        record["tokens_per_s"] = sums["tokens"] / sums["seconds"] if sums["seconds"] > 0 else 0.0
        record["seconds"] = sums["seconds"]
        self.history.append(record)
        last = self.epoch + 1 == c.epochs
        every = max(1, c.epochs // LOG_LINES)
        slow = time.perf_counter() - self.last_log >= STATUS_SECONDS  # long epochs: log each one
        if last or self.epoch == 0 or (self.epoch + 1) % every == 0 or slow:
            record.update(self.task.valid_metrics(self.module, self.params))
            self.last_log = time.perf_counter()
            sample = self.task.sample(self.module, self.params)
            self.samples.append(f"epoch {self.epoch + 1}: {sample}")
            self.log(_epoch_line(c, record, self.task.metric, sample))
        self.epoch, self.batch = self.epoch + 1, 0
        sums.update(loss=0.0, seconds=0.0, tokens=0.0)
        if not last and time.perf_counter() - self.last_save >= CHECKPOINT_SECONDS:
            self.save()
            self.write_outputs("running", None, None)
        return ""

    def _diverged(self, problem: str) -> str:
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        return (
            f"training diverged at {where}: {problem}; stopped. The last good checkpoint is "
            f"{self.out / CHECKPOINT} (epoch {self.ckpt.epoch}, step {self.ckpt.step}); try a smaller --lr "
            "or --clip 1"
        )

    def save(self) -> None:
        ckpt = self.ckpt
        ckpt.params = {k: v.copy() for k, v in self.params.items()}
        ckpt.optimizer = {k: np.copy(v) for k, v in self.optimizer.state().items()}
        carried = self.hidden is not None and self.task.carries_state
        ckpt.hidden = tuple(s.copy() for s in self.hidden) if carried and self.hidden else None
        ckpt.epoch, ckpt.batch, ckpt.step = self.epoch, self.batch, self.step
        ckpt.progress = {
            **self.progress_sums,
            "wall_seconds": self.prior_wall + time.perf_counter() - self.started,
        }
        ckpt.history, ckpt.samples, ckpt.trace = list(self.history), list(self.samples), list(self.trace)
        checkpoint.save(self.out / CHECKPOINT, ckpt)
        self.last_save = time.perf_counter()

    def write_outputs(self, status: str, wall: float | None, json_path: str | Path | None) -> dict[str, Any]:
        """metrics.json (and a copy at ``json_path``), samples.txt and the curves; returns the metrics."""
        c = self.config
        metrics = self.metrics(status, wall)
        text = _json(metrics)
        atomic_write_text(self.out / "metrics.json", text)
        if json_path is not None:
            atomic_write_text(json_path, text)
        atomic_write_text(self.out / "samples.txt", "".join(s + "\n" for s in self.samples))
        title = f"{c.variant}: {_describe(c)}"
        if self.write_plots:
            plots.write_curves(self.out, self.history, c.task, title, self.trace)
        return metrics

    def metrics(self, status: str, wall: float | None) -> dict[str, Any]:
        """What metrics.json holds; wall: this session's seconds (None: until now)."""
        c, sums, task = self.config, self.progress_sums, self.task
        wall_total = self.prior_wall + (time.perf_counter() - self.started if wall is None else wall)
        partial = None
        if self.batch > 0:  # stopped mid-epoch: the running figures of the unfinished epoch
            mean = sums["loss"] / self.batch
            partial = {"epoch": self.epoch + self.batch / self.epoch_len}
            partial.update(task.epoch_metrics(self.module, self.params, mean))
            partial.update(task.valid_metrics(self.module, self.params))
        final = partial or (self.history[-1] if self.history else {})
        metrics: dict[str, Any] = {
            "status": status,
            "task": c.task,
            "variant": c.variant,
            f"final_{task.metric}": final.get(task.metric),
            "final_loss": final.get("loss"),
            **({"final_valid_perplexity": final.get("valid_perplexity")} if c.task == "lm" else {}),
            "tokens_per_second": sums["train_tokens"] / max(sums["train_seconds"], 1e-12),
            "epochs": len(self.history),
            "epochs_run": final.get("epoch", 0),
            "steps": self.step,
            "wall_time_s": wall_total,
            "train_time_s": sums["train_seconds"],
            "config": c.to_dict(),
        }
        if c.task == "lm":
            metrics["data"] = {
                "text": c.text or "built-in toy text",
                "sha256": task.fingerprint,
                "characters": len(task.text),
                "trained_on": len(task.ids),
                "held_out": len(task.held_out),
                "primer": task.primer,
                "vocabulary": list(task.vocab.tokens),
            }
        else:
            metrics["data"] = {"baseline_mse": 1 / 6, "test_sequences": len(task.test[1])}
        metrics["checkpoint"] = CHECKPOINT
        metrics["history"] = self.history
        metrics["partial_epoch"] = partial
        metrics["trace"] = {"columns": list(TRACE_COLUMNS), "points": self.trace}
        metrics["samples"] = self.samples
        return metrics


def _json(metrics: dict[str, Any]) -> str:
    return json.dumps(_finite(metrics), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (metrics.json is strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _describe(c: Config) -> str:
    if c.task == "adding":
        return f"adding problem, length {c.length}, hidden {c.hidden}"
    source = Path(c.text).name if c.text else "toy text"
    return f"char LM on {source}, hidden {c.hidden}"


def _header(c: Config, task: Any, out: Path) -> str:
    if c.task == "lm":
        source = f"toy text {task.text!r}" if c.text is None else c.text
        chars = [t for t in task.vocab.tokens if t != UNK]  # counted as the primer's error counts them
        listed = f" {''.join(chars)!r}" if len(chars) <= 10 else ""  # as the primer's error lists them
        vocab = f"vocabulary of {len(chars)} characters{listed}" + (
            f" + {UNK}" if UNK in task.vocab.tokens else ""
        )
        held = f", the last {len(task.held_out)} held out" if len(task.held_out) else ""
        what = f"{source} ({len(task.text)} characters{held}, {vocab})"
        shape = f"batch {c.batch} x {c.steps} steps, {c.sampling} sampling"
    else:
        what = f"the adding problem, length {c.length}"
        shape = f"{len(task.batches(0))} batches of {c.batch} sequences per epoch, fresh data each"
    clip = f"clip {c.clip:g}" if c.clip > 0 else "no clipping"
    return (
        f"training {c.variant} (hidden {c.hidden}) on {what}\n"
        f"  {shape}; {c.optimizer} lr {c.lr:g}, {clip}; {c.epochs} epoch{'' if c.epochs == 1 else 's'};"
        f" seed {c.seed}; outputs in {out}"
    )


def _epoch_line(c: Config, record: Mapping[str, Any], metric: str, sample: str) -> str:
    width = len(str(c.epochs))
    value = f"{metric.replace('_', ' ')} {record[metric]:.4g}"
    if "valid_perplexity" in record:
        value += f"  valid {record['valid_perplexity']:.4g}"
    return (
        f"epoch {record['epoch']:>{width}}/{c.epochs}  loss {record['loss']:.4f}  {value}  "
        f"{record['tokens_per_s']:,.0f} tok/s  {sample}"
    )


def _find_text(path: str, ckpt: Checkpoint) -> str:
    """Where to read a resumed run's text: ``path`` when it exists or was given anew, else the absolute path
    it was read from last time if that holds the same text (a relative path breaks in another folder)."""
    if Path(path).exists() or path != ckpt.config.text or not ckpt.text_path:
        return path
    try:
        same = fingerprint(read_text(ckpt.text_path)) == ckpt.fingerprint
    except InputError:
        same = False
    if same:
        return ckpt.text_path
    raise InputError(
        f"--text {path} does not exist; the checkpoint was trained on a text with sha256 "
        f"{ckpt.fingerprint[:12]}... (last read from {ckpt.text_path}): give its path with --text"
    )


def _check_out(out: Path, json_path: str | Path | None) -> Path:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    for parent in out.parents:  # a file on the way cannot become a folder: say so before any work
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out: cannot create folder {out}: {parent} is not a folder")
            break
    if json_path is not None:
        parent = Path(json_path).parent
        if not parent.is_dir():
            raise InputError(f"--json: folder {parent} does not exist")
        if Path(json_path).is_dir():
            raise InputError(f"--json {json_path} is a folder; give a file name")
    return out


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out: cannot create folder {out}: {exc.strerror}") from None
