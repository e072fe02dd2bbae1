"""``grusym bench``: time one training step of the generated code against torch nn.GRU and the GEMM floor;
``--inference``: forward-only inference of an imported nn.GRU / nn.LSTM against onnxruntime and torch.

Progress goes to stderr as the run goes; the report (Markdown) to stdout.

``--threads N`` gives torch N threads and OpenBLAS N threads; OpenBLAS reads its thread count only when
NumPy loads, so a count other than the one this process started with re-runs the command in a child
process with ``OPENBLAS_NUM_THREADS=N``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..cli import non_negative_float, positive_int

HELP = "time a training step against torch nn.GRU and the GEMM floor, or (--inference) forward-only inference"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        choices=("toy", "d2l", "big"),
        default=None,
        help="toy: n=2 T=3 V=4 h=2; d2l: n=32 T=35 V=28 h=256; big: n=64 T=64 V=96 h=512 (default: d2l). "
        "With --inference: toy; d2l (GRU and LSTM, 1 and 2 layers, T=35 n=32 d=28 one-hot h=256); big "
        "(GRU and LSTM, T=100: n=1 d=64 h=256 and n=64 d=128 h=512); default both d2l and big",
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)")
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        help="variant to time; repeat the option for several (default: gru and gru_reset_after)",
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        help="interleaved timed calls per contender (default: toy 200, d2l 15, big 5)",
    )
    p.add_argument(
        "--phases",
        action="store_true",
        help="also time the forward loop, the BPTT loop, the floor's phases and the elementwise bound "
        "(where the time goes)",
    )
    p.add_argument(
        "--no-extras",
        action="store_true",
        help="time the step only: skip code generation, import and memory measurements",
    )
    p.add_argument(
        "--pause",
        type=non_negative_float,
        default=None,
        help="seconds of sleep before each timed call (default: toy 0, otherwise 0.15)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads of torch and of OpenBLAS (default: torch 2, OpenBLAS as configured)",
    )
    p.add_argument(
        "--inputs",
        choices=("ids", "onehot"),
        default="ids",
        help="token ids, or the same tokens as one-hot float rows with no input gradient (default: ids)",
    )
    p.add_argument(
        "--train-race",
        metavar="TEXT",
        default=None,
        help="instead: train gru_reset_after on TEXT with grusym train and with torch (same init, batches, "
        "SGD with clipping) and print both perplexity curves",
    )
    p.add_argument(
        "--race-seconds",
        nargs=2,
        type=non_negative_float,
        default=(40.0, 60.0),
        metavar=("GRUSYM", "TORCH"),
        help="seconds of training of each side in --train-race (default: 40 60)",
    )
    p.add_argument(
        "--inference",
        action="store_true",
        help="instead: forward-only inference of an imported nn.GRU / nn.LSTM, grusym against onnxruntime "
        "(the same model through torch.onnx.export, the same threads) and torch no_grad",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the torch comparison even if installed")
    p.add_argument(
        "--no-fused",
        action="store_true",
        help="skip the fused (Numba) modules' rows even if numba is installed",
    )
    p.add_argument(
        "--models",
        action="store_true",
        help="also time whole models of the first variant: 2 layers, bidirectional, padded batches",
    )


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that repeats ``args``."""
    argv = ["bench", "--dtype", args.dtype, "--inputs", args.inputs]
    argv += ["--config", args.config] if args.config else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    for v in args.variant or []:
        argv += ["--variant", v]
    if args.repeat is not None:
        argv += ["--repeat", str(args.repeat)]
    if args.pause is not None:
        argv += ["--pause", str(args.pause)]
    argv += ["--no-extras"] * args.no_extras + ["--no-torch"] * args.no_torch + ["--phases"] * args.phases
    argv += ["--no-fused"] * args.no_fused
    argv += ["--models"] * args.models + ["--inference"] * args.inference
    if args.train_race is not None:
        argv += ["--train-race", args.train_race, "--race-seconds", *map(str, args.race_seconds)]
    return argv


def _blas_threads() -> int:
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    import grusym
    from grusym.bench import Progress, run_inference
    from grusym.bench import run as bench

    if args.threads and args.threads != _blas_threads():
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
        argv = [sys.executable, "-m", "grusym", *sys.argv[1:]] if sys.argv[1:2] else None
        if argv is None or "bench" not in argv:
            raise grusym.InputError(
                "--threads other than the current BLAS thread count needs the command line"
            )
        return subprocess.run(argv, env=env, check=False).returncode

    if args.pause is not None and not 0 <= args.pause <= 10:
        raise grusym.InputError(f"--pause must be between 0 and 10 seconds, got {args.pause}")
    progress = Progress(sys.stderr)
    if args.inference:
        mixed = args.variant or args.models or args.phases or args.train_race is not None
        if mixed or args.dtype != "float32" or args.inputs != "ids":
            raise grusym.InputError(
                "--inference times float32 nn.GRU / nn.LSTM imports: --dtype, --inputs, --variant, "
                "--models, --phases and --train-race do not apply"
            )
        kwargs: dict[str, Any] = {"torch": None} if args.no_torch else {}
        if args.no_fused:
            kwargs["fused"] = False
        run_inference(args.config or "all", args.repeat or 11, args.threads, args.pause, progress=progress,
                      **kwargs)  # fmt: skip
        return 0
    if args.train_race is not None:
        from grusym.bench import race

        if not Path(args.train_race).is_file():
            raise grusym.InputError(f"--train-race: no such text file: {args.train_race}")
        if min(args.race_seconds) <= 0:
            raise grusym.InputError(f"--race-seconds must be positive, got {args.race_seconds}")
        grusym_s, torch_s = args.race_seconds
        backend = "fused" if grusym.fused_available() and not args.no_fused else "numpy"
        race(args.train_race, grusym_s, torch_s, args.dtype, threads=args.threads or 2, backend=backend,
             progress=progress)  # fmt: skip
        return 0
    # a built-in's name as its module spells it; a cell of a file (FILE.py:NAME) as given
    variants = [
        v if ".py:" in v else grusym.load(v).VARIANT for v in (args.variant or ["gru", "gru_reset_after"])
    ]
    kwargs = {"torch": None} if args.no_torch else {}
    if args.no_fused:
        kwargs["fused"] = False
    bench(
        args.config or "d2l",
        args.dtype,
        variants,
        args.repeat,
        phases=args.phases,
        extras=not args.no_extras,
        pause=args.pause,
        torch_threads=args.threads or 2,
        models=args.models,
        inputs=args.inputs,
        progress=progress,
        **kwargs,
    )
    return 0
