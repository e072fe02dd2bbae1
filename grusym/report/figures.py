"""The report's figures: seeded numbers from the generated code, then plots drawn only from those numbers.

Contract: :func:`figure_data` is deterministic (fixed seeds, fixed sizes below) and returns plain JSON data;
:func:`plot` draws the two PNGs from that data alone with matplotlib's Agg backend, so a test can recompute
the data and compare numbers instead of PNG bytes (which vary across matplotlib versions).

* Gradient norms: the loss is ``<g, h_T>`` for a fixed unit ``g`` on the last step only. The adjoint of
  every earlier state is ``grads["h0"]`` of the generated ``backward`` on the suffix problem that starts
  from that state, which reproduces the same trajectory, so no private API is needed.
* Activations: a few full-batch SGD steps of the generated ``loss_and_grads`` on the toy text of seed 000,
  and the values of every sigmoid/tanh step (from :mod:`grusym.report.values`) before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_bytes
from .jacobian import primitive_outputs

__all__ = ["ACTIVATIONS", "GRADIENT_NORMS", "figure_data", "plot", "toy_tokens"]

TOY_TEXT, TOY_VOCAB = "Math", "hatM"  # seed 000: {'h': 0, 'a': 1, 't': 2, 'M': 3}
GRADIENT_NORMS: dict[str, Any] = {"hidden": 16, "T": 40, "n": 4, "scales": (0.01, 0.1, 0.3, 1.0), "seed": 0}
ACTIVATIONS: dict[str, Any] = {
    "hidden": 8,
    "T": 16,
    "n": 2,
    "steps": 60,
    "lr": 1.0,
    "scale": 0.01,
    "seed": 0,
    "bins": 25,
}
REFERENCE = "rnn_tanh"


def toy_tokens(T: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs X (T, n) and next-character targets Y (T, n) of the repeated text 'Math'; row i starts at i."""
    text = TOY_TEXT * ((T + n) // len(TOY_TEXT) + 2)
    ids = np.array([TOY_VOCAB.index(c) for c in text], dtype=np.int64)
    X = np.stack([ids[i : i + T] for i in range(n)], axis=1)
    Y = np.stack([ids[i + 1 : i + T + 1] for i in range(n)], axis=1)
    return X, Y


def _gradient_norms(name: str, scale: float) -> tuple[list[float], float]:
    import grusym

    cfg = GRADIENT_NORMS
    m = grusym.load(name)
    T, n, h, v = cfg["T"], cfg["n"], cfg["hidden"], len(TOY_VOCAB)
    X, _ = toy_tokens(T, n)
    params = m.init_params(v, h, v, seed=cfg["seed"], scale=scale)
    g = np.random.default_rng(cfg["seed"]).normal(size=(n, h))
    g /= np.linalg.norm(g)
    h0 = np.zeros((n, h))
    H, _ = m.forward(params, X, h0)
    states = [h0, *H]
    norms = [1.0]  # distance 0: dL/dh_T = g
    for k in range(1, T + 1):
        start = T - k
        _, cache = m.forward(params, X[start:], states[start])
        dH = np.zeros((k, n, h))
        dH[-1] = g
        norms.append(float(np.linalg.norm(m.backward(params, cache, dH)["h0"])))
    return norms, float(np.linalg.norm(params["W_hh"], 2))


def _activations(name: str) -> dict[str, Any]:
    import grusym

    from ..symbolic.variants import VARIANTS
    from .values import step_values

    cfg = ACTIVATIONS
    m = grusym.load(name)
    T, n, h, v = cfg["T"], cfg["n"], cfg["hidden"], len(TOY_VOCAB)
    X, Y = toy_tokens(T, n)
    params = m.init_params(v, h, v, seed=cfg["seed"], scale=cfg["scale"])
    h0 = np.zeros((n, h))
    kinds = primitive_outputs(VARIANTS[name].cell())
    phases: dict[str, dict[str, np.ndarray]] = {"init": step_values(name, params, X, h0)}
    losses = {"init": float(m.loss(params, X, Y, h0))}
    for _ in range(cfg["steps"]):
        _, grads, _ = m.loss_and_grads(params, X, Y, h0)
        params = {k: p - cfg["lr"] * grads[k] for k, p in params.items()}
    phases["trained"] = step_values(name, params, X, h0)
    losses["trained"] = float(m.loss(params, X, Y, h0))
    steps: dict[str, Any] = {}
    for step, kind in kinds.items():
        lo = 0.0 if kind.__name__ == "Sigmoid" else -1.0
        edges = np.linspace(lo, 1.0, cfg["bins"] + 1)
        entry: dict[str, Any] = {"kind": kind.__name__.lower(), "edges": edges.tolist()}
        for phase, vals in phases.items():
            a = vals[step].reshape(-1)
            near = np.minimum(np.abs(a - lo), np.abs(1.0 - a))  # distance to the nearest end of the range
            entry[phase] = {
                "counts": np.histogram(a, edges)[0].tolist(),
                "mean": float(a.mean()),
                "std": float(a.std()),
                "saturated": float(np.mean(near < 0.05 * (1.0 - lo))),
            }
        steps[step] = entry
    return {"loss": losses, "steps": steps}


def figure_data(name: str) -> dict[str, Any]:
    """The numbers behind both figures of variant ``name`` (JSON-ready; deterministic)."""
    names = [name] if name == REFERENCE else [name, REFERENCE]
    norms: dict[str, dict[str, list[float]]] = {}
    w_norm: dict[str, dict[str, float]] = {}
    for v in names:
        norms[v], w_norm[v] = {}, {}
        for s in GRADIENT_NORMS["scales"]:
            norms[v][str(s)], w_norm[v][str(s)] = _gradient_norms(v, s)
    return {
        "variant": name,
        "gradient_norms": {
            "config": {k: list(c) if isinstance(c, tuple) else c for k, c in GRADIENT_NORMS.items()},
            "norms": norms,
            "W_hh_spectral_norm": w_norm,
        },
        "activations": {"config": dict(ACTIVATIONS), **_activations(name)},
    }


def _png(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})  # no version stamp in the bytes
    atomic_write_bytes(path, buf.getvalue())


def plot(data: dict[str, Any], folder: Path) -> list[Path]:
    """Draw ``gradient_norms.png`` and ``activations.png`` into ``folder`` from ``figure_data`` output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9})
    gn = data["gradient_norms"]
    variants = list(gn["norms"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.2), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        for scale, norms in gn["norms"][v].items():
            w = gn["W_hh_spectral_norm"][v][scale]
            y = np.maximum(np.asarray(norms), 1e-300)
            ax.semilogy(range(len(y)), y, label=f"scale {scale} (||W_hh||_2 = {w:.2f})")
        ax.set_title(v)
        ax.set_xlabel("distance to the loss, k (steps)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("||dL/dh_(T-k)|| (loss on h_T only)")
    fig.tight_layout()
    paths = [folder / "gradient_norms.png"]
    _png(fig, paths[0])
    plt.close(fig)

    steps = data["activations"]["steps"]
    losses = data["activations"]["loss"]
    fig, axes = plt.subplots(1, len(steps), figsize=(3.0 * len(steps), 2.6), squeeze=False)
    for ax, (step, entry) in zip(axes[0], steps.items(), strict=True):
        edges = np.asarray(entry["edges"])
        for phase in ("init", "trained"):
            ax.stairs(entry[phase]["counts"], edges, fill=phase == "init", alpha=0.5, label=phase)
        ax.set_title(f"{step} ({entry['kind']})")
        ax.set_xlim(edges[0], edges[-1])
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{data['variant']}: activations on the toy text, "
        f"loss {losses['init']:.3f} -> {losses['trained']:.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    paths.append(folder / "activations.png")
    _png(fig, paths[1])
    plt.close(fig)
    return paths
