"""One training step, timed: the generated NumPy BPTT against PyTorch's nn.GRU and the GEMM floor.

Contract: :func:`run` measures in ONE process, interleaved (:func:`~grusym.bench.timing.interleaved`: every
timed call is preceded by a short sleep and one untimed call, so BLAS/OpenMP worker threads start each
timed call in the same state whoever ran last), the median time of one training step -- forward over T
steps, full BPTT, every gradient, head and mean cross-entropy -- of

* each generated variant's ``loss_and_grads`` (validation included; its share is timed separately), and
  its fused twin when numba is installed,
* ``torch.nn.GRU`` + ``nn.Linear`` + ``cross_entropy`` with autograd, when a torch module is passed (it is
  injected, so the comparison is skipped with a note when torch is absent),
* the GEMM floor: the exact matmul sequence of the generated step (:mod:`grusym.bench.floor`) and nothing
  else.

Extras: derivation + code generation time of every variant and ``import grusym`` + ``load`` time without
SymPy (both in fresh subprocesses, :mod:`grusym.bench.costs`), and the peak memory of one step versus T
(:mod:`grusym.bench.memory`). Nothing here asserts a time: numbers depend on the machine and its load, so
the report (:mod:`grusym.bench.report`) prints the load average and the BLAS kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np

from .. import fused_available
from ..errors import InputError
from . import machine
from .contenders import MODELS, TORCH_THREADS, model_step, numpy_step, phase_steps, torch_step
from .costs import codegen_time, import_time
from .floor import gemm_floor, model_flops
from .memory import memory_vs_T, model_memory_vs_T
from .options import AUTO, FUSED_HINT, TORCH_HINT, resolve
from .problems import CONFIGS, INPUTS
from .report import format_report
from .result import Result
from .timing import Progress, interleaved

__all__ = ["run"]


def run(
    config: str = "d2l",
    dtype: str = "float32",
    variants: Sequence[str] = ("gru", "gru_reset_after"),
    repeat: int | None = None,
    phases: bool = False,
    torch: ModuleType | None = AUTO,
    extras: bool = True,
    pause: float | None = None,
    out: Callable[[str], object] = print,
    torch_threads: int = TORCH_THREADS,
    models: bool = False,
    inputs: str = "ids",
    fused: bool | None = None,
    progress: Progress | None = None,
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
    progress: told what is being measured as the run goes (the command passes one writing to stderr).
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
    say = progress or Progress(None)
    say(f"training step at {cfg.describe()}, {dtype}: setting up the contenders")
    auto = torch is AUTO
    torch = resolve(torch, "torch")
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
            notes.append(f"numba is not installed: the fused rows are skipped; {FUSED_HINT}")
    floors = {}
    for v in variants:
        steps[v] = numpy_step(v, cfg, dt, inputs=inputs)
        if fused:
            say(f"compiling or loading the fused kernels of {v} (numba)")
            steps[f"fused:{v}"] = numpy_step(v, cfg, dt, inputs=inputs, backend="fused")
            flops[f"fused:{v}"] = model_flops(v, cfg)
        onehot = inputs == "onehot"
        floors[v] = gemm_floor(v, cfg, dt, tokens=not onehot, onehot=onehot, input_grad=False)
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
    say(f"timing {len(steps)} contenders, {repeat} interleaved rounds")
    result = Result(cfg, dtype, interleaved(steps, repeat, pause, say), flops, notes, floors, pause=pause)
    result.inputs = inputs
    result.elementwise_calls = bound.calls if bound else 0
    torch_threads_now = f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else ""
    result.machine = machine.describe(torch_threads_now)  # the load average right after the timing
    if extras:
        say("extras: derivation and code generation in a fresh process")
        result.codegen = codegen_time()
        say("extras: import + load with SymPy blocked, in fresh processes")
        result.imports = {v: import_time(v) for v in variants}
        say("extras: peak memory versus T")
        result.memory = {v: memory_vs_T(v, cfg, dt) for v in variants}
        if models:
            result.memory[f"{variants[0]}, 2 layers, bidirectional"] = model_memory_vs_T(
                variants[0], cfg, dt, 2, True
            )
    result.report = format_report(result, variants)
    say.done()
    out(result.report)
    return result
