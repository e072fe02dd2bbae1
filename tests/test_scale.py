"""Scale: T = 10,000 steps and h = 1,024 run, without recursion, with memory linear in T.

The memory test measures the traced peak of the public forward + backward (tracemalloc sees NumPy's
buffers) for several T and fits peak = a + b*T: the residuals must be small (linear) and b, the bytes per
time step, must stay within a small factor of what the cache itself keeps per step (the activations BPTT
needs).
"""

from __future__ import annotations

import sys
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest

import grusym

NAMES = grusym.variants()


def problem(name: str, T: int, n: int, h: int, d: int = 28, q: int = 28, dtype=np.float64, seed: int = 0):
    m = grusym.load(name)
    rng = np.random.default_rng(seed)
    p = m.init_params(d, h, q, seed=seed, dtype=dtype, scale=1 / np.sqrt(h))
    X = rng.integers(0, d, (T, n))
    Y = rng.integers(0, q, (T, n))
    h0 = rng.uniform(-0.5, 0.5, (n, h)).astype(dtype)
    return m, p, X, Y, h0


@contextmanager
def recursion_headroom(frames: int):
    """Allow only ``frames`` more Python frames than the caller has: any recursion would hit the limit."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_ten_thousand_steps_without_recursion():
    m, p, X, Y, h0 = problem("gru", T=10_000, n=2, h=64)
    with recursion_headroom(40):
        loss, grads, h_T = m.loss_and_grads(p, X, Y, h0)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    # the same sequence run in two halves, the second starting from the first's last state
    first, _ = m.forward(p, X[:5_000], h0)
    second, _ = m.forward(p, X[5_000:], first[-1])
    np.testing.assert_allclose(h_T, second[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_hidden_size_1024_gradient_matches_a_directional_difference(dtype):
    m, p, X, Y, h0 = problem("gru", T=3, n=2, h=1024, dtype=dtype)
    _, grads, h_T = m.loss_and_grads(p, X, Y, h0)
    assert h_T.shape == (2, 1024) and all(g.dtype == dtype for g in grads.values())
    # central difference of the float64 loss along a random direction in (W_hh, h0)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    rng = np.random.default_rng(1)
    v_W, v_h = rng.normal(size=(1024, 1024)), rng.normal(size=(2, 1024))
    eps = 1e-5

    def at(s: float) -> float:
        return m.loss({**p64, "W_hh": p64["W_hh"] + s * v_W}, X, Y, h0.astype(np.float64) + s * v_h)

    numeric = (at(eps) - at(-eps)) / (2 * eps)
    analytic = float(np.sum(grads["W_hh"] * v_W) + np.sum(grads["h0"] * v_h))
    assert analytic == pytest.approx(numeric, rel=1e-5 if dtype == np.float64 else 2e-3)


def _peak_bytes(m, p, X, h0, dH) -> tuple[int, int]:
    """Traced peak of forward + backward above what existed before, and the cache's own bytes."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _, cache = m.forward(p, X, h0)
        m.backward(p, cache, dH)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    kept = sum(a.nbytes for a in cache.values() if isinstance(a, np.ndarray) and a is not X)
    return peak, kept


def memory_per_step(name: str, steps=(250, 500, 1_000, 2_000), n=2, h=64) -> dict[str, float]:
    peaks, kept = [], []
    m, p, X, _, h0 = problem(name, T=3, n=n, h=h)
    _peak_bytes(m, p, X, h0, np.ones((3, n, h)))  # first calls allocate once-only things (imports, caches)
    for T in steps:
        m, p, X, _, h0 = problem(name, T=T, n=n, h=h)
        dH = np.ones((T, n, h))
        peak, cache = _peak_bytes(m, p, X, h0, dH)
        peaks.append(peak)
        kept.append(cache)
    Ts = np.array(steps, dtype=float)
    slope, intercept = np.polyfit(Ts, peaks, 1)
    residual = np.abs(np.array(peaks) - (intercept + slope * Ts)).max() / max(peaks)
    kept_slope = np.polyfit(Ts, kept, 1)[0]
    return {"slope": slope, "intercept": intercept, "residual": residual, "cache_per_step": kept_slope,
            "unit": n * h * 8}  # fmt: skip


@pytest.mark.parametrize("name", ["gru", "gru_reset_after", "rnn_tanh"])
def test_memory_is_linear_in_T(name):
    got = memory_per_step(name)
    assert got["residual"] < 0.02, f"{name}: peak memory is not linear in T ({got})"
    # BPTT must keep the cache; forward's input projections and backward's adjoints of the same linear
    # steps add at most as much again, plus a temporary or two of one state (n, h) per step
    assert got["cache_per_step"] <= got["slope"] <= 2 * got["cache_per_step"] + 2 * got["unit"], got


@pytest.mark.slow
def test_hundred_thousand_steps():
    m, p, X, Y, h0 = problem("gru", T=100_000, n=1, h=64)
    loss, grads, _ = m.loss_and_grads(p, X, Y, h0)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_at_scale(name):
    for T, h in ((10_000, 256), (20, 2_048)):
        m, p, X, Y, h0 = problem(name, T=T, n=2, h=h, dtype=np.float32)
        loss, grads, _ = m.loss_and_grads(p, X, Y, h0)
        assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
