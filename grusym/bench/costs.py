"""What the benchmark measures besides the step: derivation + code generation time, and ``import grusym`` +
``load`` time with SymPy blocked, each in a fresh subprocess (so nothing this process imported counts).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["codegen_time", "import_time"]


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])  # the folder holding grusym/
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _child(code: str) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_child_env(), check=False
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise InputError(f"benchmark subprocess failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


_CODEGEN = """
import json, time
t0 = time.perf_counter()
import sympy
t1 = time.perf_counter()
from grusym.symbolic.codegen import module_source
from grusym.symbolic.derive import derive
from grusym.symbolic.variants import CELLS as VARIANTS
names = {names!r} or list(VARIANTS)
derived, generated = {{}}, {{}}
for name in names:
    s = time.perf_counter(); derive(VARIANTS[name].cell()); derived[name] = time.perf_counter() - s
    s = time.perf_counter(); module_source(name); generated[name] = time.perf_counter() - s
print(json.dumps({{"sympy_import": t1 - t0, "derive": derived, "module_source": generated,
                  "total": time.perf_counter() - t0}}))
"""


def codegen_time(variants: Sequence[str] = ()) -> dict[str, Any]:
    """Derivation and code generation of ``variants`` (default: all) in a fresh process, seconds.

    ``derive`` is the cold derivation; ``module_source`` the whole module text (it derives again, warm);
    ``total`` runs from before ``import sympy`` to the end; ``process`` is the subprocess wall time.
    """
    result, wall = _child(_CODEGEN.format(names=list(variants)))
    result["process"] = wall
    return result


_IMPORT = """
import json, sys, time
sys.modules["sympy"] = None  # importing SymPy now fails: the measured path must not need it
t0 = time.perf_counter()
import grusym
m = grusym.load({name!r})
t1 = time.perf_counter()
print(json.dumps({{"import_load": t1 - t0, "numpy_loaded": "numpy" in sys.modules}}))
"""


def import_time(variant: str, repeat: int = 3) -> dict[str, float]:
    """``import grusym`` + ``grusym.load(variant)`` with SymPy blocked, in fresh processes (median, s).

    ``import_load`` is measured inside the child (NumPy's import included); ``process`` is the wall time of
    the whole child, interpreter start-up included.
    """
    runs = [_child(_IMPORT.format(name=variant)) for _ in range(repeat)]
    return {
        "import_load": statistics.median(r["import_load"] for r, _ in runs),
        "process": statistics.median(w for _, w in runs),
    }
