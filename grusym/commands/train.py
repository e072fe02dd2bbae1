"""``grusym train``: train a char-level language model (default: the 20-character toy) or the adding problem.

Every option is read as text and checked by :func:`grusym.train.make_config`, so a bad value is a one-line
error (exit 2) naming the option. Several comma-separated variants train one after the other into
``OUT/<variant>`` and add a comparison figure. A folder that holds an earlier run is refused (continue it with
``--resume``, or start again over it with ``--force``); resuming a finished run trains and writes nothing.
Exit status: 0 done (or stopped by --max-seconds, or already finished), 1 the training diverged (the last
good checkpoint is kept), 2 bad input, 130 Ctrl-C (checkpoint saved).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..train import Config, Result

HELP = "train a GRU language model (default: the toy text 'MathMath...') or the adding problem"

_CONFIG_OPTIONS = {
    "task": ("lm|adding", "lm: next-character prediction (default); adding: the adding problem"),
    "variant": ("V[,V...]", "variant(s) to train, comma-separated to compare (default: gru)"),
    "text": (
        "FILE",
        "UTF-8 text file to model (default: the toy 'MathMathMathMathMath'; a shipped text: "
        "grusym/data/pride_and_prejudice_1-11.txt)",
    ),
    "hidden": ("H", "hidden size (toy 2, text 256, adding 32)"),
    "steps": ("S", "time steps per batch, the truncated-BPTT length (toy 3, text 35)"),
    "length": ("L", "sequence length of the adding problem (default 100)"),
    "batch": ("B", "sequences per batch (toy 2, text 32, adding 64)"),
    "epochs": ("E", "epochs in total, also when resuming (toy 200, text 20, adding 10)"),
    "lr": ("LR", "learning rate (default: sgd 1, adam 0.01)"),
    "optimizer": ("sgd|adam", "optimiser (default: sgd; adding: adam)"),
    "clip": ("THETA", "clip the global gradient norm to THETA, 0 = off (default: 1)"),
    "sampling": ("sequential|random", "sequential carries the hidden state between batches (default)"),
    "seed": ("N", "seed of the initial weights and of the data order (default: 0)"),
    "scale": ("SIGMA", "standard deviation of the initial weights (default: 0.01, as d2l)"),
    "dtype": ("float32|float64", "floating-point type of parameters and states (default: float32)"),
    "primer": ("TEXT", "text the logged samples continue (toy: 'Ma'; text: the first words of its text)"),
    "valid": ("FRACTION", "fraction of the text held out, never trained on (text 0.1, toy 0)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    for name, (metavar, text) in _CONFIG_OPTIONS.items():
        p.add_argument(f"--{name}", metavar=metavar, help=text)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: runs/toy-V, runs/<text file stem>-V or runs/adding-<L>-V; V is the "
        "variant, or 'compare' for several)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run bit for bit: its folder or its checkpoint.npz (output: that folder)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="train into --out even if it holds an earlier run (its files are overwritten)",
    )
    p.add_argument("--json", metavar="METRICS.json", help="also write the metrics to this file")
    p.add_argument("--max-seconds", metavar="S", help="stop after S seconds of training (checkpointed)")
    p.add_argument(
        "--backend",
        choices=("numpy", "fused"),
        default="numpy",
        help="the generated modules to train with: plain NumPy (default) or fused with Numba (the same "
        "numbers, faster; pip install 'grusym[fused]')",
    )
    p.epilog = "Then: grusym sample OUT --primer TEXT --length N (no retraining)."


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..train import checkpoint, make_config, train
    from ..train.loop import merge_resume

    options = {name: getattr(args, name) for name in _CONFIG_OPTIONS}
    names = [v.strip() for v in (args.variant or "gru").split(",") if v.strip()]
    if not names or len(set(names)) != len(names):
        raise InputError(f"--variant must list distinct variant names, got {args.variant!r}")
    max_seconds = _seconds(args.max_seconds)
    if args.resume is not None:
        if len(names) > 1:
            raise InputError("--resume continues one run; give a single --variant (or none)")
        stored = checkpoint.load(args.resume).config
        config = merge_resume(stored, options)
        own = checkpoint.locate(args.resume).parent
        out = Path(args.out) if args.out else own
        if out.resolve() != own.resolve():
            _refuse_earlier_run([out], args.force)
        result = train(
            config,
            out,
            resume=args.resume,
            max_seconds=max_seconds,
            json_path=args.json,
            backend=args.backend,
        )
        return _report(result)
    configs = [make_config(**{**options, "variant": name}) for name in names]
    base = Path(args.out) if args.out else Path("runs") / _run_name(configs[0], names)
    _refuse_earlier_run([base] if len(configs) == 1 else [base / c.variant for c in configs], args.force)
    if len(configs) == 1:
        return _report(
            train(configs[0], base, max_seconds=max_seconds, json_path=args.json, backend=args.backend)
        )
    results = {}
    for config in configs:
        results[config.variant] = result = train(
            config, base / config.variant, max_seconds=max_seconds, backend=args.backend
        )
        if _report(result):
            return 1
    return _compare(base, results, args.json)


def _refuse_earlier_run(folders: list[Path], force: bool) -> None:
    """InputError if a folder holds a run (a checkpoint or metrics), unless ``force``: one line that says
    how to continue it and how to write over it."""
    from ..errors import InputError
    from ..train import checkpoint

    taken = [f for f in folders if any((f / name).is_file() for name in (checkpoint.FILE, "metrics.json"))]
    if not taken or force:
        return
    if len(folders) == 1:
        what, which = f"{taken[0]} already holds a run", "it"
    else:  # several variants: one subfolder each
        what, which = f"{taken[0].parent} already holds runs of {', '.join(f.name for f in taken)}", "one"
    raise InputError(
        f"--out {what}; continue {which} with --resume {taken[0]}, or give --force to train over it (its "
        "files are overwritten), or choose another --out"
    )


def _seconds(value: str | None) -> float | None:
    from ..errors import InputError

    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise InputError(f"--max-seconds must be a positive number, got {value!r}")
    return seconds


def _run_name(c: Config, names: list[str]) -> str:
    suffix = names[0] if len(names) == 1 else "compare"
    if c.task == "adding":
        return f"adding-{c.length}-{suffix}"
    return f"{Path(c.text).stem if c.text else 'toy'}-{suffix}"


def _report(r: Result) -> int:
    if r.status == "diverged":
        print(f"grusym train: {r.message}", file=sys.stderr)
        return 1
    if r.status == "already finished":
        print(r.message)
        return 0
    m = r.metrics
    metric = "perplexity" if m["task"] == "lm" else "test_mse"
    if r.message:
        print(r.message)
    files = sorted(p.name for p in r.out.iterdir() if p.is_file() and not p.name.startswith("."))
    valid = m.get("final_valid_perplexity")
    held = f" (held-out {valid:.4g})" if valid is not None else ""
    print(
        f"done: {metric.replace('_', ' ')} {m[f'final_{metric}']:.4g}{held} "
        f"after {m['epochs_run']:.4g} epoch{'' if m['epochs_run'] == 1 else 's'} "
        f"({m['steps']} steps, {m['tokens_per_second']:,.0f} tokens/s, {m['wall_time_s']:.1f} s); "
        f"wrote {r.out}/: {', '.join(files)}"
    )
    from ..train import plots

    if not plots.available():
        print("no curves drawn: matplotlib is not installed (pip install 'grusym[plots]')")
    return 0


def _compare(base: Path, results: dict[str, Result], json_path: str | None) -> int:
    from ..fileio import atomic_write_text
    from ..train import plots

    first = next(iter(results.values())).metrics
    metric = "perplexity" if first["task"] == "lm" else "test_mse"
    summary = {
        name: {
            f"final_{metric}": r.metrics[f"final_{metric}"],
            "tokens_per_second": r.metrics["tokens_per_second"],
            "epochs": r.metrics["epochs"],
            "out": str(r.out),
        }
        for name, r in results.items()
    }
    text = json.dumps({"metric": metric, "runs": summary}, indent=2) + "\n"
    atomic_write_text(base / "comparison.json", text)
    if json_path:
        atomic_write_text(json_path, text)
    c = first["config"]
    what = (
        f"adding problem, length {c['length']}"
        if c["task"] == "adding"
        else f"char LM, {first['data']['text']}"
    )
    title = f"{what}: " + " vs ".join(results)
    drawn = plots.write_comparison(
        base / "comparison.png", {n: r.metrics["history"] for n, r in results.items()}, metric, title
    )
    for name, s in summary.items():
        print(f"{name:>16}: final {metric.replace('_', ' ')} {s[f'final_{metric}']:.4g}")
    written = " and ".join([*(p.name for p in drawn), "comparison.json"])
    print(f"comparison written to {base}/: {written}")
    return 0
