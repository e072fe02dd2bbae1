"""The Markdown reports: of one training-step run (:func:`format_report`: the table of medians, ratios and
GFLOP/s, the floors, the extras, the machine it ran on) and of an inference run (:func:`format_inference`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from .result import InferenceResult, Result

__all__ = ["format_report"]


def _rows(result: Result, prefix: str) -> list[str]:
    """The model rows timed under ``prefix`` ("model:" grusym's, "torch:" torch's), in run order."""
    return [name.removeprefix(prefix) for name in result.times if name.startswith(prefix)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 0.1 else f"{seconds * 1e3:.0f}"


def _si(value: float, unit: str) -> str:
    """3 significant digits with a k/M/G prefix: 1.51 GFLOP, 912 kB."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_report(result: Result, variants: Sequence[str]) -> str:
    """The Markdown report of a :class:`Result`."""
    cfg = result.config
    rounds = len(next(iter(result.times.values())))
    lines = [
        f"## grusym bench: {cfg.describe()}, {result.dtype}, "
        + ("token ids" if result.inputs == "ids" else "one-hot float rows (no input gradient asked for)"),
        "",
        "One step = forward over T + BPTT + every gradient + head + mean cross-entropy. "
        f"{rounds} interleaved rounds ({result.pause * 1e3:.0f} ms sleep + one untimed call before each "
        "timed call).",
        f"Machine: {result.machine}.",
        "",
        "| step | median ms | min ms | tokens/s | vs torch (lstm: nn.LSTM) | GFLOP/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, ts in result.times.items():
        med = statistics.median(ts)
        lstm = name in ("lstm", "floor:lstm", "fused:lstm", "torch lstm")
        against = "torch lstm" if lstm else "torch"
        ref = result.median(against) if against in result.times else None
        if name == "torch":
            label = "torch nn.GRU + Linear + CE, autograd"
        elif name == "torch lstm":
            label = "torch nn.LSTM + Linear + CE, autograd"
        elif name == "validation":
            label = f"of which validation ({variants[0]})"
        elif name.startswith("part:"):
            what = {
                "forward": "forward loop",
                "backward": "BPTT loop + weight gradients",
                "floor forward": "floor: forward-loop matmuls",
                "floor backward": "floor: BPTT-loop matmuls",
                "floor gradients": "floor: weight-gradient matmuls",
                "floor head": "floor: head matmuls",
                "elementwise": "bound: the elementwise calls alone, hot operands",
            }[name[5:]]
            label = f"of which {what} ({variants[0]})"
        elif name.startswith(("model:", "torch:")):
            who = f"grusym {variants[0]}" if name.startswith("model:") else "torch nn.GRU"
            label = f"{who}, {name[6:]}"
        elif name.startswith("fused:"):
            label = f"grusym {name[6:]}, fused (Numba kernels)"
        else:
            label = f"GEMM floor of {name[6:]}" if name.startswith("floor:") else f"grusym {name}"
        ratio = f"{med / ref:.2f}" if ref else "-"
        flops = result.flops.get(name)
        gflops = f"{flops / med / 1e9:.3g}" if flops else "-"
        part = name == "validation" or name.startswith("part:")
        tps = "-" if part else f"{cfg.T * cfg.n / med:,.0f}"
        gflops, ratio = ("-", "-") if part else (gflops, ratio)
        lines.append(f"| {label} | {_ms(med)} | {_ms(min(ts))} | {tps} | {ratio} | {gflops} |")
    lines += [
        "",
        "GFLOP/s divides the dense model FLOPs, 6*T*n*(number of weights), by each row's time: "
        + ", ".join(f"{v} {_si(result.flops[v], 'FLOP')}" for v in variants)
        + ". The floors execute "
        + ", ".join(f"{v} {_si(fl.flops, 'FLOP')}" for v, fl in result.floors.items())
        + (
            " (token ids: the input projection is a row gather, not a GEMM)."
            if result.inputs == "ids"
            else " (one-hot rows: the input projection and its weight gradient are GEMMs; no dX)."
        ),
    ]
    if "part:elementwise" in result.times:
        v, bound = variants[0], result.median("part:elementwise")
        floor, calls = result.median(f"floor:{v}"), result.elementwise_calls
        lines += [
            "",
            f"The elementwise bound replays the {calls:,} elementwise ufunc calls of one {v} step "
            f"({calls / cfg.T:.0f} per time step) alone, every operand contiguous and "
            f"in cache: {_ms(bound)} ms. The floor plus it, {(floor + bound) / floor:.2f}x the floor "
            f"({v} itself: {result.median(v) / floor:.2f}x), bounds from below what these NumPy calls "
            "can take in any memory layout."
            + (
                f" The fused module, which replaces runs of them by Numba kernels, takes "
                f"{result.median('fused:' + v) / floor:.2f}x the floor."
                if f"fused:{v}" in result.times
                else ""
            ),
        ]
    if "model:2 layers" in result.times:
        one = result.median(variants[0])
        ratios = ", ".join(
            f"{row} x{result.median('model:' + row) / one:.2f}" for row in _rows(result, "model:")
        )
        lines += ["", f"Whole models of {variants[0]}, step time over the 1-layer step: {ratios}."]
        if "torch:2 layers" in result.times:
            ref = result.median("torch")
            lines[-1] += (
                " torch: "
                + ", ".join(
                    f"{row} x{result.median('torch:' + row) / ref:.2f}" for row in _rows(result, "torch:")
                )
                + "."
            )
    lines += [f"Note: {note}" for note in result.notes]
    if result.codegen:
        c = result.codegen
        each = ", ".join(f"{v} {c['derive'][v]:.2f} + {c['module_source'][v]:.2f}" for v in c["derive"])
        lines += [
            "",
            f"Derivation + code generation of all {len(c['derive'])} variants in a fresh process: "
            f"{c['process']:.2f} s wall (import sympy {c['sympy_import']:.2f} s; "
            f"derive + generate, s: {each}).",
        ]
    for v, t in result.imports.items():
        lines.append(
            f"`import grusym` + `load({v!r})` with SymPy blocked: {t['import_load']:.3f} s in the process "
            f"(NumPy's import included), {t['process']:.3f} s for the whole subprocess."
        )
    for v, mem in result.memory.items():
        peaks = ", ".join(f"T={T}: {_si(p, 'B')}" for T, p in zip(mem.Ts, mem.peaks, strict=True))
        grow = ", ".join(f"{k} {_si(b, 'B')}" for k, b in mem.workspace_per_step.items()) or "none"
        lines += [
            "",
            f"Peak memory of one cold step of {v} (tracemalloc): {peaks}. Linear fit: "
            f"{_si(mem.slope, 'B')} per time step + {_si(mem.intercept, 'B')} (worst residual "
            f"{mem.worst_residual:.1%}). Activations forward keeps for BPTT: "
            f"{_si(mem.kept_per_step, 'B')} per time step (slope / kept = "
            f"{mem.slope / mem.kept_per_step:.2f}); workspace buffers growing with T, per step: {grow}.",
        ]
    return "\n".join(lines)


CONTENDERS = {
    "onnxruntime": "onnxruntime",
    "torch": "torch no_grad",
    "grusym": "grusym",
    "fused": "grusym fused",
    "floor": "GEMM floor",
}


def format_inference(result: InferenceResult) -> str:
    """The Markdown report of an :class:`InferenceResult`: one row per case, each contender's median and
    grusym's ratios to onnxruntime and torch within the run."""
    entries = sorted(set(result.entry.values()))
    entry = "/".join(entries) or "forward"
    present = [c for c in CONTENDERS if any(c in row for row in result.times.values())]
    ours = [c for c in ("grusym", "fused") if c in present]
    theirs = [c for c in ("onnxruntime", "torch") if c in present]
    pairs: list[tuple[str, str]] = [(o, t) for o in ours for t in theirs]
    if "floor" in present:  # how far each from the products alone: the fastest of ours, and onnxruntime
        pairs += [(c, "floor") for c in (ours[-1:] + theirs[:1]) if c != "torch"]
    rounds = max((len(ts) for row in result.times.values() for ts in row.values()), default=0)
    head = [CONTENDERS[c] + " ms" for c in present]
    head += [f"{CONTENDERS[o]} / {CONTENDERS[t]}" for o, t in pairs]
    kept = ": this version's modules have no `predict`, so `forward` also keeps its cache"
    lines = [
        "## grusym bench --inference: forward-only inference of an imported model, float32",
        "",
        f"One call = the whole sequence, H and the last states, nothing kept for backward (grusym: `{entry}`"
        + (kept if entries == ["forward"] else "")
        + f"). {rounds} interleaved rounds ({result.pause * 1e3:.0f} ms sleep + one untimed call before each "
        "timed call); medians, and in brackets the ratio of the fastest calls (what a busy machine disturbs "
        f"least); onnxruntime and torch on {result.threads} threads (onnxruntime: "
        "intra-op threads, one inter-op thread, sequential execution), NumPy's BLAS as below.",
        f"Machine: {result.machine}.",
        "",
        "| model, sizes | " + " | ".join(head) + " |",
        "|---" * (1 + len(head)) + "|",
    ]
    for case, row in result.times.items():
        cells = [_ms(result.median(case, c)) if c in row else "-" for c in present]
        for o, t in pairs:
            r, fast = result.ratio(case, o, t), result.ratio(case, o, t, min)
            cells.append("-" if r is None or fast is None else f"{r:.2f} (min {fast:.2f})")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    if result.errors:
        checked = [c for c in present if c not in ("torch", "floor")]
        worst = {c: max(e.get(c, 0.0) for e in result.errors.values()) for c in checked}
        lines += [
            "",
            "Largest |H - torch's H| over all cases (the same model in every column): "
            + ", ".join(f"{CONTENDERS[c]} {v:.1e}" for c, v in worst.items())
            + ".",
        ]
    if "floor" in present:
        lines += [
            "",
            "GEMM floor: the matrix products of grusym's `predict` alone (the input projection of all T "
            "steps in one GEMM, then T recurrent products per layer) on preallocated operands, through "
            "NumPy's BLAS.",
        ]
    lines += [f"Note: {note}" for note in result.notes]
    return "\n".join(lines)
