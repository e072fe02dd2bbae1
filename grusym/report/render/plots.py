"""The report's figures, drawn from ``figures.figure_data`` output alone, when matplotlib is installed.

Contract: :func:`plot` draws :data:`FIGURES` into a folder with matplotlib's Agg backend at :data:`DPI`
and returns the paths drawn; :func:`available` says whether matplotlib can be imported. Without it nothing
is drawn and the build says which figures were skipped (``pip install 'grusym[plots]'`` draws them); the
reports' text and ``figures.json`` never depend on it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ...fileio import atomic_write_bytes

__all__ = ["DPI", "FIGURES", "INSTALL_HINT", "available", "plot"]

DPI = 200
PANELS_PER_ROW = 3
FLOOR = 1e-18  # the norm plots' lower edge: below it a curve has vanished (the table has its numbers)
FIGURES = {
    "gradient_norms.png": "Gradient norm against distance to the loss at four weight scales",
    "escape.png": "The escape from vanishing: gradient norm against distance for update-gate "
    "biases and after "
    "training, with reference lines",
    "activations.png": "Activations of every sigmoid/tanh step at initialisation and after training",
}
INSTALL_HINT = "pip install 'grusym[plots]'"


def available() -> bool:
    """True when matplotlib can be imported (it is the optional ``plots`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _png(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp in the bytes
    atomic_write_bytes(path, buf.getvalue())


def _norm_label(data: dict[str, Any]) -> str:
    """The y label: the adjoint of h, or of the full state (the states side by side) for several."""
    states = next(iter(data["gradient_norms"].get("states", {}).values()), ["h"])
    if len(states) == 1:
        return "‖δh_(T−k)‖ (loss on h_T only)"
    return f"‖δ({', '.join(states)})_(T−k)‖ (loss on h_T only)"


def _gradient_norms(plt: Any, data: dict[str, Any]) -> Any:
    gn = data["gradient_norms"]
    variants = list(gn["norms"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 3.6), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        names = gn.get("recurrent_weights", {}).get(v, ["W_hh"])
        weights = names[0] if len(names) == 1 else "[" + " ".join(names) + "]"
        for scale, norms in gn["norms"][v].items():
            w = gn["W_hh_spectral_norm"][v][scale]
            y = np.maximum(np.asarray(norms), 1e-300)
            # no norm in the label for a cell without a recurrent weight matrix (minGRU, IndRNN)
            norm = "" if w is None else f", ‖{weights}‖₂ = {w:.2f}"
            ax.semilogy(range(len(y)), y, label=f"s = {scale}{norm}")
        top = max(max(n) for n in gn["norms"][v].values())
        ax.set_ylim(FLOOR, max(10.0, 2 * top))
        ax.set_title(v)
        ax.set_xlabel("distance to the loss k (steps)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower left")
    axes[0][0].set_ylabel(_norm_label(data))
    return fig


def _escape(plt: Any, data: dict[str, Any]) -> Any:
    curves = data["escape"]["curves"]
    variants = list(curves)
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 3.8), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        T = len(curves[v][0]["norms"]) - 1
        k = np.arange(T + 1)
        ax.semilogy(k, 0.5**k, color="black", linestyle="--", linewidth=1, label="0.5^k")
        for i, c in enumerate(curves[v]):
            color = f"C{i}"
            y = np.maximum(np.asarray(c["norms"]), 1e-300)
            ax.semilogy(k, y, color=color, linewidth=1.8, label=f"{c['label']}: factor {c['per_step']:.3f}")
            ax.semilogy(k, c["mean_J_radius"] ** k, color=color, linestyle=":", linewidth=1.2)
        ax.set_ylim(1e-12, 2)
        ax.set_title(f"{v} (dotted: ρ(mean J)^k)")
        ax.set_xlabel("distance to the loss k (steps)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower left")
    axes[0][0].set_ylabel(_norm_label(data))
    return fig


def _activations(plt: Any, data: dict[str, Any]) -> Any:
    steps = data["activations"]["steps"]
    losses = data["activations"]["loss"]
    cols = min(len(steps), PANELS_PER_ROW)  # several rows rather than one strip: the page shows 880 px
    rows = -(-len(steps) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, 2.9 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(steps) :]:
        ax.set_visible(False)
    for ax, (step, entry) in zip(axes.flat, steps.items(), strict=False):
        edges = np.asarray(entry["edges"])
        for phase, label in (("init", "start"), ("trained", "trained")):
            ax.stairs(entry[phase]["counts"], edges, fill=phase == "init", alpha=0.5, label=label)
        ax.set_title(f"{step} ({entry['kind']})")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("value")
        ax.legend(fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("count (of T·n·d_h values)")
    fig.suptitle(
        f"{data['variant']}: activations of the training run, "
        f"loss {losses['init']:.3f} → {losses['trained']:.3f}"
    )
    return fig


def plot(data: dict[str, Any], folder: Path) -> list[Path]:
    """Draw :data:`FIGURES` into ``folder`` from ``figure_data`` output; needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 10 pt on a figure at most 10 inches wide stays at least 11 px high in an 880 px column
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9})
    paths = []
    for name, draw in (
        ("gradient_norms.png", _gradient_norms),
        ("escape.png", _escape),
        ("activations.png", _activations),
    ):
        if name == "activations.png" and not data["activations"]["steps"]:
            continue  # no sigmoid or tanh step to histogram (the text says so)
        fig = draw(plt, data)
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        path = Path(folder) / name
        _png(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths
