"""The elementwise bound of a generated step: its ufunc calls alone, on hot contiguous operands.

Contract: :func:`record` runs a generated module's ``_forward`` and ``_backward`` once on arrays that log
every ufunc call they take part in (:class:`_Logged`) and returns the calls in order, as (ufunc, operand
specs, output shapes); matrix products are ``np.matmul`` calls among them. :func:`elementwise_bound`
replays the others on a few small preallocated arrays per shape, so every operand is contiguous and in
cache and no matmul runs in between.

The GEMM floor plus this time bounds from below what the step's NumPy calls can take in any memory
layout: it keeps the passes and drops cold memory, strided blocks and the matmuls' cache traffic.
``grusym bench --phases`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["ElementwiseBound", "elementwise_bound", "record"]

# an operand: ("array", shape, dtype) for an array with elements, ("value", v) for a 0-d array or scalar
Spec = tuple[Any, ...]
Call = tuple[np.ufunc, tuple[Spec, ...], tuple[tuple[int, ...], ...]]


def _spec(x: Any) -> Spec:
    if isinstance(x, np.ndarray) and x.ndim > 0:
        return ("array", x.shape, x.dtype)
    return ("value", np.asarray(x).view(np.ndarray).copy() if isinstance(x, np.ndarray) else x)


class _Logged(np.ndarray):
    """An array that logs every ufunc call it takes part in (``log``), then runs it on plain arrays."""

    log: ClassVar[list[Call]] = []

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.pop("out", None)
        if method == "__call__":
            outs = tuple(o.shape for o in out) if out else ()
            _Logged.log.append((ufunc, tuple(_spec(x) for x in inputs), outs))
        plain = [x.view(np.ndarray) if isinstance(x, _Logged) else x for x in inputs]
        if out:
            getattr(ufunc, method)(*plain, out=tuple(o.view(np.ndarray) for o in out), **kwargs)
            return out[0] if len(out) == 1 else out  # the caller's own (logged) arrays
        result = getattr(ufunc, method)(*plain, **kwargs)
        return result.view(_Logged) if isinstance(result, np.ndarray) else result


def _logged(a: Any) -> Any:
    return np.asarray(a).view(_Logged)


def record(module: Any, params: dict[str, np.ndarray], X: np.ndarray, tokens: bool, states: tuple,
           dtype: Any) -> list[Call]:  # fmt: skip
    """The ufunc calls of one ``_forward`` + ``_backward`` of ``module`` (no input gradient), in order."""
    buffers: dict[str, np.ndarray] = {}

    def buf(name: str, shape: tuple[int, ...], dt: Any) -> np.ndarray:
        if name not in buffers:
            buffers[name] = np.empty(shape, dt).view(_Logged)
        return buffers[name]

    logged = {k: _logged(v) for k, v in params.items()}
    _Logged.log = []
    with np.errstate(all="ignore"):
        H, cache = module._forward(logged, _logged(X), tokens, *(_logged(s) for s in states), dtype, buf)
        dH = np.full(H.shape, 1e-3, dtype).view(_Logged)
        module._backward(logged, cache, dH, buf, False)
    calls, _Logged.log = _Logged.log, []
    return calls


@dataclass
class ElementwiseBound:
    """``step()`` replays the ``calls`` ufunc calls of one generated step on hot contiguous operands."""

    step: Callable[[], None]
    calls: int


def elementwise_bound(module: Any, params: dict[str, np.ndarray], X: np.ndarray, tokens: bool,
                      states: tuple, dtype: Any) -> ElementwiseBound:  # fmt: skip
    """The replay of the generated ``module``'s elementwise calls (see the module docstring)."""
    calls = record(module, params, X, tokens, states, np.dtype(dtype))
    rng = np.random.default_rng(0)
    pool: dict[tuple[Any, ...], list[np.ndarray]] = {}

    def operand(shape: tuple[int, ...], dt: Any, k: int) -> np.ndarray:
        # values in [0.25, 0.75]: no denormals, no NaN from log or sqrt; operand k of a call is its own array
        arrays = pool.setdefault((shape, np.dtype(dt)), [])
        while len(arrays) <= k:
            arrays.append(rng.uniform(0.25, 0.75, shape).astype(dt))
        return arrays[k]

    replay = []
    for ufunc, specs, outs in calls:
        if ufunc is np.matmul:
            continue
        args = [operand(s[1], s[2], k) if s[0] == "array" else s[1] for k, s in enumerate(specs)]
        dt = next((s[2] for s in specs if s[0] == "array"), np.dtype(dtype))
        out = tuple(operand(shape, dt, len(specs) + j) for j, shape in enumerate(outs))
        replay.append((ufunc, tuple(args), out))

    def step() -> None:
        with np.errstate(all="ignore"):
            for ufunc, args, out in replay:
                if out:
                    ufunc(*args, out=out)
                else:
                    ufunc(*args)

    return ElementwiseBound(step, len(replay))
