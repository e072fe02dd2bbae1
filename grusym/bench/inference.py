"""Forward-only inference of an imported model, timed: grusym against onnxruntime and torch.

Contract: :func:`run_inference` builds, for each case, one ``torch.nn.GRU`` / ``nn.LSTM`` (seeded, float32,
time-major) and times in ONE process, interleaved round by round (the harness of
:mod:`grusym.bench.timing`), the median of one forward pass over the same input of

* grusym: the model imported with :func:`~grusym.interop.from_torch_gru` / ``from_torch_lstm`` and run by
  its ``predict`` (the forward-only entry point, when the module has one) or else its ``forward`` (which
  also keeps what backward needs); the report names the one timed. With numba, also the fused module.
* onnxruntime: the same torch module through ``torch.onnx.export``, run by an ``InferenceSession`` with
  the same number of intra-op threads as the BLAS and torch, one inter-op thread, sequential execution;
* torch: the module itself under ``torch.no_grad()``, ``torch.set_num_threads`` the same count;
* the GEMM floor: the matrix products of grusym's ``predict`` alone (:func:`inference_floor`), which
  no elementwise work can go below; it needs none of the optional packages.

Every contender's H is compared with torch's (the largest absolute difference is printed), so the table
never times two different models. Each contender whose package is absent is skipped with a note naming
the extra that installs it; without torch there is no model to export, so grusym runs alone on its own
``init_params``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .. import blas as grusym_blas
from .. import fused_available, load, runtime
from ..errors import InputError
from . import machine
from .floor import right_operand, size
from .options import AUTO, FUSED_HINT, ONNX_HINT, TORCH_HINT, resolve
from .report import format_inference
from .result import InferenceResult
from .timing import Progress, interleaved

__all__ = ["CASES", "Case", "inference_floor", "run_inference"]

Product = tuple[str, int, int, int, int]  # label, m, k, n, calls


@dataclass(frozen=True)
class Case:
    """One model and input size: ``cell`` "gru" (nn.GRU) or "lstm" (nn.LSTM), ``layers``, and X (T, n, d)
    of one-hot float rows (``onehot``) or standard normal floats, hidden size h, float32."""

    cell: str
    layers: int
    T: int
    n: int
    d: int
    h: int
    onehot: bool = False

    @property
    def name(self) -> str:
        torch_name = "nn.GRU" if self.cell == "gru" else "nn.LSTM"
        layers = f"{self.layers} layer" + ("s" if self.layers > 1 else "")
        inputs = "one-hot" if self.onehot else "float"
        return f"{torch_name}, {layers}, T {self.T}, n {self.n}, d {self.d} {inputs}, h {self.h}"

    @property
    def variant(self) -> str:
        return "gru_reset_after" if self.cell == "gru" else "lstm"  # what nn.GRU / nn.LSTM compute


def _d2l(cell: str, layers: int) -> Case:
    return Case(cell, layers, T=35, n=32, d=28, h=256, onehot=True)


CASES: dict[str, tuple[Case, ...]] = {
    "toy": tuple(Case(c, k, T=3, n=2, d=4, h=2, onehot=True) for c in ("gru", "lstm") for k in (1, 2)),
    "d2l": (_d2l("gru", 1), _d2l("gru", 2), _d2l("lstm", 1), _d2l("lstm", 2)),
    "big": tuple(
        Case(c, 1, T=100, n=n, d=d, h=h)
        for n, d, h in ((1, 64, 256), (64, 128, 512))
        for c in ("gru", "lstm")
    ),
}
PAUSE = {"toy": 0.0, "d2l": 0.15, "big": 0.15}  # seconds of sleep before each timed call (see timing)


def _inputs(case: Case, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if case.onehot:
        return np.eye(case.d, dtype=np.float32)[rng.integers(0, case.d, (case.T, case.n))]
    return rng.standard_normal((case.T, case.n, case.d)).astype(np.float32)


def _grusym_params(case: Case, torch_model: Any) -> dict[str, Any]:
    """The torch module's weights as grusym params (with a zero head: ``forward`` of this version still
    asks for one; the head is never evaluated here)."""
    from ..interop import from_torch_gru, from_torch_lstm

    state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    head = {"weight": np.zeros((1, case.h), np.float32), "bias": np.zeros(1, np.float32)}
    return (from_torch_gru if case.cell == "gru" else from_torch_lstm)(state, head)


def _grusym_call(case: Case, params: dict[str, Any], X: np.ndarray, backend: str) -> tuple[Callable, str]:
    m = load(case.variant, num_layers=case.layers, backend=backend)
    entry = "predict" if hasattr(m, "predict") else "forward"
    fn = getattr(m, entry)
    return (lambda: fn(params, X)[0]), entry


def inference_floor(case: Case, seed: int = 0) -> tuple[Callable[[], None], list[Product]]:
    """The matrix products ``predict`` runs for ``case``, alone on preallocated float32 operands, and their
    shapes (label, m, k, n, calls): per layer, the forward phase of the generator's
    :func:`~grusym.symbolic.codegen.gemm_plan` for float inputs (the input projection of all T steps in one
    GEMM, then T recurrent products); one-hot rows into the first layer are gathered
    (:func:`~grusym.runtime.one_hot_ids`), no GEMM. The T products run in one Numba loop calling the
    BLAS, as the fused modules' ``predict`` does, when :mod:`grusym.blas` found it; else in a Python loop."""
    from ..symbolic.codegen import gemm_plan

    rng = np.random.default_rng(seed)
    products: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    shapes: list[Product] = []
    for layer in range(case.layers):
        dims = {"T": case.T, "n": case.n, "d": case.d if layer == 0 else case.h, "h": case.h}
        inputs = "tokens" if case.onehot and layer == 0 else "floats"  # one-hot rows: a gather
        for g in gemm_plan(case.variant):
            if g.phase != "forward" or g.when not in ("always", inputs):
                continue
            m, k, n = (size(e, dims) for e in (g.m, g.k, g.n))
            k += g.bias_column and runtime.bias_column(k, n)  # rt.project's column of ones
            a, b = (rng.standard_normal(shape).astype(np.float32) * 0.1 for shape in ((m, k), (k, n)))
            b = right_operand(b, g.padded)
            calls = case.T if g.per_step else 1
            products.append((calls, a, b, np.empty((m, n), np.float32)))
            shapes.append((g.label, m, k, n, calls))
    loop = _product_loop()

    def run() -> None:
        for calls, a, b, c in products:
            loop(calls, a, b, c)

    return run, shapes


def _python_loop(calls: int, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    for _ in range(calls):
        np.matmul(a, b, out=c)


def _product_loop() -> Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]:
    """``loop(calls, a, b, c)``: c = a @ b, ``calls`` times (compiled once per process)."""
    global _LOOP
    if _LOOP is None:
        _LOOP = _python_loop
        if grusym_blas.AVAILABLE:  # numba is importable: blas registered its matmul with it
            import numba

            def numba_loop(calls: int, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
                for _ in range(calls):
                    grusym_blas.matmul(a, b, c)

            _LOOP = numba.njit(nogil=True)(numba_loop)
    return _LOOP


_LOOP: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None


def _onnx_call(ort: ModuleType, torch: ModuleType, model: Any, X: np.ndarray, threads: int) -> Callable:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter warns about batch sizes of RNNs: not ours to act on
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(X),), buffer, dynamo=False, input_names=["X"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"X": X})[0]


def _torch_call(torch: ModuleType, model: Any, X: np.ndarray) -> Callable:
    x = torch.from_numpy(X)

    def call() -> np.ndarray:
        with torch.no_grad():
            return model(x)[0].numpy()

    return call


def _contenders(
    case: Case, torch: ModuleType | None, ort: ModuleType | None, fused: bool, threads: int, seed: int
) -> tuple[dict[str, Callable[[], Any]], str]:
    """The calls timed for one case, keyed grusym / fused / onnxruntime / torch, and grusym's entry name."""
    X = _inputs(case, seed)
    if torch is None:
        m = load(case.variant, num_layers=case.layers)
        params = m.init_params(case.d, case.h, 1, seed=seed, dtype=np.float32, scale=case.h**-0.5)
        model = None
    else:
        torch.manual_seed(seed)
        model = (torch.nn.GRU if case.cell == "gru" else torch.nn.LSTM)(case.d, case.h, case.layers).eval()
        params = _grusym_params(case, model)
    calls: dict[str, Callable[[], Any]] = {}
    calls["grusym"], entry = _grusym_call(case, params, X, "numpy")
    if fused:
        calls["fused"], _ = _grusym_call(case, params, X, "fused")
    if torch is not None and ort is not None:
        calls["onnxruntime"] = _onnx_call(ort, torch, model, X, threads)
    if torch is not None:
        calls["torch"] = _torch_call(torch, model, X)
    calls["floor"] = inference_floor(case, seed)[0]
    return calls, entry


def run_inference(
    config: str | Sequence[Case] = "all",
    repeat: int = 11,
    threads: int | None = None,
    pause: float | None = None,
    torch: ModuleType | None = AUTO,
    onnxruntime: ModuleType | None = AUTO,
    fused: bool | None = None,
    out: Callable[[str], object] = print,
    progress: Progress | None = None,
    seed: int = 0,
) -> InferenceResult:
    """Time forward-only inference of each case (see the module docstring); print and return the report.

    config: "toy", "d2l", "big" (batch 1 and n 64 / h 512), "all" (d2l and big), or a list of :class:`Case`.
    threads: intra-op threads of onnxruntime and torch (default: the BLAS's own count, so all three match).
    torch, onnxruntime: the modules, None to skip that contender (default: import each if installed).
    fused: also time the fused modules (default: when numba is installed).
    """
    if isinstance(config, str):
        if config not in (*CASES, "all"):
            raise InputError(f"config must be one of {', '.join((*CASES, 'all'))}, got {config!r}")
        groups = ("d2l", "big") if config == "all" else (config,)
        cases = [c for g in groups for c in CASES[g]]
        pause = min(PAUSE[g] for g in groups) if pause is None else pause
    else:
        cases, pause = list(config), 0.0 if pause is None else pause
    if repeat < 1:
        raise InputError(f"repeat must be a positive integer, got {repeat}")
    say = progress or Progress(None)
    notes = []
    torch, onnxruntime = resolve(torch, "torch"), resolve(onnxruntime, "onnxruntime")
    if torch is None:
        notes.append(
            f"torch is not installed: no nn.GRU / nn.LSTM to import, export or compare with, so grusym runs "
            f"alone on its own init_params; {TORCH_HINT}"
        )
    if onnxruntime is None:
        notes.append(f"onnxruntime is not installed: its column is skipped; {ONNX_HINT}")
    if fused is None:
        fused = fused_available()
        if not fused:
            notes.append(f"numba is not installed: the fused column is skipped; {FUSED_HINT}")
    blas = machine.blas()
    threads = threads or blas.threads or 1
    if torch is not None:
        torch.set_num_threads(threads)
    result = InferenceResult({}, {}, threads, pause, notes=notes)
    for k, case in enumerate(cases):
        say(f"inference {k + 1}/{len(cases)}: {case.name}: setting up")
        calls, result.entry[case.name] = _contenders(case, torch, onnxruntime, fused, threads, seed)
        outputs = {name: call() for name, call in calls.items()}  # once each: compiles, and gives H
        if "torch" in outputs:
            ref = outputs.pop("torch")
            result.errors[case.name] = {
                k: float(np.max(np.abs(np.asarray(v) - ref))) for k, v in outputs.items() if k != "floor"
            }
            result.errors[case.name]["torch"] = 0.0
        result.times[case.name] = interleaved(calls, repeat, pause, say)
    result.machine = machine.describe(f"torch {torch.__version__}" if torch is not None else "")
    result.report = format_inference(result)
    say.done()
    out(result.report)
    return result
