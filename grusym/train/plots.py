"""Training curves as PNG files (matplotlib, imported on use, Agg canvas: no display, no global backend).

Contract: every function takes per-epoch ``history`` records (dicts with ``epoch`` and metric values),
writes its PNGs atomically and returns their paths; when matplotlib is missing it writes nothing and
returns an empty list (the caller says so once).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes

__all__ = ["available", "curves", "write_comparison", "write_curves"]

ADDING_BASELINE = 1 / 6
SOLVED_MSE = 0.01


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _curve(
    path: Path,
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    ylabel: str,
    *,
    log: bool = False,
    adding: bool = False,
) -> Path:
    fig, ax = _figure()
    for label, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            running = label.startswith("running")
            ax.plot(
                xs,
                ys,
                marker=None if running or len(xs) >= 40 else ".",
                label=label,
                alpha=0.45 if running else 1.0,
                linewidth=1.0 if running else 1.5,
            )
    if adding:
        ax.axhline(ADDING_BASELINE, color="gray", linestyle="--", label="always predict 1 (1/6)")
        ax.axhline(SOLVED_MSE, color="gray", linestyle=":", label="solved (0.01)")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _points(history: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(h["epoch"], h[key]) for h in history if h.get(key) is not None and math.isfinite(h[key])]


Series = dict[str, list[tuple[float, float]]]


def curves(
    history: Sequence[Mapping[str, Any]], task: str, trace: Sequence[Sequence[float]] = ()
) -> dict[str, tuple[str, Series]]:
    """What :func:`write_curves` draws: file name -> (y label, label -> [(epoch, value)]).

    trace: ``[step, epoch, mean loss since the previous point]`` (the loop's ``TRACE_COLUMNS``); its
    epochs are fractional, so a 200-epoch run's axis ends at 200 whatever the lengths of its epochs.
    """
    running = [(float(epoch), loss) for _, epoch, loss in trace if math.isfinite(loss)]
    if task == "adding":
        series = {
            "running train MSE": running,
            "train (epoch mean)": _points(history, "loss"),
            "test": _points(history, "test_mse"),
        }
        return {"mse.png": ("mean squared error", series)}
    perplexity = [(x, math.exp(min(loss, 700.0))) for x, loss in running]
    return {
        "loss.png": (
            "cross-entropy per character",
            {
                "running train loss": running,
                "train (epoch mean)": _points(history, "loss"),
                "held-out": _points(history, "valid_loss"),
            },
        ),
        "perplexity.png": (
            "perplexity",
            {
                "running train perplexity": perplexity,
                "train (epoch)": _points(history, "perplexity"),
                "held-out (never trained on)": _points(history, "valid_perplexity"),
            },
        ),
    }


def write_curves(
    out: Path,
    history: Sequence[Mapping[str, Any]],
    task: str,
    title: str,
    trace: Sequence[Sequence[float]] = (),
) -> list[Path]:
    """loss.png and perplexity.png (language model; with the held-out figures of the logged epochs) or
    mse.png (adding problem) in folder ``out``: the series of :func:`curves`."""
    if not available() or not (history or trace):
        return []
    adding = task == "adding"
    return [
        _curve(out / name, title, series, ylabel, log=adding, adding=adding)
        for name, (ylabel, series) in curves(history, task, trace).items()
    ]


def write_comparison(
    path: Path, runs: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, title: str
) -> list[Path]:
    """One figure with the ``metric`` curve of every run (label -> history)."""
    if not available():
        return []
    series = {label: _points(history, metric) for label, history in runs.items()}
    return [_curve(path, title, series, metric.replace("_", " "), log=True, adding=metric == "test_mse")]
