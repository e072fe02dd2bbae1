"""Hypothesis strategies for property tests of recurrent cells: grusym's variants or your own.

Contract: every strategy draws from hypothesis (so failures shrink and replay) and returns float64 NumPy
arrays or int64 token ids in grusym's layout: X (T, n, d) or token ids (T, n), Y (T, n), h0 (n, h), and a
parameter dict shaped by a spec ``name -> dimension names`` (a generated module's ``PARAMS``, a variant
name, or your own dict). Dimension names are T (steps), n (batch), d (input), h (hidden), q (output).
``REGIMES`` holds the only magic numbers: the magnitude ranges of weights and biases per regime.
Nothing here imports SymPy; ``import grusym`` does not import this module (it needs hypothesis).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .errors import InputError

__all__ = ["REGIMES", "Problem", "float_sequences", "parameters", "problems", "sizes", "token_sequences"]


class Regime(NamedTuple):
    weight: tuple[float, float]  # magnitude range of weight entries, times 1/sqrt(fan_in) if scaled
    bias: tuple[float, float]  # magnitude range of bias entries
    scaled: bool  # weights scaled by 1/sqrt(fan_in)


REGIMES: dict[str, Regime] = {
    # pre-activations O(1): gates away from 0 and 1, derivatives O(0.1)
    "well_conditioned": Regime((0.0, 1.0), (0.0, 0.5), True),
    # the bias outweighs any one input weight: |b + W_x[token]| >= 4 (derivatives <= 0.02, down to 1e-16);
    # recurrent terms may push further out or, by chance, back in
    "saturating": Regime((2.0, 6.0), (10.0, 30.0), False),
}


class Problem(NamedTuple):
    """One drawn problem: ``params``, ``X`` (T, n, d) or token ids (T, n), ``Y`` (T, n), ``h0`` (n, h)."""

    params: dict[str, np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    h0: np.ndarray


def sizes(
    *,
    T: tuple[int, int] = (1, 6),
    n: tuple[int, int] = (1, 4),
    d: tuple[int, int] = (1, 5),
    h: tuple[int, int] = (1, 5),
    q: tuple[int, int] = (2, 6),
) -> st.SearchStrategy[dict[str, int]]:
    """Dicts {"T", "n", "d", "h", "q"} of sizes, each drawn from its inclusive (low, high) range."""
    ranges = {"T": T, "n": n, "d": d, "h": h, "q": q}
    for key, (lo, hi) in ranges.items():
        if not 1 <= lo <= hi:
            raise InputError(f"sizes: {key} range must satisfy 1 <= low <= high, got ({lo}, {hi})")
    return st.fixed_dictionaries({k: st.integers(lo, hi) for k, (lo, hi) in ranges.items()})


def _signed(lo: float, hi: float) -> st.SearchStrategy[float]:
    if lo == 0:
        return st.floats(-hi, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    magnitude = st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    return st.tuples(st.sampled_from([-1.0, 1.0]), magnitude).map(lambda sm: sm[0] * sm[1])


def _array(shape: tuple[int, ...], lo: float, hi: float) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=_signed(lo, hi), fill=st.nothing())


def _spec(spec: Any) -> Mapping[str, tuple[str, ...]]:
    if isinstance(spec, str):
        from . import load

        return load(spec).PARAMS  # type: ignore[no-any-return]
    found = getattr(spec, "PARAMS", spec)
    if not isinstance(found, Mapping) or not found:
        raise InputError(
            "spec must be a variant name, a module with PARAMS or a dict name -> dimension names, "
            f"got {type(spec).__name__}"
        )
    return found


def parameters(
    spec: Any, dims: Mapping[str, int], *, regime: str = "well_conditioned"
) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Parameter dicts for ``spec`` (name -> dimension names) at sizes ``dims``, in one of ``REGIMES``.

    Weights (2-d) get the regime's weight range, scaled by 1/sqrt(rows) for "well_conditioned"; vectors
    get the bias range. Signs are random in both regimes.
    """
    if regime not in REGIMES:
        raise InputError(f"regime must be one of {sorted(REGIMES)}, got {regime!r}")
    r = REGIMES[regime]
    spec = _spec(spec)
    parts = {}
    for name, dim_names in spec.items():
        missing = [dn for dn in dim_names if dn not in dims]
        if missing:
            raise InputError(f"parameters: {name} has dimensions {dim_names} but dims lacks {missing}")
        shape = tuple(int(dims[dn]) for dn in dim_names)
        if len(shape) == 1:
            parts[name] = _array(shape, *r.bias)
        else:
            k = 1 / math.sqrt(shape[0]) if r.scaled else 1.0
            parts[name] = _array(shape, r.weight[0] * k, r.weight[1] * k)
    return st.fixed_dictionaries(parts)


def token_sequences(T: int, n: int, vocab: int) -> st.SearchStrategy[np.ndarray]:
    """Token ids (T, n) in [0, vocab), int64."""
    return hnp.arrays(np.int64, (T, n), elements=st.integers(0, vocab - 1))


def float_sequences(T: int, n: int, d: int, *, bound: float = 2.0) -> st.SearchStrategy[np.ndarray]:
    """Float inputs X (T, n, d) with entries in [-bound, bound]."""
    return _array((T, n, d), 0.0, bound)


@st.composite
def problems(
    draw: st.DrawFn,
    spec: Any,
    *,
    regime: str = "well_conditioned",
    tokens: bool | None = None,
    size_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> Problem:
    """Whole problems (params, X, Y, h0) for ``spec``; ``tokens`` None draws both input kinds.

    size_ranges: optional ranges for ``sizes`` (e.g. {"T": (1, 3)}); targets Y are in [0, q).
    """
    dims = draw(sizes(**(size_ranges or {})))
    params = draw(parameters(spec, dims, regime=regime))
    use_tokens = draw(st.booleans()) if tokens is None else tokens
    T, n = dims["T"], dims["n"]
    X = draw(token_sequences(T, n, dims["d"]) if use_tokens else float_sequences(T, n, dims["d"]))
    Y = draw(token_sequences(T, n, dims["q"]))
    h0 = draw(_array((n, dims["h"]), 0.0, 1.0))
    return Problem(params, X, Y, h0)
