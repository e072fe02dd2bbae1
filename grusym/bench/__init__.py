"""``grusym bench``: the generated code timed against PyTorch, onnxruntime and its own GEMM floor.

One file per concern, data flowing one way (each imports only those above it in this list):

* :mod:`.options` the optional packages and their install hints; :mod:`.machine` the machine and its BLAS;
  :mod:`.timing` the interleaved harness and the progress lines; :mod:`.problems` sizes and data;
* :mod:`.elementwise`, :mod:`.floor`, :mod:`.memory`, :mod:`.costs`: the bounds and extras of one step;
* :mod:`.contenders` the training-step contenders; :mod:`.result` what a run measured;
  :mod:`.report` the printed tables;
* :mod:`.training` (:func:`run`), :mod:`.inference` (:func:`run_inference`), :mod:`.race` (:func:`race`):
  the three benchmarks the command runs.
"""

from .contenders import MODELS, model_step, numpy_step, phase_steps, torch_step
from .costs import codegen_time, import_time
from .floor import Floor, gemm_floor, model_flops
from .inference import CASES, Case, inference_floor, run_inference
from .machine import blas
from .memory import Memory, memory_vs_T, model_memory_vs_T
from .problems import CONFIGS, Config, problem
from .race import Race, race
from .result import InferenceResult, Result
from .timing import Progress, interleaved
from .training import run

__all__ = [
    "CASES",
    "CONFIGS",
    "MODELS",
    "Case",
    "Config",
    "Floor",
    "InferenceResult",
    "Memory",
    "Progress",
    "Race",
    "Result",
    "blas",
    "codegen_time",
    "gemm_floor",
    "import_time",
    "inference_floor",
    "interleaved",
    "memory_vs_T",
    "model_flops",
    "model_memory_vs_T",
    "model_step",
    "numpy_step",
    "phase_steps",
    "problem",
    "race",
    "run",
    "run_inference",
    "torch_step",
]
