"""One training step, timed: the generated NumPy BPTT against PyTorch's nn.GRU and the GEMM floor.

Contract: :func:`run` measures in ONE process, interleaved (every timed call is preceded by a short sleep
and one untimed call, so BLAS/OpenMP worker threads start each timed call in the same state whoever ran
last), the median time of one training step -- forward over T steps, full BPTT, every gradient, head and
mean cross-entropy -- of

* each generated variant's ``loss_and_grads`` (validation included; its share is timed separately),
* ``torch.nn.GRU`` + ``nn.Linear`` + ``cross_entropy`` with autograd, when a torch module is passed (it is
  injected, so the comparison is skipped with a note when torch is absent),
* the GEMM floor: the exact matmul sequence of the generated step (:func:`~grusym.symbolic.codegen.gemm_plan`)
  and nothing else.

Extras: derivation + code generation time of every variant and ``import grusym`` + ``load`` time without
SymPy (both in fresh subprocesses, :mod:`grusym.bench_costs`), and the peak memory of one step versus T
(tracemalloc). Nothing here asserts a time: numbers depend on the machine and its load, so the report
(:mod:`grusym.bench_report`) prints the load average.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import fused_available, load, runtime, validate
from .bench_costs import codegen_time, import_time
from .bench_elementwise import ElementwiseBound, elementwise_bound
from .bench_report import format_report
from .errors import InputError

TORCH_HINT = "pip install 'grusym[torch]' adds it (the pinned torch==2.13.0)"

__all__ = ["CONFIGS", "Config", "Result", "gemm_floor", "interleaved", "run", "torch_step"]

TORCH_THREADS = 2


@dataclass(frozen=True)
class Config:
    """A benchmark size: T steps, batch n, vocabulary V (one-hot inputs / token ids and classes), hidden h."""

    name: str
    T: int
    n: int
    V: int
    h: int
    repeat: int  # default number of interleaved timed calls per contender
    Ts: tuple[int, ...]  # sequence lengths of the memory-versus-T measurement
    pause: float = 0.15  # seconds of sleep before each timed call: OpenBLAS workers spin ~0.1 s after a call

    def describe(self) -> str:
        return f"{self.name} (T={self.T}, n={self.n}, V={self.V}, h={self.h})"


CONFIGS = {
    c.name: c
    for c in (
        # the seed's toy task; no sleep: OpenBLAS does not thread matmuls this small, and a sleep only adds
        # thread wake-ups to torch's step (0.7 ms instead of its 0.28 ms in a loop)
        Config("toy", T=3, n=2, V=4, h=2, repeat=200, Ts=(3, 6, 12, 24), pause=0.0),
        Config("d2l", T=35, n=32, V=28, h=256, repeat=15, Ts=(9, 18, 35, 70)),  # d2l chapter 9 GRU
        Config("big", T=64, n=64, V=96, h=512, repeat=5, Ts=(16, 32, 64)),
    )
}


def interleaved(
    steps: Mapping[str, Callable[[], object]], repeat: int, pause: float = 0.01
) -> dict[str, list[float]]:
    """Seconds per call of each step, ``repeat`` rounds; within a round every step runs in turn.

    Each timed call follows ``pause`` seconds of sleep and one untimed call; the garbage collector is off
    while timing (as in ``timeit``).
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            time.sleep(pause)
            step()
            gc.disable()
            try:
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
            finally:
                gc.enable()
    return times


# ---- the contenders


def problem(cfg: Config, dtype: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids X (T, n) and targets Y (T, n) in [0, V), and h0 = 0 (n, h) of ``dtype``."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, cfg.V, (cfg.T, cfg.n))
    Y = rng.integers(0, cfg.V, (cfg.T, cfg.n))
    return X, Y, np.zeros((cfg.n, cfg.h), dtype=dtype)


INPUTS = ("ids", "onehot")  # token ids, or the same tokens as one-hot float rows (T, n, V)


def _inputs(X: np.ndarray, V: int, dtype: Any, inputs: str) -> np.ndarray:
    """X as the step receives it: the ids themselves, or one-hot float rows built once, outside the timing."""
    return X if inputs == "ids" else np.eye(V, dtype=dtype)[X]


def numpy_step(
    variant: str, cfg: Config, dtype: Any, seed: int = 0, inputs: str = "ids", backend: str = "numpy"
) -> Callable[[], object]:
    """One ``loss_and_grads`` call of the generated module (``backend="fused"``: its Numba-fused twin) on
    the config's problem. One-hot rows ask for no input gradient (``input_grad=False``), as torch's one-hot
    tensor needs none."""
    m = load(variant, backend=backend)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=seed, dtype=dtype)
    X, Y, h0 = problem(cfg, dtype, seed)
    X = _inputs(X, cfg.V, dtype, inputs)
    state = _initial(m, h0)
    return lambda: m.loss_and_grads(params, X, Y, state, input_grad=False)


def _initial(m: ModuleType, h0: np.ndarray) -> Any:
    """h0 for a one-state cell, the tuple of zero states (h0, c0, ...) for a cell with several."""
    return h0 if len(m.STATES) == 1 else tuple(np.zeros_like(h0) for _ in m.STATES)


MODELS = {  # bench row -> (num_layers, bidirectional, padded)
    "2 layers": (2, False, False),
    "bidirectional": (1, True, False),
    "padded": (1, False, True),
    "2 layers, padded": (2, False, True),
}


def model_step(
    variant: str, cfg: Config, dtype: Any, num_layers: int, bidirectional: bool, padded: bool, seed: int = 0
) -> Callable[[], object]:
    """One ``loss_and_grads`` call of a whole model (``grusym.load(variant, num_layers, bidirectional)``);
    padded: a padded batch, lengths drawn uniformly from [1, T] (the padded steps still cost their time)."""
    m = load(variant, num_layers, bidirectional)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=seed, dtype=dtype)
    X, Y, _ = problem(cfg, dtype, seed)
    lengths = np.random.default_rng(seed).integers(1, cfg.T + 1, cfg.n) if padded else None
    return lambda: m.loss_and_grads(params, X, Y, None, lengths)


def model_memory_vs_T(variant: str, cfg: Config, dtype: Any, num_layers: int, bidirectional: bool) -> Memory:
    """tracemalloc peak of one step of a whole model for several T, as :func:`memory_vs_T` (no workspaces)."""
    m = load(variant, num_layers, bidirectional)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=0, dtype=dtype)
    peaks, kept = [], []
    for T in cfg.Ts:
        X, Y, _ = problem(Config(cfg.name, T, cfg.n, cfg.V, cfg.h, 1, ()), dtype)
        gc.collect()
        tracemalloc.start()
        try:
            m.loss_and_grads(params, X, Y)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        _, cache = m.forward(params, X)
        arrays = [a for c in cache["cells"] for k, a in c.items() if isinstance(a, np.ndarray) and k != "X"]
        kept.append(sum(a.nbytes for a in arrays) / T)
    slope, intercept = np.polyfit(np.array(cfg.Ts, float), np.array(peaks, float), 1)
    fit = slope * np.array(cfg.Ts) + intercept
    worst = float(np.max(np.abs(np.array(peaks) - fit) / np.array(peaks)))
    return Memory(
        tuple(cfg.Ts), tuple(peaks), float(slope), float(intercept), worst, float(np.mean(kept)), {}
    )


def phase_steps(
    variant: str, cfg: Config, dtype: Any, seed: int = 0, inputs: str = "ids", bound: bool = False
) -> tuple[dict[str, Callable[[], object]], ElementwiseBound | None]:
    """Parts of one ``loss_and_grads`` call, alone: its ``validate`` calls, the forward loop and BPTT with
    the weight gradients (the generated ``_forward``/``_backward``, each on its own workspace); with
    ``bound``, also the step's elementwise bound (:mod:`grusym.bench_elementwise`)."""
    m = load(variant)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=seed, dtype=dtype)
    X, Y, h0 = problem(cfg, dtype, seed)
    X, tokens = _inputs(X, cfg.V, dtype, inputs), inputs == "ids"
    states = _initial(m, h0)
    dt = np.dtype(dtype)
    args = states if isinstance(states, tuple) else (states,)
    H, cache = m._forward(params, X, tokens, *args, dt, runtime.fresh)
    dH = np.random.default_rng(seed).normal(0, 1e-3, H.shape).astype(dt)
    ws_f, ws_b = runtime.Workspace(), runtime.Workspace()

    def validation() -> object:
        _, dims, d = validate.check_params(m.PARAMS, params)
        validate.check_inputs(X, states, dims, d, m.STATES)
        return validate.check_targets(Y, cfg.T, cfg.n, cfg.V)

    parts: dict[str, Callable[[], object]] = {
        "validation": validation,
        "forward": lambda: m._forward(params, X, tokens, *args, dt, ws_f),
        "backward": lambda: m._backward(params, cache, dH, ws_b, False),
    }
    return parts, elementwise_bound(m, params, X, tokens, args, dt) if bound else None


def torch_step(
    torch: ModuleType,
    cfg: Config,
    dtype: Any,
    seed: int = 0,
    threads: int = TORCH_THREADS,
    cell: str = "gru",
    num_layers: int = 1,
    bidirectional: bool = False,
) -> Callable[[], object]:
    """One autograd step of ``torch.nn.GRU(V, h, num_layers, bidirectional)`` (``cell="lstm"``:
    ``nn.LSTM``) + ``nn.Linear`` + mean ``cross_entropy``.

    The one-hot inputs (T, n, V) are built once, outside the timed step (this favours torch slightly);
    every step clears the gradients, runs forward, the loss and ``backward()``.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    module = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    gru = module(cfg.V, cfg.h, num_layers, bidirectional=bidirectional).to(tdt)
    linear = torch.nn.Linear(cfg.h * (1 + bidirectional), cfg.V).to(tdt)
    params = [*gru.parameters(), *linear.parameters()]
    X, Y, h0 = problem(cfg, dtype, seed)
    x = torch.nn.functional.one_hot(torch.as_tensor(X), cfg.V).to(tdt)  # (T, n, V)
    y = torch.as_tensor(Y).reshape(-1)
    state: Any = torch.as_tensor(h0)[None].expand(num_layers * (1 + bidirectional), -1, -1).contiguous()
    if cell == "lstm":
        state = (state, state.clone())

    def step() -> object:
        for p in params:
            p.grad = None
        out, _ = gru(x, state)
        loss = torch.nn.functional.cross_entropy(linear(out).reshape(-1, cfg.V), y)
        loss.backward()
        return loss.item()

    return step


def _size(expr: str, dims: Mapping[str, int]) -> int:
    size = 1
    for factor in expr.split("*"):
        size *= int(factor) if factor.isdigit() else dims[factor]
    return size


@dataclass(frozen=True)
class Floor:
    """The GEMM floor of one variant: its matmuls as (label, m, k, n, calls) and their FLOPs."""

    step: Callable[[], None]
    shapes: list[tuple[str, int, int, int, int]]
    flops: int
    phases: dict[str, Callable[[], None]] = field(default_factory=dict)  # the same matmuls, per phase


def gemm_floor(
    variant: str, cfg: Config, dtype: Any, tokens: bool = True, seed: int = 0, input_grad: bool | None = None
) -> Floor:
    """The exact matmul sequence of the variant's generated step alone, on preallocated operands.

    Per-step products run inside a loop over T, in the generated order (forward loop, head, backward
    loop, parameter gradients), each as ``np.matmul(a, b, out=c)``. input_grad: include the dX GEMM
    (default: for float inputs, as ``loss_and_grads`` does by default).
    """
    from .symbolic.codegen import gemm_plan

    dims = {"T": cfg.T, "n": cfg.n, "d": cfg.V, "h": cfg.h, "q": cfg.V}
    keep = {"always", "tokens" if tokens else "floats"}
    keep |= {"dX"} if (not tokens if input_grad is None else input_grad) else set()
    rng = np.random.default_rng(seed)
    phases: dict[tuple[str, bool], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    shapes, flops = [], 0
    for g in gemm_plan(variant):
        if g.when not in keep or (g.when == "tokens" and cfg.V > runtime.ONE_HOT_MAX):
            continue
        m, k, n = (_size(s, dims) for s in (g.m, g.k, g.n))
        calls = cfg.T if g.per_step else 1
        a = (rng.standard_normal((m, k)) * 0.01).astype(dtype)
        b = (rng.standard_normal((k, n)) * 0.01).astype(dtype)
        phases.setdefault((g.phase, g.per_step), []).append((a, b, np.empty((m, n), dtype)))
        shapes.append((g.label, m, k, n, calls))
        flops += 2 * m * k * n * calls
    order = list(phases)  # plan order: forward, head, backward, gradients

    def runner(keys: list[tuple[str, bool]]) -> Callable[[], None]:
        def step() -> None:
            for key in keys:
                products = phases[key]
                for _ in range(cfg.T if key[1] else 1):
                    for a, b, c in products:
                        np.matmul(a, b, out=c)

        return step

    names = {p for p, _ in order}
    return Floor(runner(order), shapes, flops, {p: runner([k for k in order if k[0] == p]) for p in names})


def model_flops(variant: str, cfg: Config) -> int:
    """Matmul FLOPs of one dense step, 6 * T * n * (number of weights): every weight is used once per
    position forward (2 FLOPs per weight) and twice backward (input and weight gradient)."""
    sizes = {"d": cfg.V, "h": cfg.h, "q": cfg.V}
    weights = sum(sizes[r] * sizes[c] for r, c in (s for s in load(variant).PARAMS.values() if len(s) == 2))
    return 6 * cfg.T * cfg.n * weights


# ---- extras


@dataclass(frozen=True)
class Memory:
    """Peak traced memory of one cold ``loss_and_grads`` call for each T, and its straight-line fit."""

    Ts: tuple[int, ...]
    peaks: tuple[int, ...]
    slope: float  # bytes per time step
    intercept: float
    worst_residual: float  # largest |peak - fit| / peak
    kept_per_step: float  # bytes per time step of the arrays forward's cache keeps for BPTT
    workspace_per_step: dict[str, float]  # workspace buffers that grow with T, bytes per time step


def memory_vs_T(variant: str, cfg: Config, dtype: Any, Ts: Sequence[int] | None = None) -> Memory:
    """tracemalloc peak of one step after dropping every workspace buffer, for several T (inputs excluded)."""
    m = load(variant)
    Ts = tuple(Ts or cfg.Ts)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=0, dtype=dtype)
    peaks, kept, held = [], [], []
    for T in Ts:
        X, Y, h0 = problem(Config(cfg.name, T, cfg.n, cfg.V, cfg.h, 1, ()), dtype)
        runtime.clear_workspaces()
        gc.collect()
        tracemalloc.start()
        try:
            m.loss_and_grads(params, X, Y, _initial(m, h0))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        held.append(m._WORKSPACE.buffers())
        _, cache = m.forward(params, X, _initial(m, h0))
        kept.append(sum(a.nbytes for k, a in cache.items() if isinstance(a, np.ndarray) and k != "X") / T)
    span = Ts[-1] - Ts[0]
    per_step = {k: (b - held[0].get(k, 0)) / span for k, b in held[-1].items() if b != held[0].get(k, 0)}
    slope, intercept = np.polyfit(np.array(Ts, float), np.array(peaks, float), 1)
    fit = slope * np.array(Ts) + intercept
    worst = float(np.max(np.abs(np.array(peaks) - fit) / np.array(peaks)))
    return Memory(Ts, tuple(peaks), float(slope), float(intercept), worst, float(np.mean(kept)), per_step)


# ---- the whole run


@dataclass
class Result:
    """Everything one :func:`run` measured (seconds, bytes); ``report`` is the printed text."""

    config: Config
    dtype: str
    times: dict[str, list[float]]
    flops: dict[str, int]
    notes: list[str] = field(default_factory=list)
    floors: dict[str, Floor] = field(default_factory=dict)
    pause: float = 0.0
    codegen: dict[str, Any] | None = None
    imports: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    report: str = ""
    inputs: str = "ids"
    elementwise_calls: int = 0  # ufunc calls the elementwise bound replays (with phases)

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])


_AUTO: Any = object()


def _import_torch() -> ModuleType | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def run(
    config: str = "d2l",
    dtype: str = "float32",
    variants: Sequence[str] = ("gru", "gru_reset_after"),
    repeat: int | None = None,
    phases: bool = False,
    torch: ModuleType | None = _AUTO,
    extras: bool = True,
    pause: float | None = None,
    out: Callable[[str], object] = print,
    torch_threads: int = TORCH_THREADS,
    models: bool = False,
    inputs: str = "ids",
    fused: bool | None = None,
) -> Result:
    """Time one training step of each variant against torch and the GEMM floor; print and return the report.

    torch: the torch module, ``None`` to skip the comparison (default: import it if installed).
    phases: also time the parts of the first variant's step and of its floor (where the time goes).
    extras: also measure code generation, import and memory (a few seconds, subprocesses).
    models: also time whole models of the first variant (:data:`MODELS`: 2 layers, bidirectional, padded
    batches) and, with torch, nn.GRU with 2 layers and bidirectional.
    pause: seconds of sleep before each timed call (default: the config's).
    inputs: ``"ids"`` (token ids) or ``"onehot"`` (the same tokens as one-hot float rows, no dX asked for;
    torch always gets one-hot rows).
    fused: also time each variant's fused module (default: when numba is installed).
    """
    if inputs not in INPUTS:
        raise InputError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    if config not in CONFIGS:
        raise InputError(f"config must be one of {', '.join(CONFIGS)}, got {config!r}")
    if dtype not in ("float32", "float64"):
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}")
    cfg, dt = CONFIGS[config], np.dtype(dtype)
    repeat = cfg.repeat if repeat is None else repeat
    if repeat < 1:
        raise InputError(f"repeat must be a positive integer, got {repeat}")
    auto = torch is _AUTO
    torch = _import_torch() if auto else torch
    notes = []
    steps: dict[str, Callable[[], object]] = {}
    flops: dict[str, int] = {}
    if torch is not None:
        steps["torch"] = torch_step(torch, cfg, dt, threads=torch_threads)
        flops["torch"] = model_flops("gru", cfg)
        if "lstm" in variants:  # lstm is compared with nn.LSTM, the GRU variants with nn.GRU
            steps["torch lstm"] = torch_step(torch, cfg, dt, threads=torch_threads, cell="lstm")
            flops["torch lstm"] = model_flops("lstm", cfg)
    elif auto:
        notes.append(f"torch is not installed: the nn.GRU comparison is skipped; {TORCH_HINT}")
    else:
        notes.append("the nn.GRU comparison was not asked for (no torch module given)")
    if fused is None:
        fused = fused_available()
        if not fused:
            notes.append(
                'numba is not installed: the fused rows are skipped; pip install "grusym[fused]" adds it'
            )
    floors = {}
    for v in variants:
        steps[v] = numpy_step(v, cfg, dt, inputs=inputs)
        if fused:
            steps[f"fused:{v}"] = numpy_step(v, cfg, dt, inputs=inputs, backend="fused")
            flops[f"fused:{v}"] = model_flops(v, cfg)
        floors[v] = gemm_floor(v, cfg, dt, tokens=inputs == "ids", input_grad=False)
        steps[f"floor:{v}"] = floors[v].step
        flops[v] = flops[f"floor:{v}"] = model_flops(v, cfg)
    if models:
        for row, (layers, bi, padded) in MODELS.items():
            steps[f"model:{row}"] = model_step(variants[0], cfg, dt, layers, bi, padded)
        if torch is not None:
            for row, (layers, bi, _) in list(MODELS.items())[:2]:
                steps[f"torch:{row}"] = torch_step(torch, cfg, dt, threads=torch_threads, num_layers=layers,
                                                   bidirectional=bi)  # fmt: skip
    parts, bound = phase_steps(variants[0], cfg, dt, inputs=inputs, bound=phases)
    steps["validation"] = parts["validation"]
    if phases:
        steps |= {f"part:{k}": f for k, f in parts.items() if k != "validation"}
        fl = floors[variants[0]]
        steps |= {f"part:floor {k}": fl.phases[k] for k in ("forward", "backward", "gradients", "head")}
    if bound is not None:
        steps["part:elementwise"] = bound.step
    pause = cfg.pause if pause is None else pause
    result = Result(cfg, dtype, interleaved(steps, repeat, pause), flops, notes, floors, pause=pause)
    result.inputs = inputs
    result.elementwise_calls = bound.calls if bound else 0
    if extras:
        result.codegen = codegen_time()
        result.imports = {v: import_time(v) for v in variants}
        result.memory = {v: memory_vs_T(v, cfg, dt) for v in variants}
        if models:
            result.memory[f"{variants[0]}, 2 layers, bidirectional"] = model_memory_vs_T(
                variants[0], cfg, dt, 2, True
            )
    result.report = format_report(result, variants, torch)
    out(result.report)
    return result


# ---- the report
