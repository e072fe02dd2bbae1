"""The machine a benchmark ran on, as its report prints it: CPUs and load, Python and NumPy, and the BLAS that
NumPy's matrix products run on (library, the kernel it picked for this CPU, its threads).

The kernel matters: OpenBLAS picks one per CPU at load time unless ``OPENBLAS_CORETYPE`` forces one (some
machines set ``Haswell`` for old builds, and ``OPENBLAS_L2_SIZE``); on AVX-512 cores that makes large
float32 GEMMs about 2x slower. The report says when either variable is set; nothing here changes them.

The kernel is read with threadpoolctl when it is installed (it knows OpenBLAS, MKL and BLIS), otherwise
from OpenBLAS itself through ctypes (``openblas_get_corename`` and friends, under the symbol prefix and
suffix of NumPy's bundled scipy-openblas), so the core install reports it too.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BLAS_VARIABLES", "Blas", "blas", "describe", "load_average"]

BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
SLOWING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # the ones that change which kernel runs


@dataclass(frozen=True)
class Blas:
    """What runs NumPy's matmuls: ``name`` and ``version`` (NumPy's build info), ``kernel`` (OpenBLAS's
    core name for this CPU, "?" when unknown), ``threading`` (pthreads / openmp / ...), ``threads``, the
    reader used (``source``) and the BLAS environment variables that are set."""

    name: str
    version: str
    kernel: str
    threading: str
    threads: int | None
    source: str
    environment: dict[str, str]

    def describe(self) -> str:
        threads = "?" if self.threads is None else str(self.threads)
        text = f"{self.name} {self.version}".strip()
        text += (
            f", kernel {self.kernel}, {self.threading} threading, {threads} threads (read by {self.source})"
        )
        if self.environment:
            text += "; set: " + ", ".join(f"{k}={v}" for k, v in self.environment.items())
        slowing = [k for k in SLOWING if k in self.environment]
        if slowing:
            text += (
                f" ({' and '.join(slowing)} force OpenBLAS's kernel choice: on AVX-512 cores large float32 "
                "GEMMs run about 2x slower than users' machines; time with "
                "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE grusym bench ...`)"
            )
        return text


def _build_info() -> tuple[str, str]:
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older NumPy: no dict mode
        return "?", ""
    return str(info.get("name", "?")), str(info.get("version", ""))


def _threadpoolctl() -> dict[str, Any] | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return next((i for i in threadpool_info() if i.get("user_api") == "blas"), None)


def _openblas_ctypes() -> dict[str, Any] | None:
    """corename, thread count and parallel mode from the loaded OpenBLAS itself, or None."""
    from ..blas import openblas_paths  # the fused modules' BLAS binding finds the same libraries

    for path in openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("", ""), ("", "64_"), ("scipy_", "")):
            try:
                corename = getattr(lib, f"{prefix}openblas_get_corename{suffix}")
                threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
                parallel = getattr(lib, f"{prefix}openblas_get_parallel{suffix}")
            except AttributeError:
                continue
            corename.restype = ctypes.c_char_p
            layer = {0: "no", 1: "pthreads", 2: "openmp"}.get(int(parallel()), "?")
            return {
                "architecture": corename().decode(),
                "num_threads": int(threads()),
                "threading_layer": layer,
            }
    return None


def blas() -> Blas:
    """The BLAS NumPy runs on, read now (see the module docstring)."""
    name, version = _build_info()
    env = {k: os.environ[k] for k in BLAS_VARIABLES if k in os.environ}
    info, source = _threadpoolctl(), "threadpoolctl"
    if info is None:
        info, source = _openblas_ctypes(), "OpenBLAS's own API"
    if info is None:
        return Blas(name, version, "?", "?", None, "nothing: threadpoolctl is not installed", env)
    return Blas(name, version, str(info.get("architecture") or "?"), str(info.get("threading_layer", "?")),
                info.get("num_threads"), source, env)  # fmt: skip


def load_average() -> tuple[float, float, float]:
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def describe(extra: str = "") -> str:
    """One paragraph: CPUs and load average, Python, NumPy and its BLAS, and ``extra`` (torch's threads)."""
    load1, load5, load15 = load_average()
    parts = [
        f"{os.cpu_count()} CPUs, load average {load1:.2f} {load5:.2f} {load15:.2f}",
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}",
        f"BLAS: {blas().describe()}",
    ]
    return "; ".join(parts + ([extra] if extra else []))
