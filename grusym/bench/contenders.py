"""The contenders of the training-step benchmark, each a zero-argument callable that runs one step: the
generated module's ``loss_and_grads`` (plain or fused), a whole model's, the parts of one step (validation,
forward loop, BPTT), and PyTorch's ``nn.GRU`` / ``nn.LSTM`` + ``nn.Linear`` + cross-entropy with autograd
(the torch module is passed in, so nothing here imports it)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .. import load, runtime, validate
from .elementwise import ElementwiseBound, elementwise_bound
from .problems import Config, as_inputs, initial, problem

__all__ = ["MODELS", "TORCH_THREADS", "model_step", "numpy_step", "phase_steps", "torch_step"]

TORCH_THREADS = 2

MODELS = {  # bench row -> (num_layers, bidirectional, padded)
    "2 layers": (2, False, False),
    "bidirectional": (1, True, False),
    "padded": (1, False, True),
    "2 layers, padded": (2, False, True),
}


def numpy_step(
    variant: str, cfg: Config, dtype: Any, seed: int = 0, inputs: str = "ids", backend: str = "numpy"
) -> Callable[[], object]:
    """One ``loss_and_grads`` call of the generated module (``backend="fused"``: its Numba-fused twin) on
    the config's problem. One-hot rows ask for no input gradient (``input_grad=False``), as torch's one-hot
    tensor needs none."""
    m = (
        _fused_file_cell(variant)
        if backend == "fused" and ".py:" in variant
        else load(variant, backend=backend)
    )
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=seed, dtype=dtype)
    X, Y, h0 = problem(cfg, dtype, seed)
    X = as_inputs(X, cfg.V, dtype, inputs)
    state = initial(m, h0)
    return lambda: m.loss_and_grads(params, X, Y, state, input_grad=False)


def _fused_file_cell(spec: str) -> ModuleType:
    """The fused module of a cell of a file (FILE.py:NAME), written to a temporary folder and imported
    (``load`` fuses built-ins only; numba caches kernels beside a module's file)."""
    import importlib.util
    import tempfile
    from pathlib import Path

    from ..symbolic.codegen import module_source
    from ..symbolic.usercell import load_cell

    cell = load_cell(spec)
    path = Path(tempfile.mkdtemp(prefix="grusym-bench-")) / f"{cell.name}_fused.py"
    path.write_text(module_source(cell, f"grusym derive --cell {spec} --fused", fused=True), encoding="utf-8")
    loader = importlib.util.spec_from_file_location(f"{cell.name}_fused", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


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


def phase_steps(
    variant: str, cfg: Config, dtype: Any, seed: int = 0, inputs: str = "ids", bound: bool = False
) -> tuple[dict[str, Callable[[], object]], ElementwiseBound | None]:
    """Parts of one ``loss_and_grads`` call, alone: its ``validate`` calls, the forward loop and BPTT with
    the weight gradients (the generated ``_forward``/``_backward``, each on its own workspace); with
    ``bound``, also the step's elementwise bound (:mod:`grusym.bench.elementwise`)."""
    m = load(variant)
    params = m.init_params(cfg.V, cfg.h, cfg.V, seed=seed, dtype=dtype)
    X, Y, h0 = problem(cfg, dtype, seed)
    X, tokens = as_inputs(X, cfg.V, dtype, inputs), inputs == "ids"
    states = initial(m, h0)
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
